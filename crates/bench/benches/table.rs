//! A reload of 10,000 routes over 1,000 services (the shape `bench/scale.py` swaps under load):
//! parsing the `tether.toml` text, the version digest and the whole compile, which a reload pays
//! before the swap.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tether_balance::AffinityKey;
use tether_model::{BalanceAlgo, RouteDecl, Rule, ServerAddr, ServerDecl, ServiceDecl};
use tether_proxy::registry::Registry;
use tether_proxy::table::{compile, version, CompileInput};

const ROUTES: usize = 10_000;
const SERVICES: usize = 1_000;

fn decls() -> (Vec<ServiceDecl>, Vec<RouteDecl>) {
    let server = |name: &str, port: u16| ServerDecl {
        name: name.into(),
        addr: ServerAddr::parse(&format!("http://127.0.0.1:{port}")).expect("valid address"),
        weight: 1,
        draining: false,
        tls: None,
        backup: false,
    };
    let services = (0..SERVICES)
        .map(|s| ServiceDecl {
            name: format!("s{s}"),
            servers: vec![server("a", 19101), server("b", 19102)],
            balance: BalanceAlgo::default(),
            affinity: None,
            resolve: None,
            health: None,
            wait: Default::default(),
            protocol: Default::default(),
        })
        .collect();
    let routes = (0..ROUTES)
        .map(|i| {
            let text = format!(
                "Host(`svc-{}.example.com`) && PathPrefix(`/api/v{i}`)",
                i % SERVICES
            );
            RouteDecl {
                name: format!("r{i}"),
                rule: Rule::parse(&text).expect("valid rule").into(),
                priority: text.len() as i64,
                rule_text: text,
                service: format!("s{}", i % SERVICES),
                entrypoints: Vec::new(),
                max_body: None,
                redirect_https: None,
                hsts: None,
                middlewares: Vec::new(),
                tls: None,
            }
        })
        .collect();
    (services, routes)
}

/// The text `bench/scale.py` writes (without its two marker routes).
fn file_text() -> String {
    let servers = r#"servers = [{ name = "a", url = "http://127.0.0.1:19101" }, { name = "b", url = "http://127.0.0.1:19102" }]"#;
    let mut out = String::from(
        "[entrypoints]\nweb = \"127.0.0.1:18080\"\n\n[affinity]\nkey = \"bench-affinity-key-0123456789abcdef0123456789\"\n",
    );
    for i in 0..ROUTES {
        out += &format!(
            "\n[routes.r{i}]\nrule = \"Host(`svc-{}.example.com`) && PathPrefix(`/api/v{i}`)\"\nservice = \"s{}\"\n",
            i % SERVICES,
            i % SERVICES
        );
    }
    for s in 0..SERVICES {
        out += &format!("\n[services.s{s}]\n{servers}\n");
    }
    out
}

fn table(c: &mut Criterion) {
    let (services, routes) = decls();
    let key = AffinityKey::from_secret(b"bench-affinity-key-0123456789abcdef0123456789");
    let registry = Registry::default();
    let entrypoints = vec!["web".to_string()];
    let secrets = tether_proxy::middleware::Secrets::default();
    let mut g = c.benchmark_group("table/10k-routes");
    g.sample_size(10);
    let text = file_text();
    g.bench_function("parse", |b| {
        b.iter(|| {
            let cfg = tether_model::file_config::parse(black_box(&text)).expect("valid file");
            assert_eq!(cfg.routes.len(), ROUTES);
            cfg
        })
    });
    g.bench_function("version", |b| {
        b.iter(|| version(black_box(&services), black_box(&routes), &[], &[]))
    });
    g.bench_function("compile", |b| {
        b.iter(|| {
            let input = CompileInput {
                entrypoints: &entrypoints,
                tls_ports: &[],
                key: &key,
                registry: &registry,
                version: None,
                middlewares: &[],
                secrets: &secrets,
                tcp_entrypoints: &[],
                tcp_routes: &[],
                acme_resolvers: &[],
            };
            compile(black_box(&services), black_box(&routes), input).expect("valid table")
        })
    });
    g.finish();
}

criterion_group!(benches, table);
criterion_main!(benches);
