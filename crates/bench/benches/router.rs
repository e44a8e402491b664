//! Route lookup cost against table size: host lookups must stay flat from 10 to 10,000 routes,
//! and path-prefix lookups must grow at most logarithmically.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tether_model::rule::RequestView;
use tether_proxy::router::Router;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Default precedence: the longer rule wins.
fn router(rules: impl Iterator<Item = String>) -> Router {
    let rules: Vec<String> = rules.collect();
    Router::from_rules(rules.iter().map(|r| (r.as_str(), r.len() as i64))).expect("valid rules")
}

fn lookup(
    c: &mut Criterion,
    group: &str,
    make: impl Fn(usize) -> String,
    req: impl Fn(usize) -> (String, String),
) {
    let headers = http::HeaderMap::new();
    let mut g = c.benchmark_group(group);
    for n in SIZES {
        let r = Arc::new(router((0..n).map(&make)));
        let (host, path) = req(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let view = RequestView {
                    host: black_box(&host),
                    path: black_box(&path),
                    method: &http::Method::GET,
                    headers: &headers,
                    client: std::net::Ipv4Addr::LOCALHOST.into(),
                };
                let found = r.find(&view).map(|e| e.service);
                assert!(found.is_some());
                found
            })
        });
    }
    g.finish();
}

fn routes(c: &mut Criterion) {
    lookup(
        c,
        "route/host",
        |i| format!("Host(`svc-{i}.example.com`)"),
        |n| (format!("svc-{}.example.com", n / 2), "/".into()),
    );
    lookup(
        c,
        "route/host+path",
        |i| {
            format!(
                "Host(`svc-{}.example.com`) && PathPrefix(`/api/v{}`)",
                i % 10,
                i
            )
        },
        |n| {
            (
                "svc-3.example.com".into(),
                format!("/api/v{}/users", n / 2 / 10 * 10 + 3),
            )
        },
    );
    lookup(
        c,
        "route/path-prefix",
        |i| format!("PathPrefix(`/svc-{i}`)"),
        |n| ("any.example.com".into(), format!("/svc-{}/x", n / 2)),
    );
}

criterion_group!(benches, routes);
criterion_main!(benches);
