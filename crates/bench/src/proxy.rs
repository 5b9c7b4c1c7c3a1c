//! A loopback TCP relay in front of the server that counts the HTTP requests a device
//! sends: how the idle pass is shown to be one request. It relays bytes unchanged and
//! notes request lines (`… HTTP/1.1\r\n`) in the device → server direction, which
//! holds for plain-HTTP/1.1 keep-alive connections (what the device uses on loopback).
//! A request body could only be miscounted if it held that exact sequence, and a
//! device's JSON (base64 changes) does not.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MARK: &[u8] = b" HTTP/1.1\r\n";

pub struct Proxy {
    pub url: String,
    /// The request line of every request seen (`GET /api/auth/sync/pull?… HTTP/1.1`).
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Relays 127.0.0.1:<free port> to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, seen) = (upstream.clone(), Arc::clone(&seen));
                tokio::spawn(async move {
                    // A relay that fails only ends that connection: the device sees
                    // it as a network error, which the bench reports.
                    let _ = relay(client, &upstream, &seen).await;
                });
            }
        });
        Ok(Self {
            url,
            requests,
            task,
        })
    }

    /// The request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        // The current line so far, so a request line split across reads is whole.
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                sw.shutdown().await?;
                return Ok::<(), std::io::Error>(());
            }
            for &byte in &buf[..n] {
                line.push(byte);
                if byte == b'\n' {
                    if line.ends_with(MARK) {
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        if let Ok(mut s) = seen.lock() {
                            s.push(text);
                        }
                    }
                    line.clear();
                } else if line.len() > 64 * 1024 {
                    // A body line (JSON has no newlines): keep only what a mark needs.
                    line.drain(..line.len() - MARK.len());
                }
            }
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut sr, &mut cw).await?;
        cw.shutdown().await
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}
