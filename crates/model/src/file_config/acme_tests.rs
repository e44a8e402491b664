//! Tests of `[acme]` and a route's `tls`: the documented shape parses with its defaults, and each
//! mistake is refused naming its field.

use super::*;
use crate::acme::{check_settings, Challenge, KeyType, LETSENCRYPT_STAGING};

const ACME: &str = r#"
[entrypoints]
web = "0.0.0.0:80"
websecure = { address = "0.0.0.0:443", tls = true }

[acme.le]
email = "ops@example.com"

[acme.staging]
email = "ops@example.com"
ca = "letsencrypt-staging"
challenge = "tls-alpn-01"
key_type = "P-384"
renew_before = "720h"
max_orders_per_hour = 5

[routes.shop]
rule = "Host(`shop.example`) && PathPrefix(`/`)"
service = "shop"
tls = { resolver = "le" }

[routes.api]
rule = "PathPrefix(`/api`)"
service = "shop"
tls = { resolver = "staging", domains = [{ main = "api.example", sans = ["www.api.example"] }] }

[services.shop]
servers = [{ url = "http://10.0.0.1:80" }]
"#;

fn errors(src: &str) -> String {
    parse(src).unwrap_err().to_string()
}

#[test]
fn resolvers_and_route_tls_parse_with_their_defaults() {
    let c = parse(ACME).unwrap();
    let le = &c.settings.acme[0];
    assert_eq!(le.name, "le");
    assert_eq!(le.ca, crate::acme::LETSENCRYPT);
    assert_eq!(le.challenge, Challenge::Http01);
    assert_eq!(le.key_type, KeyType::P256);
    assert_eq!(le.renew_before, None);
    assert_eq!(le.max_orders_per_hour, 20);
    let st = &c.settings.acme[1];
    assert_eq!(st.ca, LETSENCRYPT_STAGING);
    assert_eq!(st.challenge, Challenge::TlsAlpn01);
    assert_eq!(st.key_type, KeyType::P384);
    assert_eq!(
        st.renew_before,
        Some(std::time::Duration::from_secs(720 * 3600))
    );
    assert_eq!(st.max_orders_per_hour, 5);
    let api = c.routes.iter().find(|r| r.name == "api").unwrap();
    let tls = api.tls.as_ref().unwrap();
    assert_eq!(tls.resolver.as_deref(), Some("staging"));
    assert_eq!(tls.domains[0].names(), ["api.example", "www.api.example"]);
    // A route's tls does not limit its entrypoints.
    assert!(api.entrypoints.is_empty());
    let (errs, warns) = check_settings(&c.settings);
    assert!(errs.is_empty() && warns.is_empty(), "{errs:?} {warns:?}");
}

#[test]
fn mistakes_are_refused_naming_the_field() {
    let e = errors(&ACME.replace(
        "email = \"ops@example.com\"\n\n[acme.staging]",
        "email = \"ops\"\n\n[acme.staging]",
    ));
    assert!(
        e.contains("acme.le.email") && e.contains("email address"),
        "{e}"
    );
    let e = errors(&ACME.replace("resolver = \"le\"", "resolver = \"letsencrypt\""));
    assert!(
        e.contains("routes.shop.tls.resolver")
            && e.contains("no ACME resolver named \"letsencrypt\""),
        "{e}"
    );
    let e = errors(&ACME.replace(
        "rule = \"Host(`shop.example`) && PathPrefix(`/`)\"",
        "rule = \"PathPrefix(`/`)\"",
    ));
    assert!(
        e.contains("routes.shop.tls.resolver") && e.contains("no name to order"),
        "{e}"
    );
    let e = errors(&ACME.replace("Host(`shop.example`)", "Host(`*.shop.example`)"));
    assert!(e.contains("DNS-01"), "{e}");
    let e = errors(&ACME.replace("challenge = \"tls-alpn-01\"", "challenge = \"dns-01\""));
    assert!(
        e.contains("acme.staging.challenge") && e.contains("not offered"),
        "{e}"
    );
    let e = errors(&ACME.replace(
        "ca = \"letsencrypt-staging\"",
        "ca = \"http://ca.local/dir\"",
    ));
    assert!(e.contains("acme.staging.ca") && e.contains("HTTPS"), "{e}");
    let e = errors(&ACME.replace("max_orders_per_hour = 5", "max_orders_per_hour = 0"));
    assert!(e.contains("acme.staging.max_orders_per_hour"), "{e}");
    let e = errors(&ACME.replace("key_type = \"P-384\"", "key_type = \"RSA4096\""));
    assert!(e.contains("acme.staging.key_type"), "{e}");
    let e = errors(&ACME.replace("[acme.le]\n", "[acme.le]\nwildcard = true\n"));
    assert!(e.contains("wildcard"), "{e}");
}

#[test]
fn each_challenge_needs_its_entrypoint_and_another_port_is_a_warning() {
    // No TLS entrypoint for tls-alpn-01.
    let c = parse(&ACME.replace(", tls = true", "")).unwrap();
    let (errs, _) = check_settings(&c.settings);
    assert!(
        errs.iter()
            .any(|e| e.contains("acme.staging.challenge") && e.contains("needs a TLS entrypoint")),
        "{errs:?}"
    );
    // No plain entrypoint for http-01.
    let c = parse(&ACME.replace("web = \"0.0.0.0:80\"\n", "")).unwrap();
    let (errs, _) = check_settings(&c.settings);
    assert!(
        errs.iter()
            .any(|e| e.contains("acme.le.challenge") && e.contains("plain HTTP entrypoint")),
        "{errs:?}"
    );
    // On 8080 and 8443: each resolver is warned about.
    let c = parse(
        &ACME
            .replace(":80\"", ":8080\"")
            .replace(":443\"", ":8443\""),
    )
    .unwrap();
    let (errs, warns) = check_settings(&c.settings);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(warns.len(), 2, "{warns:?}");
    assert!(
        warns[0].contains("port 80") && warns[0].contains("web on 8080"),
        "{warns:?}"
    );
}
