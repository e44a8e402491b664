//! Distribution tests for the algorithms.

use std::sync::Arc;

use tether_model::{BalanceAlgo, HashOn};

use super::*;

fn servers(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Candidate {
            name: format!("s{i}").into(),
            weight: w,
            state: Arc::default(),
            backup: false,
        })
        .collect()
}

#[test]
fn backup_servers_take_requests_only_while_no_other_server_does() {
    for algo in [
        BalanceAlgo::RoundRobin,
        BalanceAlgo::LeastRequests,
        BalanceAlgo::ConsistentHash(HashOn::ClientIp),
    ] {
        let mut s = servers(&[1, 1, 1, 1]);
        s[2].backup = true;
        s[3].backup = true;
        let (primary, backup) = (s[0].state.clone(), s[1].state.clone());
        let b = Balancer::new(&algo, s);
        let picks = |b: &Balancer| -> std::collections::BTreeSet<usize> {
            (0..200u32)
                .map(|k| {
                    let key = k.to_be_bytes();
                    b.pick(PickInput {
                        hash_key: Some(&key),
                        exclude: &[],
                    })
                    .unwrap()
                })
                .collect()
        };
        assert_eq!(picks(&b), [0, 1].into(), "{algo:?}: the primaries only");
        primary.set_healthy(false);
        assert_eq!(picks(&b), [1].into(), "{algo:?}: the one primary up");
        backup.set_draining(true);
        assert_eq!(
            picks(&b),
            [2, 3].into(),
            "{algo:?}: no primary takes requests: the backups"
        );
        primary.set_healthy(true);
        assert_eq!(
            picks(&b),
            [0].into(),
            "{algo:?}: a primary is back: it alone"
        );
        // A primary passively marked down is still preferred to a backup only in the second pass.
        primary.mark_failed();
        assert_eq!(
            picks(&b),
            [2, 3].into(),
            "{algo:?}: a backup before a primary marked down"
        );
    }
}

#[test]
fn round_robin_weights_three_to_one() {
    let b = Balancer::new(&BalanceAlgo::RoundRobin, servers(&[3, 1]));
    let mut counts = [0; 2];
    for _ in 0..4000 {
        counts[b.pick(PickInput::default()).unwrap()] += 1;
    }
    assert_eq!(counts, [3000, 1000]);
}

#[test]
fn round_robin_skips_draining_and_excluded_servers() {
    let s = servers(&[1, 1, 1]);
    s[0].state.set_draining(true);
    let b = Balancer::new(&BalanceAlgo::RoundRobin, s);
    for _ in 0..10 {
        let i = b
            .pick(PickInput {
                hash_key: None,
                exclude: &[2],
            })
            .unwrap();
        assert_eq!(i, 1);
    }
}

#[test]
fn passively_failed_servers_are_skipped_unless_all_failed() {
    let s = servers(&[1, 1]);
    s[0].state.mark_failed();
    let b = Balancer::new(&BalanceAlgo::RoundRobin, s.clone());
    assert!((0..10).all(|_| b.pick(PickInput::default()) == Some(1)));
    s[1].state.mark_failed();
    assert!(
        b.pick(PickInput::default()).is_some(),
        "all failed: try anyway"
    );
}

#[test]
fn least_requests_prefers_the_idle_server() {
    let s = servers(&[1, 1]);
    let _busy: Vec<_> = (0..10).map(|_| s[0].state.start_request()).collect();
    let b = Balancer::new(&BalanceAlgo::LeastRequests, s);
    let picks: usize = (0..1000)
        .filter(|_| b.pick(PickInput::default()) == Some(1))
        .count();
    // P2C picks the busy server only when both samples land on it (1/4 of the time).
    assert!(picks > 650, "idle server got {picks}/1000");
}

#[test]
fn consistent_hash_moves_about_one_nth_of_keys() {
    let algo = BalanceAlgo::ConsistentHash(HashOn::ClientIp);
    let all = servers(&[1; 5]);
    let five = Balancer::new(&algo, all.clone());
    let four = Balancer::new(&algo, all[..2].iter().chain(&all[3..]).cloned().collect());
    let mut moved = 0;
    for k in 0..10_000u32 {
        let key = k.to_be_bytes();
        let input = PickInput {
            hash_key: Some(&key),
            exclude: &[],
        };
        let a = &five.servers()[five.pick(input).unwrap()].name;
        let b = &four.servers()[four.pick(input).unwrap()].name;
        if a != b {
            moved += 1;
            assert_eq!(&**a, "s2", "only the removed server's keys move");
        }
    }
    assert!(
        moved <= 10_000 * 3 / 10,
        "moved {moved} of 10000 keys (limit 1.5/n = 3000)"
    );
    assert!(
        moved >= 1000,
        "the removed server held {moved} keys: the ring is badly skewed"
    );
}
