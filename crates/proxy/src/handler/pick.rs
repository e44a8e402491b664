//! Phase 5, pick a server: the session's pin first (a server it holds, or its new home when
//! that server is gone, the same on every replica), then the service's algorithm.

use http::Response;
use tether_balance::{hash, PickInput, Pin};
use tether_model::{HashOn, OnMissing};

use super::wait;
use crate::answer::error;
use crate::headers::ReadFields as _;
use crate::request::RequestHead;
use crate::route::sticky;
use crate::route::sticky::RequestPin;
use crate::route::table::Service;
use crate::stats::Affinity;
use crate::upstream::body::ProxyBody;
use http::StatusCode;

/// The pick a request ended up with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Choice {
    pub(super) idx: usize,
    /// Not validly pinned to `idx` before: the response must (re)pin.
    pub(super) fresh: bool,
}

pub(super) enum Refusal {
    PinnedGone,
    NoServer,
}

pub(super) fn hash_key(svc: &Service, h: &RequestHead, ip: std::net::IpAddr) -> Option<Vec<u8>> {
    match svc.hash_on.as_ref()? {
        HashOn::ClientIp => Some(match ip {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        }),
        HashOn::Header(name) => h.first_value(name).map(<[u8]>::to_vec),
        HashOn::Cookie(name) => sticky::cookie(h, name).map(<[u8]>::to_vec),
    }
}

pub(super) fn choose(
    svc: &Service,
    pin: Pin,
    key: Option<&[u8]>,
    exclude: &[usize],
) -> Result<Choice, Refusal> {
    let sticky = svc.sticky.as_ref();
    let policy = sticky.map(|s| s.policy.on_missing);
    match pin {
        Pin::Server(i) if svc.backends[i].state.takes_pinned() => {
            svc.backends[i].state.count_pinned();
            return Ok(Choice {
                idx: i,
                fresh: false,
            });
        }
        Pin::Server(i) => {
            if policy == Some(OnMissing::Fail) {
                return Err(Refusal::PinnedGone);
            }
            return rehome(svc, i, exclude).ok_or(Refusal::NoServer);
        }
        Pin::Stale(id) => {
            if policy == Some(OnMissing::Fail) {
                return Err(Refusal::PinnedGone);
            }
            let s = sticky.expect("a pin implies affinity");
            if let Some(idx) = s.index.rehome(id, |i| takes_new(svc, i, exclude)) {
                return Ok(Choice { idx, fresh: true });
            }
        }
        Pin::None => {}
    }
    svc.balancer
        .pick(PickInput {
            hash_key: key,
            exclude,
        })
        .map(|idx| Choice {
            idx,
            fresh: sticky.is_some(),
        })
        .ok_or(Refusal::NoServer)
}

/// May server `i` take a session it does not hold yet (and was not tried already)?
fn takes_new(svc: &Service, i: usize, exclude: &[usize]) -> bool {
    !exclude.contains(&i)
        && svc.balancer.servers()[i].weight > 0
        && svc.backends[i].state.takes_new(true)
}

/// Move a session off server `from`, the same way on every replica.
pub(super) fn rehome(svc: &Service, from: usize, exclude: &[usize]) -> Option<Choice> {
    let s = svc.sticky.as_ref()?;
    let id = hash::hash64(s.index.value(from).as_bytes());
    s.index
        .rehome(id, |i| i != from && takes_new(svc, i, exclude))
        .or_else(|| {
            svc.balancer.pick(PickInput {
                hash_key: None,
                exclude: &[from],
            })
        })
        .filter(|i| !exclude.contains(i))
        .map(|idx| Choice { idx, fresh: true })
}

pub(super) fn refusal(svc: &Service, r: Refusal) -> Response<ProxyBody> {
    match r {
        Refusal::PinnedGone => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the server holding this session of service {} is unavailable",
                svc.name
            ),
        ),
        Refusal::NoServer => wait::no_server(&svc.name),
    }
}

/// What affinity made of a request: its pin as read, and the server chosen.
pub(super) fn affinity_of(svc: &Service, pin: &RequestPin, choice: &Choice) -> Affinity {
    if svc.sticky.is_none() {
        return Affinity::None;
    }
    match pin.pin {
        Pin::Server(i) if i == choice.idx && !choice.fresh => Affinity::Pinned,
        Pin::Server(_) | Pin::Stale(_) => Affinity::Rebalanced,
        Pin::None if pin.presented => Affinity::Forged,
        Pin::None => Affinity::New,
    }
}
