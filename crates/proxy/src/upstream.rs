//! Who answers it: the live backends and their pools ([`registry`], [`pool`]), sending a request
//! to one ([`send`]) over Tether's own HTTP/1.1 client ([`exchange`]), the bodies both ways
//! ([`body`]), the pace a client's body must keep ([`pace`]) and protocol upgrades ([`upgrade`]).

pub mod body;
pub mod exchange;
pub mod pace;
pub mod pool;
pub mod registry;
pub mod send;
pub mod upgrade;
