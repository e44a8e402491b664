//! One pick per algorithm over 10 servers: what balancing adds to a request.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tether_balance::{Balancer, Candidate, PickInput, ServerState};
use tether_model::{BalanceAlgo, HashOn};

fn servers(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Candidate {
            name: format!("web-{i}").into(),
            weight,
            state: Arc::new(ServerState::default()),
            backup: false,
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let even = [1; 10];
    let weighted = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5];
    let cases = [
        ("balance/round-robin", BalanceAlgo::RoundRobin, &even, None),
        (
            "balance/weighted-round-robin",
            BalanceAlgo::RoundRobin,
            &weighted,
            None,
        ),
        (
            "balance/least-requests",
            BalanceAlgo::LeastRequests,
            &even,
            None,
        ),
        (
            "balance/consistent-hash",
            BalanceAlgo::ConsistentHash(HashOn::ClientIp),
            &even,
            Some(&[10u8, 0, 3, 7][..]),
        ),
    ];
    for (name, algo, weights, key) in cases {
        let b = Balancer::new(&algo, servers(weights));
        c.bench_function(name, |bench| {
            bench.iter(|| {
                let i = b.pick(PickInput {
                    hash_key: black_box(key),
                    exclude: &[],
                });
                assert!(i.is_some());
                i
            })
        });
    }
}

criterion_group!(benches, picks);
criterion_main!(benches);
