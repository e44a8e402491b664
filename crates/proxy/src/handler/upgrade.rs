//! An upgrade request (a WebSocket handshake): sent to the server picked for it, then the two
//! connections are joined ([`crate::upstream::upgrade`]).

use http::{Request, StatusCode};

use super::pick::Choice;
use crate::answer::{error, Answer};
use crate::edit::FieldEdits;
use crate::headers::Forwarding;
use crate::route::sticky;
use crate::route::table::Service;
use crate::upstream::body::ClientBody;
use crate::upstream::pool::Dial;
use crate::upstream::upgrade;

/// An upgrade request (a WebSocket handshake), on its way to the server picked for it.
pub(super) struct Upgrade<'a> {
    pub(super) svc: &'a Service,
    pub(super) choice: Choice,
    pub(super) app_value: Option<String>,
    pub(super) forwarding: Forwarding<'a>,
    /// The route's response edits, and whether the request came over TLS.
    pub(super) response: Option<(&'a FieldEdits, bool)>,
}

impl Upgrade<'_> {
    pub(super) async fn forward(
        self,
        mut parts: http::request::Parts,
        body: ClientBody,
        t: tether_model::file_config::Timeouts,
        pipe: crate::tcp::pipe::PipeConfig,
    ) -> Answer {
        let Upgrade {
            svc,
            choice,
            app_value,
            forwarding,
            response,
        } = self;
        let ClientBody::Streamed(body) = body else {
            // Tether's own HTTP/1.1 server hands every upgrade request to hyper.
            return error(
                StatusCode::BAD_REQUEST,
                "upgrade not possible on this connection",
            )
            .into();
        };
        let backend = svc.backends[choice.idx].clone();
        forwarding.apply(&mut parts.headers);
        let req = Request::from_parts(parts, body);
        let resp =
            match upgrade::forward(backend, req, Dial::of(&t), t.upstream_response, pipe).await {
                Ok(mut resp) => {
                    if let Some(s) = &svc.sticky {
                        sticky::write_response(
                            resp.headers_mut(),
                            s,
                            choice.idx,
                            choice.fresh,
                            app_value.as_deref(),
                        );
                    }
                    resp
                }
                Err(e) => super::send::upstream_error(svc, &e),
            };
        let mut answer = Answer::from(resp);
        if let Some((edits, https)) = response {
            edits.apply_to_answer(&mut answer, https);
        }
        answer
    }
}
