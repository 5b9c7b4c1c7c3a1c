//! A loopback TCP relay in front of the server that counts the HTTP requests a device
//! sends: how the idle pass is shown to be one request. It relays bytes unchanged and
//! counts request lines (`… HTTP/1.1\r\n`) in the device → server direction, which
//! holds for plain-HTTP/1.1 keep-alive connections (what the device uses on loopback).
//! A request body could only be miscounted if it held that exact sequence, and a
//! device's JSON (base64 changes) does not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MARK: &[u8] = b" HTTP/1.1\r\n";

pub struct Proxy {
    pub url: String,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Relays 127.0.0.1:<free port> to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counter) = (upstream.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    // A relay that fails only ends that connection: the device sees
                    // it as a network error, which the bench reports.
                    let _ = relay(client, &upstream, &counter).await;
                });
            }
        });
        Ok(Self {
            url,
            requests,
            task,
        })
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: &str, counter: &AtomicU64) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        // The last bytes of the previous read, so a mark split across reads counts.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                sw.shutdown().await?;
                return Ok::<(), std::io::Error>(());
            }
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&buf[..n]);
            let found = window.windows(MARK.len()).filter(|w| *w == MARK).count();
            counter.fetch_add(found as u64, Ordering::SeqCst);
            let keep = window.len().min(MARK.len() - 1);
            tail = window[window.len() - keep..].to_vec();
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
