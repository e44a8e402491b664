//! Middlewares as data: each route's list (with `redirect_https` first and `hsts` as the last
//! response edit) is compiled once per table into a [`Chain`]: a boxed slice of [`Step`], an
//! enum the request path matches on (no `dyn`, no allocation, no lookup by name), and the header
//! edits the chain makes ([`crate::edit`]), merged in order. A route without middlewares has no
//! chain and pays one `Option` check.
//!
//! One more middleware is one type in one file here (its `request` runs in the request phase;
//! header edits it makes are compiled in [`Chain::compile`]), one variant of [`Step`], and its
//! declaration in `tether_model::middleware`.

mod add_prefix;
mod basic_auth;
pub mod compress;
mod hsts;
mod in_flight;
mod ip_allow;
mod methods;
mod rate_limit;
mod redirect_https;
mod redirect_regex;
mod redirect_scheme;
mod replace_path;
mod replace_path_regex;
mod source;
mod strip_prefix;
mod strip_prefix_regex;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use tether_model::middleware::{FieldRules, Middleware, MiddlewareDecl};
use tether_model::{RouteDecl, ValidationError};

use crate::edit::{FieldEdits, Op, RequestEdits};
use crate::headers::Peer;
use crate::request::RequestHead;
use crate::upstream::body::ProxyBody;

pub use basic_auth::Secrets;
pub use compress::Chosen;
pub use in_flight::Held;

/// One request as the request phase sees it.
pub struct Request<'a, 't> {
    pub head: &'a RequestHead,
    /// The client's address, as the admit phase computed it.
    pub client: IpAddr,
    pub peer: &'a Peer,
    /// The host, lower case without port ("" when the request names none).
    pub host: &'a str,
    pub edits: &'a mut RequestEdits<'t>,
    /// Places the request holds until its response has gone out (`in_flight`).
    pub held: &'a mut Vec<Held>,
    /// The encoding its response is to be compressed in, if it qualifies (`compress`).
    pub encode: &'a mut Option<Chosen>,
}

impl Request<'_, '_> {
    /// The path as the middlewares before this one left it.
    pub fn path(&self) -> &str {
        self.edits
            .path
            .as_deref()
            .unwrap_or_else(|| self.head.path())
    }

    /// Give the request path `path`, normalised again (a rewrite can never climb above `/`).
    pub fn rewrite(&mut self, path: &str) -> Result<(), Flow> {
        let path = if path.starts_with('/') {
            std::borrow::Cow::Borrowed(path)
        } else {
            std::borrow::Cow::Owned(format!("/{path}"))
        };
        let normal = crate::route::path::normalize(&path, false).map_err(|e| {
            Flow::answer(crate::answer::error(StatusCode::BAD_REQUEST, e.message()))
        })?;
        self.edits.path = Some(normal.unwrap_or_else(|| path.into_owned()));
        Ok(())
    }

    /// Set field `name` on the request for this request alone.
    pub fn set(&mut self, name: &'static str, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            let name = HeaderName::from_static(name);
            self.edits.set.retain(|(n, _)| *n != name);
            self.edits.set.push((name, v));
        }
    }
}

/// What a middleware makes of a request.
pub enum Flow {
    /// On to the next one.
    Next,
    /// Answered here: the request goes no further. Boxed: the rare case.
    Answer(Box<Response<ProxyBody>>),
}

impl Flow {
    pub fn answer(r: Response<ProxyBody>) -> Flow {
        Flow::Answer(Box::new(r))
    }
}

/// One middleware that acts on each request.
#[derive(Debug)]
pub enum Step {
    RedirectHttps(redirect_https::RedirectHttps),
    BasicAuth(basic_auth::BasicAuth),
    IpAllow(ip_allow::IpAllow),
    StripPrefix(strip_prefix::StripPrefix),
    StripPrefixRegex(strip_prefix_regex::StripPrefixRegex),
    AddPrefix(add_prefix::AddPrefix),
    ReplacePath(replace_path::ReplacePath),
    ReplacePathRegex(replace_path_regex::ReplacePathRegex),
    RedirectRegex(redirect_regex::RedirectRegex),
    RedirectScheme(redirect_scheme::RedirectScheme),
    Methods(methods::Methods),
    RateLimit(rate_limit::RateLimit),
    InFlight(in_flight::InFlight),
    Compress(compress::Compress),
}

