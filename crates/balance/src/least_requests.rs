//! Least outstanding requests by the power of two choices: sample two usable servers at random and
//! take the one with fewer in-flight requests per unit of weight. Near-optimal, no global scan.

use crate::Candidate;

pub(crate) fn pick(servers: &[Candidate], ok: impl Fn(usize) -> bool) -> Option<usize> {
    let n = servers.len();
    if n == 0 {
        return None;
    }
    // Two distinct servers: with two servers this compares both every time.
    let a = sample(n, &ok);
    let b = a.and_then(|a| sample(n, &|i| i != a && ok(i)));
    match (a, b) {
        (Some(a), Some(b)) if a != b => {
            // Compare in_flight/weight without division: a.in/a.w < b.in/b.w.
            let (sa, sb) = (&servers[a], &servers[b]);
            let la = u64::from(sa.state.in_flight()) * u64::from(sb.weight.max(1));
            let lb = u64::from(sb.state.in_flight()) * u64::from(sa.weight.max(1));
            Some(if lb < la { b } else { a })
        }
        (Some(a), _) => Some(a),
        (None, _) => None,
    }
}

/// A random usable index: a few random probes, then a scan from a random start.
fn sample(n: usize, ok: &impl Fn(usize) -> bool) -> Option<usize> {
    for _ in 0..3 {
        let i = fastrand::usize(..n);
        if ok(i) {
            return Some(i);
        }
    }
    let start = fastrand::usize(..n);
    (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
}
