//! Where a request goes: the compiled table ([`table`]), its per-entrypoint routers ([`router`]),
//! the host and path a request is matched on ([`host`], [`path`]), session pins ([`sticky`]) and
//! each service's retry budget ([`retry`]).

pub mod host;
pub mod path;
pub mod retry;
pub mod router;
pub mod sticky;
pub mod table;