impl Step {
    fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        match self {
            Step::RedirectHttps(m) => m.request(r),
            Step::BasicAuth(m) => m.request(r),
            Step::IpAllow(m) => m.request(r),
            Step::StripPrefix(m) => m.request(r),
            Step::StripPrefixRegex(m) => m.request(r),
            Step::AddPrefix(m) => m.request(r),
            Step::ReplacePath(m) => m.request(r),
            Step::ReplacePathRegex(m) => m.request(r),
            Step::RedirectRegex(m) => m.request(r),
            Step::RedirectScheme(m) => m.request(r),
            Step::Methods(m) => m.request(r),
            Step::RateLimit(m) => m.request(r),
            Step::InFlight(m) => m.request(r),
            Step::Compress(m) => m.request(r),
        }
    }
}

/// How many answers one middleware gave on one route, by status.
#[derive(Debug, Default)]
pub struct AnswerCounts {
    /// A cell per worker ([`crate::worker::PerWorker`]), summed when read.
    cells: crate::worker::PerWorker<AnswerCell>,
}

#[derive(Debug, Default)]
struct AnswerCell {
    by_status: [AtomicU64; AnswerCounts::STATUSES.len() + 1],
    /// `compress`: what the compressed responses saved (bytes in, less bytes out).
    bytes_saved: AtomicU64,
}

impl AnswerCounts {
    /// The statuses a middleware answers with (200: a response `compress` compressed); anything
    /// else is counted as "other".
    pub const STATUSES: [u16; 11] = [200, 301, 302, 307, 308, 400, 401, 403, 405, 429, 500];

