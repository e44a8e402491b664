//! Phase 4, request middlewares: the route's chain ([`crate::middleware`]) runs on the request
//! until one answers it (a 401, a 403, a redirect: counted, logged with its name, and given the
//! response edits of the middlewares before it) or all have worked out their edits.

use std::net::IpAddr;

use crate::answer::Answer;
use crate::edit::RequestEdits;
use crate::headers::Peer;
use crate::middleware::{Chain, Request};
use crate::request::RequestHead;
use crate::upstream::meter::Meter;

/// Run `chain` on the request; its answer when a middleware gave one.
pub(super) fn run<'t>(
    chain: &'t Chain,
    head: &RequestHead,
    client: IpAddr,
    peer: &Peer,
    host: &str,
    edits: &mut RequestEdits<'t>,
    meter: &mut Meter,
) -> Option<Box<Answer>> {
    edits.rules = chain.request_edits();
    edits.https = peer.https;
    let mut r = Request {
        head,
        client,
        peer,
        host,
        edits,
        held: &mut meter.held,
        encode: &mut meter.encode,
    };
    let answered = chain.request(&mut r)?;
    if let Some(l) = &mut meter.log {
        l.middleware = Some(answered.by.clone());
    }
    let mut answer = Answer::from(answered.response);
    if let Some(e) = &answered.edits {
        e.apply_to_answer(&mut answer, peer.https);
    }
    Some(Box::new(answer))
}
