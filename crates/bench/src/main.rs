//! `tether-bench-backend`: the fixed-response HTTP/1.1 server that `bench/run.sh` puts behind
//! every proxy. It answers each request head with the same tiny response, on one thread, so that
//! the proxy under test and not the backend is what a benchmark measures. It honours keep-alive
//! and pipelining, closes on `Connection: close`, and ignores request bodies (benchmarks send
//! none).
//!
//! Usage: `tether-bench-backend ADDR NAME`, e.g. `tether-bench-backend 127.0.0.1:9101 a`.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(name)) = (args.next(), args.next()) else {
        eprintln!("usage: tether-bench-backend ADDR NAME");
        std::process::exit(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tether-bench-backend: {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let body = format!("hello from {name}\n");
    let response: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tether-bench-backend: bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(serve(s, response));
                }
                Err(_) => tokio::task::yield_now().await,
            }
        }
    });
}

/// Answer every request head on `s` with `response` until the peer closes or asks to.
async fn serve(mut s: TcpStream, response: &'static [u8]) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut out = Vec::with_capacity(response.len() * 4);
    loop {
        let n = match s.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut start = 0;
        let mut close = false;
        while let Some(end) = find_head_end(&buf[start..filled]) {
            close |= asks_close(&buf[start..start + end]);
            out.extend_from_slice(response);
            start += end;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            return; // a head larger than the buffer: not a benchmark request
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }
    }
}

/// Length of the first complete request head in `b`, terminator included.
fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn asks_close(head: &[u8]) -> bool {
    head.split(|&c| c == b'\n').any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with(b"connection:") && line.windows(5).any(|w| w == b"close")
    })
}
