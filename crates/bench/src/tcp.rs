//! `tether-bench-tcp`: the TCP load that `bench/tcp.py` puts through each proxy.
//!
//! - `sink ADDR`: a server that reads each connection to its end and then closes it (the bulk
//!   transfer's receiver), or, for a connection that sends `PING` first, echoes (the
//!   connection-rate test's server).
//! - `send ADDR BYTES`: one connection sending `BYTES` (64 KiB writes), then closing its half and
//!   waiting for the server's close; prints the seconds it took.
//! - `connect ADDR SECONDS CONCURRENCY`: that many loops, each connecting, sending `PING`,
//!   reading `PING` back and closing, for `SECONDS`; prints connections per second and errors.
//!
//! One thread each: the proxy under test, held to its cores, must be what the figures measure.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = |s: &str| -> SocketAddr {
        s.parse().unwrap_or_else(|e| {
            eprintln!("tether-bench-tcp: {s:?}: {e}");
            std::process::exit(2)
        })
    };
    let num = |s: &str| -> u64 {
        s.parse().unwrap_or_else(|e| {
            eprintln!("tether-bench-tcp: {s:?}: {e}");
            std::process::exit(2)
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["sink", a] => local.block_on(&rt, sink(addr(a))),
        ["send", a, n] => local.block_on(&rt, send(addr(a), num(n))),
        ["connect", a, secs, c] => local.block_on(&rt, connect(addr(a), num(secs), num(c))),
        _ => {
            eprintln!("usage: tether-bench-tcp sink ADDR | send ADDR BYTES | connect ADDR SECONDS CONCURRENCY");
            std::process::exit(2);
        }
    }
}

async fn sink(addr: SocketAddr) {
    let l = TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("tether-bench-tcp: bind {addr}: {e}");
        std::process::exit(1)
    });
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut first = true;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if first && buf[..n].starts_with(b"PING") {
                            let _ = s.write_all(&buf[..n]).await;
                        }
                        first = false;
                    }
                }
            }
        });
    }
}

async fn send(addr: SocketAddr, bytes: u64) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let chunk = vec![b'x'; 64 * 1024];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        c.write_all(&chunk[..n]).await.expect("write");
        left -= n as u64;
    }
    c.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest).await;
    println!("{:.6}", started.elapsed().as_secs_f64());
}

async fn connect(addr: SocketAddr, secs: u64, concurrency: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let counts = Rc::new(std::cell::Cell::new((0u64, 0u64)));
    let mut loops = Vec::new();
    for _ in 0..concurrency {
        let counts = counts.clone();
        loops.push(tokio::task::spawn_local(async move {
            while Instant::now() < end {
                let ok = async {
                    let mut c = TcpStream::connect(addr).await.ok()?;
                    c.write_all(b"PING").await.ok()?;
                    let mut b = [0u8; 4];
                    c.read_exact(&mut b).await.ok()?;
                    (&b == b"PING").then_some(())
                };
                let ok = tokio::time::timeout(Duration::from_secs(5), ok)
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                let (good, bad) = counts.get();
                counts.set(if ok { (good + 1, bad) } else { (good, bad + 1) });
            }
        }));
    }
    let started = Instant::now();
    for l in loops {
        let _ = l.await;
    }
    let (good, bad) = counts.get();
    println!("{:.1} {bad}", good as f64 / started.elapsed().as_secs_f64());
}
