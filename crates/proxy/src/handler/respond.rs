//! Phase 7, response middlewares: the server's response becomes the client's. The session's
//! pin (the affinity cookie, or the server's own cookie prefixed), then the route's header edits
//! ([`crate::edit`]), of which `hsts` is the last.

use std::sync::Arc;

use tether_balance::state::InFlight;

use super::pick::Choice;
use crate::answer::Answer;
use crate::edit::FieldEdits;
use crate::route::sticky;
use crate::route::table::Service;
use crate::upstream::body::ProxyBody;
use crate::upstream::exchange::{BodyReader, Conn, Head, WireError};
use crate::upstream::registry::Backend;

/// The response `head` (its body to come on `conn`) as the client gets it.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn answer(
    svc: &Service,
    backend: Arc<Backend>,
    choice: Choice,
    app_value: Option<&str>,
    response: Option<(&FieldEdits, bool)>,
    encode: Option<crate::middleware::Chosen>,
    head: Head,
    conn: Conn,
    in_flight: InFlight,
) -> Answer {
    let Head {
        parts: mut rp,
        fields,
        framing,
        keep_alive,
    } = head;
    let mut server = Some(fields);
    let mut pin = None;
    if let Some(s) = &svc.sticky {
        let has_cache_control = server.as_ref().is_some_and(|f| f.has_cache_control);
        if sticky::edits_server_fields(s, choice.fresh, has_cache_control) {
            // The server's own fields are edited: they go into the header map.
            if let Some(f) = server.take() {
                match f.to_map() {
                    Ok(map) => rp.headers = map,
                    Err(e) => {
                        tracing::warn!(service = %svc.name, server = %backend.name, error = %e, "upstream failed");
                        return super::send::upstream_error(svc, &WireError::from(e).into()).into();
                    }
                }
            }
            sticky::write_response(&mut rp.headers, s, choice.idx, choice.fresh, app_value);
        } else {
            pin = sticky::pin_fields(s, choice.idx, choice.fresh);
        }
    }
    let mut body = match BodyReader::new(conn, framing, keep_alive) {
        Ok(reader) => ProxyBody::upstream(reader, backend, in_flight),
        Err(conn) => {
            if keep_alive {
                backend.pool.release(conn);
            }
            ProxyBody::finished(in_flight, backend)
        }
    };
    if let Some((edits, https)) = response {
        // After the server's own fields (above) may have become the map.
        edits.apply_to_response(&mut rp.headers, server.as_mut(), https);
    }
    if let Some(chosen) = encode {
        // On the response as the edits left it.
        body = crate::middleware::compress::respond(
            chosen,
            rp.status,
            &mut rp.headers,
            server.as_mut(),
            body,
        );
    }
    // Built in place: an answer is large, and moving it costs a copy.
    Answer {
        parts: rp,
        server,
        pin,
        body,
    }
}
