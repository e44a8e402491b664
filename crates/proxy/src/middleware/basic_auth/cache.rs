//! Credentials that passed a check, remembered so that a kept-alive client is spared bcrypt on
//! every request. Bounded: a fixed table of slots, each holding one entry, picked by the entry's
//! digest (a new entry takes its slot's place). An entry is a SHA-256 over a key drawn at start,
//! the stored hash and the `Authorization` value: never the password, and useless without the
//! key; a hash that changes (a new users file) matches none of its old entries.

use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// Slots in the table.
pub const SLOTS: usize = 4096;

type Entry = [u8; 32];

struct Cache {
    key: [u8; 32],
    slots: Mutex<Vec<Option<Entry>>>,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut key = [0u8; 32];
        let provider = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider();
        if provider.secure_random.fill(&mut key).is_err() {
            // Without randomness the digest is still salted by the hash: only slower to guess.
            key = [0x5a; 32];
        }
        Cache {
            key,
            slots: Mutex::new(vec![None; SLOTS]),
        }
    })
}

/// The entry for `authorization` checked against `hash`.
pub fn key(hash: &str, authorization: &[u8]) -> Entry {
    let c = cache();
    let mut d = Sha256::new();
    d.update(c.key);
    d.update(hash.as_bytes());
    d.update([0]);
    d.update(authorization);
    d.finalize().into()
}

fn slot(e: &Entry) -> usize {
    usize::from(u16::from_le_bytes([e[0], e[1]])) % SLOTS
}

pub fn contains(e: &Entry) -> bool {
    let slots = cache().slots.lock().expect("cache poisoned");
    slots[slot(e)].as_ref() == Some(e)
}

pub fn insert(e: Entry) {
    let mut slots = cache().slots.lock().expect("cache poisoned");
    slots[slot(&e)] = Some(e);
}
