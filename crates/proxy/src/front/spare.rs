//! Read buffers kept per thread between connections: a connection that goes idle or closes gives
//! its client read buffer back here, and the next connection that has something to read takes
//! one, instead of a free and an allocation per request (and per new connection).

use std::cell::RefCell;

use bytes::BytesMut;

/// Size of the buffers kept, and of a client connection's reads.
pub const READ_CHUNK: usize = 4096;
/// Buffers kept per thread (at most this many times [`READ_CHUNK`] bytes).
const KEPT: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Keep `buf` (emptied) for another connection, if none of its bytes are still in use elsewhere.
pub fn put_back(mut buf: BytesMut) {
    buf.clear();
    if buf.try_reclaim(READ_CHUNK) {
        SPARE.with_borrow_mut(|s| {
            if s.len() < KEPT {
                s.push(buf);
            }
        });
    }
}

/// A kept buffer (empty), or a new one with no room yet.
pub fn take() -> BytesMut {
    SPARE.with_borrow_mut(Vec::pop).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_empty_and_one_still_shared_is_not_kept() {
        let mut b = BytesMut::with_capacity(READ_CHUNK);
        b.extend_from_slice(b"left over");
        put_back(b);
        let again = take();
        assert!(again.is_empty() && again.capacity() >= READ_CHUNK);
        let mut shared = again;
        shared.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let message = shared.split().freeze();
        put_back(shared);
        assert_eq!(take().capacity(), 0, "its bytes are still in use");
        drop(message);
    }
}
