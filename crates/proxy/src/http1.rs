//! The HTTP/1 codec: header fields as positions in a head ([`fields`]), request heads
//! ([`request`]), response heads ([`response`]), the chunked coding ([`chunked`]), and a socket
//! write helper ([`io`]). It imports nothing about routing, stickiness or the table, so a fuzz
//! target can drive it alone.

pub mod chunked;
pub mod fields;
pub mod io;
pub mod request;
pub mod response;
