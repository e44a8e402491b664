//! The HTTP/1 codec: header fields as positions in a head ([`fields`]), response heads
//! ([`response`]), the chunked coding ([`chunked`]), and a socket write helper ([`io`]). It imports
//! nothing about routing, stickiness or the table, so a fuzz target can drive it alone; request
//! heads are scanned with the same field machinery by [`crate::front::conn`].

pub mod chunked;
pub mod fields;
pub mod io;
pub mod response;
