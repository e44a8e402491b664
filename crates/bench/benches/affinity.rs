//! Sticky cookie values: sealing one, and reading one back (a valid value is a table lookup; only
//! an unknown value costs a MAC check).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tether_balance::{AffinityKey, Pin, StickyIndex};

fn cookies(c: &mut Criterion) {
    let key = AffinityKey::from_secret(b"bench affinity key, at least 32 bytes long");
    let servers: Vec<(String, u32)> = (0..10).map(|i| (format!("web-{i}"), 1)).collect();
    let refs: Vec<(&str, u32)> = servers.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    let index = StickyIndex::new(&key, "web", &refs);
    let valid = index.value(3).to_string();
    let stale = key.seal("web", "web-gone");
    let mut forged = valid.clone().into_bytes();
    forged[5] ^= 1;
    let forged = String::from_utf8(forged).expect("ascii");

    c.bench_function("affinity/seal", |b| {
        b.iter(|| key.seal(black_box("web"), black_box("web-3")))
    });
    c.bench_function("affinity/unseal", |b| {
        b.iter(|| key.unseal(black_box("web"), black_box(&stale)))
    });
    c.bench_function("affinity/pin-valid", |b| {
        b.iter(|| {
            let p = index.pin(black_box(&valid));
            assert_eq!(p, Pin::Server(3));
            p
        })
    });
    c.bench_function("affinity/pin-stale", |b| {
        b.iter(|| index.pin(black_box(&stale)))
    });
    c.bench_function("affinity/pin-forged", |b| {
        b.iter(|| {
            let p = index.pin(black_box(&forged));
            assert_eq!(p, Pin::None);
            p
        })
    });
}

criterion_group!(benches, cookies);
criterion_main!(benches);
