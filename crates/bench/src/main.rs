//! `tether-bench-backend`: the fixed-response HTTP/1.1 server that `bench/run.sh` puts behind
//! every proxy. It answers each request head with the same tiny response, on one thread, so that
//! the proxy under test and not the backend is what a benchmark measures; a request for
//! `/page.html` (any prefix) gets instead a fixed page of about 20 KB of HTML, for the
//! compression scenario. It honours keep-alive
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
    let page = page();
    let page: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
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
                    tokio::spawn(serve(s, response, page));
                }
                Err(_) => tokio::task::yield_now().await,
            }
        }
    });
}

/// Answer every request head on `s` with `response` until the peer closes or asks to.
async fn serve(mut s: TcpStream, response: &'static [u8], page: &'static [u8]) {
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
            let head = &buf[start..start + end];
            close |= asks_close(head);
            out.extend_from_slice(if wants_page(head) { page } else { response });
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

/// A shop's product list: about 20 KB of HTML, the same on every run.
fn page() -> String {
    let mut s = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Catalogue</title>\n<link rel=\"stylesheet\" href=\"/static/site.css\"></head>\n<body><main><h1>Catalogue</h1><ul class=\"products\">\n",
    );
    let words = [
        "lamp", "chair", "table", "shelf", "rug", "mirror", "clock", "vase",
    ];
    let mut i = 0u32;
    while s.len() < 20_000 {
        let w = words[(i as usize * 7) % words.len()];
        s.push_str(&format!(
            "<li class=\"product\" data-id=\"{i}\"><a href=\"/product/{i}\">Oak {w} no. {i}</a><span class=\"price\">{}.{:02} EUR</span><button class=\"add\">Add to cart</button></li>\n",
            19 + (i * 37) % 300,
            (i * 13) % 100
        ));
        i += 1;
    }
    s.push_str("</ul></main></body></html>\n");
    s
}

/// Does the request line ask for `/page.html`?
fn wants_page(head: &[u8]) -> bool {
    let line = head.split(|&c| c == b'\r').next().unwrap_or(head);
    line.windows(11).any(|w| w == b"/page.html ")
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
