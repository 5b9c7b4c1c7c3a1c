//! Slow and oversized clients are cut off: a real TCP client sends half a request
//! (head or body) and waits; the server, with `requestReadTimeoutSecs = 1`, must
//! close the connection or answer 408 on its own. Oversized bodies get a typed 413
//! before they are read.
//!
//! Each wait is a poll of the socket with a generous deadline (15 s): the test
//! asserts *that* the server cuts the client off, never how fast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above the 1 s limit under test, far below "never".
const DEADLINE: Duration = Duration::from_secs(15);

async fn server() -> TestServer {
    TestServer::start_with(&Backend::Sqlite, |c| c.request_read_timeout_secs = 1).await
}

/// Reads until the server closes the connection; `None` if it is still open at
/// the deadline.
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

fn status_and_json(answer: &str) -> (u16, Value) {
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_cut_off() {
    let s = server().await;
    let mut stream = TcpStream::connect(s.handle.local_addr()).await.unwrap();
    stream
        .write_all(b"POST /api/auth/sign-in/anonymous HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream)
        .await
        .expect("the server kept a half-sent request head open");
    // hyper answers 408 to a head that started and never finished, or just closes.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    // Nobody was created by the half request, and the server still serves.
    let (_, users) = s.admin_get("/admin/list-users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 0);
    s.guest().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed() {
    let s = server().await;
    let mut stream = TcpStream::connect(s.handle.local_addr()).await.unwrap();
    let answer = read_until_closed(&mut stream)
        .await
        .expect("a silent connection was kept open");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = server().await;
    let mut stream = TcpStream::connect(s.handle.local_addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream)
        .await
        .expect("an idle keep-alive connection was kept open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_content_length_gets_a_typed_408() {
    let s = server().await;
    let mut stream = TcpStream::connect(s.handle.local_addr()).await.unwrap();
    // Claims 100 bytes, sends 12 and waits.
    stream
        .write_all(
            b"POST /api/auth/sign-in/email HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":\"a",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream)
        .await
        .expect("a stalled body was waited for forever");
    let (status, body) = status_and_json(&answer);
    assert_eq!(status, 408, "{answer:?}");
    assert_eq!(body["code"], "INVALID_REQUEST", "{answer:?}");
    assert!(body["message"].as_str().unwrap().contains("in time"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_whole_not_per_byte() {
    let s = server().await;
    let mut stream = TcpStream::connect(s.handle.local_addr()).await.unwrap();
    stream
        .write_all(
            b"POST /api/auth/sign-in/email HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        )
        .await
        .unwrap();
    // One byte every 200 ms never lets any single read wait a second; only a
    // deadline on the whole body stops it. Sending ends when the server hangs up
    // (or after 60 bytes, 12 s: then the reader below reports the failure).
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(closed.is_ok(), "a trickling body was accepted for 15 s");
    let answer = String::from_utf8_lossy(&got).into_owned();
    let (status, body) = status_and_json(&answer);
    assert_eq!(status, 408, "{answer:?}");
    assert_eq!(body["code"], "INVALID_REQUEST");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_before_it_is_sent() {
    let s = server().await;
    let mut stream = TcpStream::connect(s.handle.local_addr()).await.unwrap();
    // Announces 10 MB and sends none of it: the answer must not wait for it.
    stream
        .write_all(
            b"POST /api/auth/anonymous/upgrade HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nAuthorization: Bearer x\r\n\
              Content-Length: 10000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&got).contains("}") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer to an oversized request");
    let answer = String::from_utf8_lossy(&got).into_owned();
    let (status, body) = status_and_json(&answer);
    // The body is checked before the session: no need to be signed in to be refused.
    assert_eq!(status, 413, "{answer:?}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    s.stop().await;
}
