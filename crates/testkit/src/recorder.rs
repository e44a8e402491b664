//! A backend that records every byte that reaches it, for the hostile-input tests: each request
//! head it receives is answered `200 OK` with an empty body (so keep-alive goes on), and every
//! connection's bytes are kept, in order, for the test to assert exactly what a client's input
//! turned into once Tether forwarded it. A request body is read as its framing says (length or
//! chunked) before the answer, so a request is one entry. [`Recorder::answering`] adds fields
//! of the test's to each answer (to see what becomes of a server's own fields).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What reached the recorder.
#[derive(Debug, Default)]
pub struct Recording {
    /// Every request received, head and body, as raw bytes.
    pub requests: Vec<Vec<u8>>,
    /// Connections accepted.
    pub connections: u64,
}

/// A recording backend on 127.0.0.1.
#[derive(Debug)]
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Recording>>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub async fn spawn() -> Recorder {
        Recorder::answering("").await
    }

    /// A recorder whose answers carry `fields` (lines ending in CRLF) besides its own.
    pub async fn answering(fields: &str) -> Recorder {
        Recorder::replying(
            format!("HTTP/1.1 200 OK\r\n{fields}content-length: 0\r\n\r\n").into_bytes(),
        )
        .await
    }

    /// A recorder that answers every request with `answer`, a whole response as written.
    pub async fn replying(answer: Vec<u8>) -> Recorder {
        let answer: Arc<[u8]> = answer.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let seen: Arc<Mutex<Recording>> = Arc::default();
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                shared.lock().expect("recording").connections += 1;
                tokio::spawn(serve(s, shared.clone(), answer.clone()));
            }
        });
        Recorder { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far, as text (lossy).
    pub fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("recording")
            .requests
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    pub fn connections(&self) -> u64 {
        self.seen.lock().expect("recording").connections
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, seen: Arc<Mutex<Recording>>, answer: Arc<[u8]>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // One request: its head, then its body as framed.
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    if !buf.is_empty() {
                        seen.lock().expect("recording").requests.push(buf);
                    }
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        let whole = loop {
            let body = &buf[end + 4..];
            let done = match (length, chunked) {
                (_, true) => find(body, b"0\r\n\r\n").map(|i| end + 4 + i + 5),
                (Some(l), false) => (body.len() >= l).then_some(end + 4 + l),
                (None, false) => Some(end + 4),
            };
            if let Some(w) = done {
                break w;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    seen.lock().expect("recording").requests.push(buf);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let rest = buf.split_off(whole);
        seen.lock()
            .expect("recording")
            .requests
            .push(std::mem::replace(&mut buf, rest));
        if s.write_all(&answer).await.is_err() {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
