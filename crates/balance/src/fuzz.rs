//! Entry point for the cookie fuzz target (`fuzz/`) and its corpus replay: an affinity cookie
//! value from a client can only ever select a server of the service, and only by its exact value.

use crate::affinity::{AffinityKey, StickyIndex};
use crate::Pin;

/// Any bytes as a cookie value, against a service of three servers.
pub fn cookie(data: &[u8]) {
    let key = AffinityKey::from_secret(b"fuzz-key-fuzz-key-fuzz-key-fuzz-key");
    let servers = [("a", 1), ("b", 1), ("c", 1)];
    let index = StickyIndex::new(&key, "svc", &servers);
    match index.pin(data) {
        Pin::Server(i) => {
            assert!(i < servers.len());
            assert_eq!(
                index.value(i).as_bytes(),
                data,
                "only the exact sealed value pins"
            );
        }
        Pin::Stale(_) | Pin::None => {}
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if key.unseal("svc", text).is_some() {
            // Only a value of Tether's own seal opens, and those all have one length.
            assert_eq!(text.len(), index.value(0).len());
        }
    }
}
