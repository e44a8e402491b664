//! A stable 64-bit hash (FNV-1a folded through a 64-bit finaliser): the same on every machine and
//! every Tether build, so proxy replicas agree on consistent-hash choices without talking.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hash bytes.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix(h)
}

/// [`hash64`] fed piece by piece (equal to it over the concatenation); as a `fmt::Write`, it
/// digests formatted text without building the string.
#[derive(Debug, Clone)]
pub struct Hasher64(u64);

impl Default for Hasher64 {
    fn default() -> Self {
        Hasher64(FNV_OFFSET)
    }
}

impl Hasher64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// For `#[derive(Hash)]` values: the bytes they feed, in order, are digested as written.
impl std::hash::Hasher for Hasher64 {
    fn write(&mut self, bytes: &[u8]) {
        Hasher64::write(self, bytes);
    }

    fn finish(&self) -> u64 {
        Hasher64::finish(self)
    }
}

impl std::fmt::Write for Hasher64 {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

/// Murmur3's finaliser: spreads FNV's weak low bits over the whole word.
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn streaming_equals_one_shot() {
        let mut h = Hasher64::default();
        h.write(b"hello ");
        let word = "world";
        let _ = write!(h, "{word} {:?}", [1, 2]);
        assert_eq!(h.finish(), hash64(b"hello world [1, 2]"));
    }
}
