//! Middlewares: what a route does to a request before it is sent, and to the response on its way
//! back, besides routing it. Declared by name in every source (`[middlewares.NAME.TYPE]` in the
//! file, `tether.http.middlewares.NAME.TYPE.FIELD` labels, `/api/middlewares/NAME`) and named, in
//! order, by a route's `middlewares`. The data plane compiles each route's list once per table
//! (`tether_proxy::middleware`).
//!
//! One type per file here, holding its declaration, its raw form in the file (read by serde, so
//! an unknown field is named) and the checks that turn one into the other. A name is qualified by
//! the source that declares it (`auth@file`, `auth@docker`); a route's bare reference means its
//! own source's ([`qualify`]).

mod add_prefix;
mod basic_auth;
mod chain;
pub mod compress;
mod headers;
pub mod htpasswd;
mod in_flight;
mod ip_allow;
mod methods;
pub mod rate_limit;
mod redirect_regex;
mod redirect_scheme;
mod replace_path;
mod replace_path_regex;
mod strip_prefix;
mod strip_prefix_regex;

use serde::Deserialize;

use crate::validate::ValidationError;

pub use add_prefix::AddPrefix;
pub use basic_auth::{BasicAuth, UsersFile};
pub use chain::Chain;
pub use compress::{Compress, Encoding};
pub use headers::{FieldRules, Headers, Security};
pub use htpasswd::{HashScheme, User};
pub use in_flight::InFlight;
pub use ip_allow::IpAllow;
pub use methods::Methods;
pub use rate_limit::{RateLimit, Source};
pub use redirect_regex::RedirectRegex;
pub use redirect_scheme::RedirectScheme;
pub use replace_path::ReplacePath;
pub use replace_path_regex::ReplacePathRegex;
pub use strip_prefix::StripPrefix;
pub use strip_prefix_regex::StripPrefixRegex;

/// Largest compiled regex accepted (the `regex` crate's size limit): a pattern that would take
/// more memory is refused when declared, and matching stays linear in the input.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A named middleware, as a source declares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MiddlewareDecl {
    /// Qualified by its source: `auth@file`, `auth@docker`, `auth@api`.
    pub name: String,
    pub kind: Middleware,
}

/// What a middleware does. One variant per type, each in its own file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Middleware {
    BasicAuth(BasicAuth),
    IpAllow(IpAllow),
    StripPrefix(StripPrefix),
    StripPrefixRegex(StripPrefixRegex),
    AddPrefix(AddPrefix),
    ReplacePath(ReplacePath),
    ReplacePathRegex(ReplacePathRegex),
    Headers(Headers),
    RedirectRegex(RedirectRegex),
    RedirectScheme(RedirectScheme),
    Methods(Methods),
    RateLimit(RateLimit),
    InFlight(InFlight),
    Compress(Compress),
    Chain(Chain),
}

impl Middleware {
    /// The type's name, as the file writes it (`basic_auth`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Middleware::BasicAuth(_) => "basic_auth",
            Middleware::IpAllow(_) => "ip_allow",
            Middleware::StripPrefix(_) => "strip_prefix",
            Middleware::StripPrefixRegex(_) => "strip_prefix_regex",
            Middleware::AddPrefix(_) => "add_prefix",
            Middleware::ReplacePath(_) => "replace_path",
            Middleware::ReplacePathRegex(_) => "replace_path_regex",
            Middleware::Headers(_) => "headers",
            Middleware::RedirectRegex(_) => "redirect_regex",
            Middleware::RedirectScheme(_) => "redirect_scheme",
            Middleware::Methods(_) => "methods",
            Middleware::RateLimit(_) => "rate_limit",
            Middleware::InFlight(_) => "in_flight",
            Middleware::Compress(_) => "compress",
            Middleware::Chain(_) => "chain",
        }
    }
}

/// The type names a middleware table may hold.
pub const TYPES: &[&str] = &[
    "basic_auth",
    "ip_allow",
    "strip_prefix",
    "strip_prefix_regex",
    "add_prefix",
    "replace_path",
    "replace_path_regex",
    "headers",
    "redirect_regex",
    "redirect_scheme",
    "methods",
    "rate_limit",
    "in_flight",
    "compress",
    "chain",
];

/// `[middlewares.NAME]` as written: exactly one of these tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMiddleware {
    basic_auth: Option<basic_auth::Raw>,
    ip_allow: Option<ip_allow::Raw>,
    strip_prefix: Option<strip_prefix::Raw>,
    strip_prefix_regex: Option<strip_prefix_regex::Raw>,
    add_prefix: Option<add_prefix::Raw>,
    replace_path: Option<replace_path::Raw>,
    replace_path_regex: Option<replace_path_regex::Raw>,
    headers: Option<headers::Raw>,
    redirect_regex: Option<redirect_regex::Raw>,
    redirect_scheme: Option<redirect_scheme::Raw>,
    methods: Option<methods::Raw>,
    rate_limit: Option<rate_limit::Raw>,
    in_flight: Option<in_flight::Raw>,
    compress: Option<compress::Raw>,
    chain: Option<chain::Raw>,
}

