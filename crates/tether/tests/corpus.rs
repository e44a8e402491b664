//! Every input of the fuzz targets' seed corpora (`fuzz/corpus/<target>/`), replayed through the
//! same entry points the targets call, so `cargo test` checks them without cargo-fuzz. A crash
//! that fuzzing finds is fixed with its input added to the corpus, and stays fixed here.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("request_head", tether_proxy::front::conn::fuzz_take),
    ("response", tether_proxy::http1::response::fuzz_response),
    ("path", tether_proxy::route::path::fuzz_normalize),
    ("rule", tether_model::fuzz::rule),
    ("config", tether_model::fuzz::config),
    ("labels", tether_model::fuzz::labels),
    ("cookie", tether_balance::fuzz::cookie),
    ("client_hello", tether_proxy::tcp::hello::fuzz_client_hello),
    ("proxy_header", tether_proxy::proxy_protocol::fuzz_header),
];

#[test]
fn every_seed_of_every_fuzz_target_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, run) in TARGETS {
        let dir = root.join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            n += 1;
        }
        assert!(n >= 2, "{target}: only {n} seeds in {}", dir.display());
    }
}
