//! A TCP relay to put between a client and a server in a test, and cut: every connection through
//! it closed and new ones dropped at once, until it is restored. It stands for a network failure
//! between two processes that both keep running.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running relay to one target.
#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let (open, rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*rx.borrow() {
                    continue; // dropped: the peer sees the connection closed
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Relay { addr, open, task }
    }

    /// Close every connection and drop new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
