//! Where a request comes in: the listeners' accept loops ([`server`]), telling HTTP/1.1 from
//! h2c in one read ([`sniff`]), and Tether's own HTTP/1.1 server for the client connection
//! ([`conn`]), which hands what it does not take to hyper. Buffers of idle connections are kept
//! per thread ([`spare`]); the client stream ([`stream`]) is plain TCP or TLS ([`tls`]).

pub mod conn;
pub mod server;
pub mod sniff;
pub(crate) mod spare;
pub mod stream;
pub mod tls;
