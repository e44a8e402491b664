//! Tether's configuration model: the pure types every provider produces and every other crate reads.
//!
//! - [`decl`]: services, servers, routes, balancing and affinity policies ([`ProviderUpdate`]).
//! - [`rule`]: the routing rule language (`Host(`a.com`) && PathPrefix(`/api`)`), parsed and evaluated.
//! - [`file_config`]: the TOML dialect of `tether.toml`, with errors that name the line and the field.
//! - [`validate`]: checks shared by all providers (names, references, ranges).
//! - [`middleware`]: what a route does besides routing (auth, rewrites, header rules).
//! - [`acme`]: ACME resolvers and the certificates routes ask them for.
//! - [`api_doc`]: the admin API's JSON documents, read with the checks of `tether.toml`.
//!
//! Nothing here performs I/O, so the same rules apply whether a declaration came from a file, Docker
//! labels or the HTTP API.

pub mod acme;
pub mod api_doc;
pub mod decl;
pub mod duration;
pub mod file_config;
#[doc(hidden)]
pub mod fuzz;
pub mod labels;
pub mod middleware;
pub mod rule;
pub mod validate;

pub use decl::{
    AffinityMode, AffinityPolicy, BalanceAlgo, CertificateDecl, CertificatePem, CookieAttrs,
    HashOn, HealthCheck, Hsts, HttpsRedirect, OnMissing, ProviderUpdate, ProxyVersion, Resolve,
    RouteDecl, SameSite, ServerAddr, ServerDecl, ServerTls, ServerWait, ServiceDecl,
    ServiceProtocol, TcpRouteDecl,
};
pub use middleware::{Middleware, MiddlewareDecl};
pub use rule::{ConnView, HostPattern, Rule, RuleError, SniMatch, SniRegex};
pub use validate::ValidationError;
