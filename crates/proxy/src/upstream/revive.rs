//! A server whose connect failed (refused, or timed out: a node cut off) is out of rotation until
//! a connect to it succeeds again. One task per such server tries every second, in the
//! background, so that no client request pays a connect timeout to find out whether it is back:
//! while it fails the server's passive mark is renewed; the first success clears it (the server
//! takes requests again within about a second of coming back) and the connection joins its pool.
//! The task ends with that success, or when the server leaves the table.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::upstream::exchange::Conn;
use crate::upstream::pool::Dial;
use crate::upstream::registry::Backend;

/// How often a server out of rotation is tried again.
pub const EVERY: Duration = Duration::from_secs(1);

/// Keep `backend` out of rotation until a connect to it succeeds (one task per server).
pub fn watch(backend: &Arc<Backend>, dial: Dial) {
    if backend.pool.reviving.swap(true, Relaxed) {
        return;
    }
    let weak = Arc::downgrade(backend);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(EVERY).await;
            let Some(b) = weak.upgrade() else { return };
            match b.pool.open(dial).await {
                Ok(stream) => {
                    b.state.mark_ok();
                    b.pool.release(Conn::new(stream));
                    b.pool.reviving.store(false, Relaxed);
                    tracing::info!(server = %b.name, address = %b.addr, "server answers connects again: back in rotation");
                    return;
                }
                Err(e) => {
                    tracing::debug!(server = %b.name, error = %e, "server still out of rotation");
                    b.state.mark_failed();
                }
            }
        }
    });
}
