//! Who answers it: the live backends and their pools ([`registry`], [`pool`]), sending a request
//! to one ([`send`]) over Tether's own HTTP/1.1 client ([`exchange`]), the bodies both ways
//! ([`body`]) over plain TCP or TLS ([`stream`], [`tls`] for `https://` servers), the pace a
//! client's body must keep ([`pace`]), protocol upgrades ([`upgrade`]), a server whose connect
//! failed kept out until one succeeds ([`revive`]), and
//! the request-end point that counts and logs each request ([`meter`]).

pub mod body;
pub mod exchange;
pub mod meter;
pub mod pace;
pub mod pool;
pub mod registry;
pub mod revive;
pub mod send;
pub mod stream;
pub mod tls;
pub mod upgrade;
