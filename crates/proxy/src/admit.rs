//! `limits.connections_per_client`: how many connections one client address may hold open. Off
//! by default (benchmarks, tests and a proxy in front of Tether all connect from one address);
//! when set, a connection beyond it is answered `429 Too Many Requests` and closed before any of
//! its bytes are read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Connections open, by client address.
type Open = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// Open connections by client address. Clones share the count (every worker admits against one).
#[derive(Debug, Clone)]
pub struct Admission {
    limit: u32,
    open: Open,
}

/// Holds one admitted connection's place until dropped.
#[derive(Debug)]
pub struct Admitted(Option<(IpAddr, Open)>);

impl Admission {
    /// `limit` 0: everyone is admitted, and nothing is counted.
    pub fn new(limit: u32) -> Admission {
        Admission {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for a connection from `ip`, or `None` when it already holds `limit`.
    pub fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        if self.limit == 0 {
            return Some(Admitted(None));
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut open = self.open.lock().expect("admission poisoned");
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Admitted(Some((ip, self.open.clone()))))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((ip, open)) = self.0.take() {
            let mut open = open.lock().expect("admission poisoned");
            if let Some(n) = open.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

/// Answer a connection over the limit and close it.
pub async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "429 Too Many Requests: too many connections open from this address\n";
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_address_and_given_back() {
        let a = Admission::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let one = a.admit(ip).unwrap();
        let _two = a.admit(ip).unwrap();
        assert!(a.admit(ip).is_none());
        assert!(
            a.admit("10.0.0.2".parse().unwrap()).is_some(),
            "per address"
        );
        drop(one);
        assert!(a.admit(ip).is_some());
        assert!(Admission::new(0).admit(ip).is_some());
    }
}
