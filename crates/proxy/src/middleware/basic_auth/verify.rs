//! Checking a password against a hash in each scheme `htpasswd` and `mkpasswd` write. Every
//! comparison of a computed hash with the stored one is in constant time.

use base64::Engine as _;
use subtle::ConstantTimeEq;
use tether_model::middleware::{HashScheme, User};

/// Does `password` match `u`'s hash?
pub fn verify(u: &User, password: &[u8]) -> bool {
    let hash = u.hash.as_str();
    match u.scheme {
        // The crate compares in constant time.
        HashScheme::Bcrypt => bcrypt::verify(password, hash).unwrap_or(false),
        HashScheme::Sha1 => {
            let digest = sha1_smol::Sha1::from(password).digest().bytes();
            let ours = base64::engine::general_purpose::STANDARD.encode(digest);
            ours.as_bytes().ct_eq(&hash.as_bytes()[5..]).into()
        }
        HashScheme::Apr1 => match super::apr1::crypt(password, hash) {
            Some(ours) => ours.as_bytes().ct_eq(hash.as_bytes()).into(),
            None => false,
        },
        // The crate compares in constant time.
        HashScheme::Sha256Crypt | HashScheme::Sha512Crypt => {
            use sha_crypt::PasswordVerifier;
            sha_crypt::ShaCrypt::default()
                .verify_password(password, hash)
                .is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_model::middleware::htpasswd::{hash_plain, parse_line};

    // For the password "secret": bcrypt by Python's `bcrypt` (as `htpasswd -nbB` writes it,
    // `$2y$`), `{SHA}` as `htpasswd -nbs`, and `openssl passwd -apr1`, `-5`, `-6`.
    const LINES: [&str; 5] = [
        "a:$2y$05$.l2R/UrCpkRh8Ak.893ZOuCEG1fu.0yRCVIuuyLlj9R0KK5J8iZEm",
        "b:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
        "c:$apr1$o0CJxGu4$QnnTssamc9OYtXRPiZWNn.",
        "d:$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
        "e:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
    ];

    #[test]
    fn each_scheme_checks_the_right_password_only() {
        for line in LINES {
            let u = parse_line(line).unwrap();
            assert!(verify(&u, b"secret"), "{line}");
            assert!(!verify(&u, b"Secret"), "{line}");
            assert!(!verify(&u, b""), "{line}");
        }
    }

    #[test]
    fn a_hashed_plain_password_checks() {
        let u = hash_plain("admin", "pa:ss");
        assert!(verify(&u, b"pa:ss"));
        assert!(!verify(&u, b"pass"));
        assert_eq!(u, hash_plain("admin", "pa:ss"), "the same on every replica");
        assert!(
            !format!("{u:?}").contains('$'),
            "Debug never shows the hash"
        );
    }
}