/// What a type's checks know of where its table is: the field it is at
/// (`middlewares.auth.basic_auth`), and who declares it.
pub(crate) struct Cx<'a> {
    pub base: &'a str,
    pub origin: Origin,
    pub provider: &'a str,
}

/// A pattern checked as [`regex`] checks it, its error given for `field`.
pub(crate) fn regex_field(field: String, pattern: &str) -> Result<(), Vec<ValidationError>> {
    regex(pattern)
        .map(drop)
        .map_err(|e| vec![ValidationError::new(field, e)])
}

/// Where the declaration came from, for the checks that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `tether.toml`: a `users_file` may be any path.
    File,
    /// Labels or the admin API: a `users_file` may only name a Docker secret.
    Untrusted,
}

impl RawMiddleware {
    /// The declaration of middleware `name` (as written; qualified by the caller), or every
    /// problem, each naming its field (`middlewares.auth.basic_auth.users[0]`).
    pub fn convert(
        &self,
        name: &str,
        provider: &str,
        origin: Origin,
    ) -> Result<MiddlewareDecl, Vec<ValidationError>> {
        let base = format!("middlewares.{name}");
        let mut kinds: Vec<Result<Middleware, Vec<ValidationError>>> = Vec::new();
        let field = |t: &str| format!("{base}.{t}");
        macro_rules! each {
            ($($f:ident => $v:ident),* $(,)?) => {
                $(if let Some(raw) = &self.$f {
                    let base = field(stringify!($f));
                    let cx = Cx { base: &base, origin, provider };
                    kinds.push(raw.convert(&cx).map(Middleware::$v));
                })*
            };
        }
        each!(
            basic_auth => BasicAuth,
            ip_allow => IpAllow,
            strip_prefix => StripPrefix,
            strip_prefix_regex => StripPrefixRegex,
            add_prefix => AddPrefix,
            replace_path => ReplacePath,
            replace_path_regex => ReplacePathRegex,
            headers => Headers,
            redirect_regex => RedirectRegex,
            redirect_scheme => RedirectScheme,
            methods => Methods,
            rate_limit => RateLimit,
            in_flight => InFlight,
            compress => Compress,
            chain => Chain,
        );
        let kind = match kinds.len() {
            1 => kinds.pop().expect("one")?,
            0 => {
                return Err(vec![ValidationError::new(
                    base,
                    format!("names no type: expected one of {}", TYPES.join(", ")),
                )])
            }
            _ => {
                return Err(vec![ValidationError::new(
                    base,
                    "declares more than one type: one middleware is one type (chain several with a route's `middlewares`)",
                )])
            }
        };
        Ok(MiddlewareDecl {
            name: qualify(name, provider),
            kind,
        })
    }
}

/// A middleware reference as the source `provider` means it: `auth` is `auth@provider`, and
/// `auth@file` names the file's wherever it is written.
pub fn qualify(reference: &str, provider: &str) -> String {
    if reference.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}@{provider}")
    }
}

/// A regex compiled under [`REGEX_SIZE_LIMIT`], or why not: a syntax error with its column
/// (`invalid regex "^/(a": column 3: unclosed group`), or the size it would take.
pub fn regex(pattern: &str) -> Result<regex::Regex, String> {
    if let Err(e) = regex_syntax::Parser::new().parse(pattern) {
        let (span, kind) = match &e {
            regex_syntax::Error::Parse(e) => (*e.span(), e.kind().to_string()),
            regex_syntax::Error::Translate(e) => (*e.span(), e.kind().to_string()),
            other => return Err(format!("invalid regex {pattern:?}: {other}")),
        };
        return Err(format!(
            "invalid regex {pattern:?}: column {}: {kind}",
            span.start.column
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(n) => {
                format!("regex {pattern:?} is too large once compiled (over {n} bytes)")
            }
            other => format!("invalid regex {pattern:?}: {other}"),
        })
}

/// A path rewritten by a middleware must still be a path: `/` first, no CR, LF, NUL or space.
pub(crate) fn path_field(field: &str, value: &str) -> Result<(), ValidationError> {
    if !value.starts_with('/') {
        return Err(ValidationError::new(
            field,
            format!("{value:?} must start with '/'"),
        ));
    }
    if value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(ValidationError::new(
            field,
            format!("{value:?} holds a space or a control character"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
