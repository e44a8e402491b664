//! `hsts` (a route field): responses to requests over TLS carry `Strict-Transport-Security`,
//! the last response edit of the route's chain, so no middleware or server replaces it.

use http::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use tether_model::Hsts;

use crate::edit::{FieldEdits, Op};

/// Add the route's `Strict-Transport-Security` to `edits`, for responses over TLS only.
pub fn push(edits: &mut FieldEdits, h: &Hsts) {
    let v = HeaderValue::try_from(h.value()).expect("digits and letters only");
    edits.push(Op::Set(STRICT_TRANSPORT_SECURITY, v), true);
}
