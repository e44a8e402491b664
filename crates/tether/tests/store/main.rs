//! Several Tether processes on one real etcd: every change made through one replica's admin API
//! is served by all of them, from their own watches; failures of etcd and of the path to it.
//!
//! Needs the `etcd` feature (`cargo nextest run --workspace --features tether/etcd`, as the README
//! and CI run it) and Debian's `etcd-server`; without either the tests say loudly that they are
//! skipped, and under `CI=true` that is a failure.

#[cfg(feature = "etcd")]
mod acme;
#[cfg(feature = "etcd")]
mod certificates;
#[cfg(feature = "etcd")]
mod dfsl;
#[cfg(feature = "etcd")]
mod failures;
#[cfg(feature = "etcd")]
mod middlewares;
#[cfg(feature = "etcd")]
mod replicas;
#[cfg(feature = "etcd")]
mod support;
#[cfg(feature = "etcd")]
mod tcp;

#[cfg(not(feature = "etcd"))]
#[test]
fn etcd_tests_need_the_etcd_feature() {
    let msg = "the etcd store tests need the `etcd` feature: cargo nextest run --workspace --features tether/etcd";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; under CI=true this is a failure");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
}
