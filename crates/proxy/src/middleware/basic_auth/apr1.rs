//! Apache's `$apr1$` hash: MD5-crypt (Poul-Henning Kamp's `$1$`) with the magic string `$apr1$`.
//! Hand-written on the `md-5` crate because no maintained crate checks it, and `htpasswd -m` (its
//! default before Apache 2.4) writes it, so users' files hold it. Only ever used to check a
//! password against a stored hash; tested against hashes written by `openssl passwd -apr1` and
//! `htpasswd -m`.

use md5::{Digest, Md5};

const MAGIC: &[u8] = b"$apr1$";
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The `$apr1$salt$hash` of `password` with the salt of `stored` (`None`: not an apr1 hash).
pub fn crypt(password: &[u8], stored: &str) -> Option<String> {
    let rest = stored.strip_prefix("$apr1$")?;
    let salt = rest.split('$').next()?;
    let salt = &salt.as_bytes()[..salt.len().min(8)];

    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut n = password.len();
    while n > 0 {
        ctx.update(&alt[..n.min(16)]);
        n = n.saturating_sub(16);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut digest = ctx.finalize();

    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(digest);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(digest);
        } else {
            c.update(password);
        }
        digest = c.finalize();
    }

    let d = digest;
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(std::str::from_utf8(salt).ok()?);
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            u32::from(d[a]) << 16 | u32::from(d[b]) << 8 | u32::from(d[c]),
            4,
        );
    }
    put(u32::from(d[11]), 2);
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_hashes() {
        // From python-aprmd5's documentation, and `openssl passwd -apr1 -salt xxxxxxxx password`.
        for (pw, h) in [
            ("foo", "$apr1$mYJd83wW$IO.6aK3G0d4mHxcImhPX50"),
            ("password", "$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0"),
        ] {
            assert_eq!(super::crypt(pw.as_bytes(), h).as_deref(), Some(h));
        }
        assert!(super::crypt(b"x", "$1$abc$def").is_none());
    }
}
