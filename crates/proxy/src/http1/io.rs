//! Writing to a socket the cheap way.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Write all of `bytes` to `io`: first straight away (`try_write`, a socket's usual state being
/// writable: no waker, no budget, no readiness poll), then, for what did not fit, as `write_all`
/// does, waiting for room.
pub async fn write_whole(io: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let rest = match io.try_write(bytes) {
        Ok(n) if n == bytes.len() => return Ok(()),
        Ok(n) => &bytes[n..],
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => bytes,
        Err(e) => return Err(e),
    };
    io.write_all(rest).await
}