    fn count(&self, status: u16) {
        let i = Self::STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(Self::STATUSES.len());
        self.cells.here().by_status[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `compress`: bytes a compressed response saved (bytes in, less bytes out).
    fn saved(&self, bytes: u64) {
        self.cells
            .here()
            .bytes_saved
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// `compress`: what the compressed responses saved, in all.
    pub fn bytes_saved(&self) -> u64 {
        self.cells.sum(|c| c.bytes_saved.load(Ordering::Relaxed))
    }

    /// Each status answered at least once, with its count (0 for "other").
    pub fn read(&self) -> Vec<(u16, u64)> {
        Self::STATUSES
            .iter()
            .copied()
            .chain([0])
            .enumerate()
            .map(|(i, s)| {
                (
                    s,
                    self.cells.sum(|c| c.by_status[i].load(Ordering::Relaxed)),
                )
            })
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.cells
            .sum(|c| c.by_status.iter().map(|n| n.load(Ordering::Relaxed)).sum())
    }
}

/// What a middleware keeps across tables for one route: `rate_limit`'s buckets, `in_flight`'s
/// counts. Kept while the route names the middleware with the same declaration; a changed
/// declaration starts afresh.
#[derive(Debug, Clone)]
enum Kept {
    Buckets(Arc<rate_limit::Buckets>),
    Counts(Arc<in_flight::Counts>),
}

/// Answer counters by route and middleware, and what the middlewares keep across tables (a
/// counter lives while its route names its middleware).
#[derive(Debug, Default)]
pub struct Counters {
    map: std::sync::Mutex<HashMap<(String, String), Arc<AnswerCounts>>>,
    kept: std::sync::Mutex<HashMap<(String, String), Kept>>,
}

impl Counters {
    /// What route `route` keeps for `middleware`: the same as before when `same` says it is,
    /// else `make`'s, kept from now on.
    fn kept(
        &self,
        route: &str,
        middleware: &str,
        same: impl Fn(&Kept) -> bool,
        make: impl FnOnce() -> Kept,
    ) -> Kept {
        let mut kept = self.kept.lock().expect("kept poisoned");
        let key = (route.to_string(), middleware.to_string());
        match kept.get(&key) {
            Some(k) if same(k) => k.clone(),
            _ => {
                let k = make();
                kept.insert(key, k.clone());
                k
            }
        }
    }

    /// Route `route`'s buckets of rate limit `middleware`, as declared by `decl`.
    fn buckets(
        &self,
        route: &str,
        middleware: &str,
        decl: &tether_model::middleware::RateLimit,
    ) -> Arc<rate_limit::Buckets> {
        let same = |k: &Kept| matches!(k, Kept::Buckets(b) if b.decl == *decl);
        let make = || Kept::Buckets(Arc::new(rate_limit::Buckets::new(decl)));
        match self.kept(route, middleware, same, make) {
            Kept::Buckets(b) => b,
            Kept::Counts(_) => unreachable!("buckets were kept or made"),
        }
    }

    /// Route `route`'s counts of in-flight limit `middleware`, as declared by `decl`.
    fn counts(
        &self,
        route: &str,
        middleware: &str,
        decl: &tether_model::middleware::InFlight,
    ) -> Arc<in_flight::Counts> {
        let same = |k: &Kept| matches!(k, Kept::Counts(c) if c.decl == *decl);
        let make = || Kept::Counts(Arc::new(in_flight::Counts::new(decl)));
        match self.kept(route, middleware, same, make) {
            Kept::Counts(c) => c,
            Kept::Buckets(_) => unreachable!("counts were kept or made"),
        }
    }

    fn get(&self, route: &str, middleware: &str) -> Arc<AnswerCounts> {
        let mut map = self.map.lock().expect("counters poisoned");
        map.entry((route.to_string(), middleware.to_string()))
            .or_default()
            .clone()
    }

    /// Forget the counters of pairs no table has any more.
    pub fn retain(&self, live: &std::collections::HashSet<(String, String)>) {
        self.map
            .lock()
            .expect("counters poisoned")
            .retain(|k, _| live.contains(k));
        self.kept
            .lock()
            .expect("kept poisoned")
            .retain(|k, _| live.contains(k));
    }

    /// Every (route, middleware) pair's counters.
    pub fn read(&self) -> Vec<(String, String, Arc<AnswerCounts>)> {
        let map = self.map.lock().expect("counters poisoned");
        let mut v: Vec<_> = map
            .iter()
            .map(|((r, m), c)| (r.clone(), m.clone(), c.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }
}

/// A step with its name and counters.
#[derive(Debug)]
struct Named {
    step: Step,
    name: Arc<str>,
    counts: Arc<AnswerCounts>,
    /// The response edits of the middlewares before it, which an answer of its own gets.
    before: Option<Arc<FieldEdits>>,
}

/// A route's compiled middlewares.
#[derive(Debug)]
pub struct Chain {
    steps: Box<[Named]>,
    /// Header edits of every request, in the chain's order.
    request: Option<FieldEdits>,
    /// Header edits of every response the server gives: the last middleware's first, the
    /// first's on top, `hsts` last.
    response: Option<Arc<FieldEdits>>,
    /// The middlewares' names, in order (for the stats page).
    pub names: Box<[Arc<str>]>,
}

/// A middleware that answered a request itself.
pub struct Answered {
    pub response: Response<ProxyBody>,
    /// Its name (`auth@file`, `redirect_https`).
    pub by: Arc<str>,
    /// The response edits the answer gets.
    pub edits: Option<Arc<FieldEdits>>,
}

/// What compiling needs to know of the rest of the table.
pub struct Context<'a> {
    pub middlewares: &'a HashMap<&'a str, &'a MiddlewareDecl>,
    pub tls_ports: &'a [(String, u16)],
    pub counters: &'a Counters,
    pub secrets: &'a Secrets,
}

impl Chain {
    /// Route `r`'s chain, or `None` when it has no middleware (nor `redirect_https`, `hsts`).
    pub fn compile(r: &RouteDecl, cx: &Context<'_>) -> Result<Option<Chain>, ValidationError> {
        if r.middlewares.is_empty() && r.redirect_https.is_none() && r.hsts.is_none() {
            return Ok(None);
        }
        let mut flat: Vec<&MiddlewareDecl> = Vec::new();
        for (i, name) in r.middlewares.iter().enumerate() {
            flatten(cx, name, &mut flat, 0).map_err(|m| {
                ValidationError::new(format!("routes.{}.middlewares[{i}]", r.name), m)
            })?;
        }
        let mut steps = Vec::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut request = FieldEdits::default();
        // Each middleware's own response edits, in chain order.
        let mut own_response: Vec<FieldEdits> = Vec::new();
        if let Some(h) = &r.redirect_https {
            let name: Arc<str> = Arc::from("redirect_https");
            steps.push(Named {
                step: Step::RedirectHttps(redirect_https::RedirectHttps::new(h, r, cx.tls_ports)),
                counts: cx.counters.get(&r.name, &name),
                name: name.clone(),
                before: None,
            });
            names.push(name);
        }
        let field = |m: &MiddlewareDecl| format!("middlewares.{}", m.name);
        for m in flat {
            let name: Arc<str> = Arc::from(m.name.as_str());
            names.push(name.clone());
            let mut response = FieldEdits::default();
            let step = match &m.kind {
                Middleware::BasicAuth(d) => {
                    if d.remove_header {
                        request.push(Op::Remove(http::header::AUTHORIZATION), false);
                    }
                    Some(Step::BasicAuth(
                        basic_auth::BasicAuth::new(d, cx.secrets).map_err(|e| {
                            ValidationError::new(format!("{}.basic_auth.users_file", field(m)), e)
                        })?,
                    ))
                }
                Middleware::IpAllow(d) => Some(Step::IpAllow(ip_allow::IpAllow::new(d))),
                Middleware::StripPrefix(d) => {
                    Some(Step::StripPrefix(strip_prefix::StripPrefix::new(d)))
                }
                Middleware::StripPrefixRegex(d) => Some(Step::StripPrefixRegex(
                    strip_prefix_regex::StripPrefixRegex::new(d)
                        .map_err(|e| ValidationError::new(field(m), e))?,
                )),
                Middleware::AddPrefix(d) => Some(Step::AddPrefix(add_prefix::AddPrefix::new(d))),
                Middleware::ReplacePath(d) => {
                    Some(Step::ReplacePath(replace_path::ReplacePath::new(d)))
                }
                Middleware::ReplacePathRegex(d) => Some(Step::ReplacePathRegex(
                    replace_path_regex::ReplacePathRegex::new(d)
                        .map_err(|e| ValidationError::new(field(m), e))?,
                )),
                Middleware::RedirectRegex(d) => Some(Step::RedirectRegex(
                    redirect_regex::RedirectRegex::new(d)
                        .map_err(|e| ValidationError::new(field(m), e))?,
                )),
                Middleware::RedirectScheme(d) => Some(Step::RedirectScheme(
                    redirect_scheme::RedirectScheme::new(d),
                )),
                Middleware::Methods(d) => Some(Step::Methods(methods::Methods::new(d))),
                Middleware::RateLimit(d) => Some(Step::RateLimit(rate_limit::RateLimit::new(
                    cx.counters.buckets(&r.name, &name, d),
                ))),
                Middleware::InFlight(d) => Some(Step::InFlight(in_flight::InFlight::new(
                    cx.counters.counts(&r.name, &name, d),
                ))),
                Middleware::Compress(d) => Some(Step::Compress(compress::Compress::new(
                    d,
                    cx.counters.get(&r.name, &name),
                ))),
                Middleware::Headers(h) => {
                    push_rules(&mut request, &h.request);
                    push_rules(&mut response, &h.response);
                    for (n, v, tls_only) in h.security.fields() {
                        if let Ok(v) = HeaderValue::from_str(&v) {
                            response.push(Op::Set(HeaderName::from_static(n), v), tls_only);
                        }
                    }
                    None
                }
                Middleware::Chain(_) => unreachable!("chains are flattened"),
            };
            if let Some(step) = step {
                let before = merged_response(&own_response, r);
                steps.push(Named {
                    step,
                    counts: cx.counters.get(&r.name, &name),
                    name,
                    before,
                });
            }
            own_response.push(response);
        }
        if r.hsts.is_some() {
            names.push(Arc::from("hsts"));
        }
        Ok(Some(Chain {
            steps: steps.into(),
            request: (!request.is_empty()).then_some(request),
            response: merged_response(&own_response, r),
            names: names.into(),
        }))
    }

    /// Run the request phase: each middleware in order, until one answers.
    pub fn request(&self, r: &mut Request<'_, '_>) -> Option<Answered> {
        for s in self.steps.iter() {
            if let Flow::Answer(response) = s.step.request(r) {
                s.counts.count(response.status().as_u16());
                return Some(Answered {
                    response: *response,
                    by: s.name.clone(),
                    edits: s.before.clone(),
                });
            }
        }
        None
    }

    /// The request header edits.
    pub fn request_edits(&self) -> Option<&FieldEdits> {
        self.request.as_ref()
    }

    /// The response edits of a response from the server.
    pub fn response_edits(&self) -> Option<&Arc<FieldEdits>> {
        self.response.as_ref()
    }
}

/// Append `name`'s middlewares (a chain's members, in order) to `out`.
fn flatten<'a>(
    cx: &Context<'a>,
    name: &str,
    out: &mut Vec<&'a MiddlewareDecl>,
    depth: usize,
) -> Result<(), String> {
    let Some(m) = cx.middlewares.get(name).copied() else {
        return Err(format!("no middleware named {name:?}"));
    };
    if depth > 32 {
        return Err(format!(
            "chain {name} nests too deep (a chain that contains itself?)"
        ));
    }
    match &m.kind {
        Middleware::Chain(c) => {
            for n in &c.middlewares {
                flatten(cx, n, out, depth + 1)?;
            }
        }
        _ => out.push(m),
    }
    Ok(())
}

fn push_rules(into: &mut FieldEdits, rules: &FieldRules) {
    let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).ok();
    for n in rules.remove.iter().filter_map(|n| name(n)) {
        into.push(Op::Remove(n), false);
    }
    for (n, v) in &rules.set {
        if let (Some(n), Ok(v)) = (name(n), HeaderValue::from_str(v)) {
            into.push(Op::Set(n, v), false);
        }
    }
    for (n, v) in &rules.add {
        if let (Some(n), Ok(v)) = (name(n), HeaderValue::from_str(v)) {
            into.push(Op::Add(n, v), false);
        }
    }
}

/// The response edits of middlewares `own` (in chain order): the last one's applied first, the
/// first one's on top, then the route's `hsts`.
fn merged_response(own: &[FieldEdits], r: &RouteDecl) -> Option<Arc<FieldEdits>> {
    let mut all = FieldEdits::default();
    for e in own.iter().rev() {
        all.extend(e);
    }
    if let Some(h) = &r.hsts {
        hsts::push(&mut all, h);
    }
    (!all.is_empty()).then(|| Arc::new(all))
}

/// A redirect to `location`.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut r = crate::answer::error(status, &format!("see {location}"));
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(http::header::LOCATION, v);
            r
        }
        Err(_) => crate::answer::error(StatusCode::BAD_REQUEST, "the redirect's URL is not valid"),
    }
}

/// The request's URL as a client would write it: `scheme://host[:port]/path?query`.
pub(crate) fn url(r: &Request<'_, '_>) -> String {
    let scheme = if r.peer.https { "https" } else { "http" };
    let host = match r.head.first_value("host") {
        Some(h) => String::from_utf8_lossy(h).into_owned(),
        None => r.host.to_string(),
    };
    format!("{scheme}://{host}{}", r.head.target())
}

use crate::headers::ReadFields as _;

#[cfg(test)]
mod tests;
