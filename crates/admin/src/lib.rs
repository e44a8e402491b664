//! Tether's admin API, on a listener of its own (never a traffic port), served by axum on hyper:
//! the data plane's hand-written HTTP/1 path is not reused here.
//!
//! - [`reads`]: `/api/version`, `/api/routes`, `/api/services`, `/api/tcp/routers`,
//!   `/api/tcp/services`, `/api/backends`, `/api/errors`;
//! - [`changes`]: `PUT`/`DELETE` of one route, service, middleware, TCP router or TCP service,
//!   `POST /api/changes` for several at once, committed to the API source's store and answered
//!   once this replica serves them;
//! - [`certificates`]: `GET /api/certificates`, and `PUT`/`DELETE /api/certificates/NAME` kept in
//!   the same store (etcd's: every replica serves the same certificate);
//! - [`dfp`]: Docker Flow Proxy's `reconfigure` and `remove`, translated into the same changes;
//! - `metrics`: `/metrics`, the data plane's counters in the Prometheus format;
//! - `stats`: the live stats page at `/`, its figures at `/api/stats`;
//! - [`auth`]: the bearer token every change needs (and every read, beyond loopback).
//!
//! The API reads [`Control`] (declarations, versions, errors) and the registry (per-server
//! state); it writes only through the API source's store. Endpoints and fields: `docs/api.md`.

pub mod auth;
mod certificates;
mod changes;
mod dfp;
mod error;
mod metrics;
mod reads;
mod render;
mod stats;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tether_control::Control;
use tether_providers::api::ApiHandle;
use tokio::net::TcpListener;

pub use auth::{Auth, AuthError};
pub use changes::{APPLY_DEADLINE, MAX_BODY};
pub use dfp::DfpConfig;
pub use error::ApiError;
pub use stats::Mounted as MountedStats;

/// How the admin listener behaves beyond its access rules ([`Auth`], which holds the token).
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Serve Docker Flow Proxy's endpoints (`--dfp-compat`).
    pub dfp: Option<DfpConfig>,
    /// The data plane's per-entrypoint connection counts (the listeners' order).
    pub entrypoints: Arc<[tether_proxy::stats::EntrypointStats]>,
    /// The certificates the TLS entrypoints serve, when there are any.
    pub certificates: Option<Arc<tether_proxy::front::tls::certs::CertStore>>,
}

/// What every handler reads.
#[derive(Clone)]
pub(crate) struct AppState {
    pub control: Arc<Control>,
    /// The API source; `None` when Tether runs without one (then changes answer 503).
    pub api: Option<ApiHandle>,
    pub auth: Arc<Auth>,
    pub dfp: Option<Arc<dfp::DfpConfig>>,
    pub entrypoints: Arc<[tether_proxy::stats::EntrypointStats]>,
    pub certificates: Option<Arc<tether_proxy::front::tls::certs::CertStore>>,
    /// The stats page's readings of the counters.
    pub sampler: Arc<stats::Sampler>,
}

/// The admin API's routes.
pub fn router(
    control: Arc<Control>,
    api: Option<ApiHandle>,
    auth: Auth,
    cfg: &AdminConfig,
) -> Router {
    let state = AppState {
        control: control.clone(),
        api,
        auth: Arc::new(auth),
        dfp: cfg.dfp.clone().map(Arc::new),
        entrypoints: cfg.entrypoints.clone(),
        certificates: cfg.certificates.clone(),
        sampler: stats::Sampler::start(control.clone()),
    };
    let api = Router::new()
        .route("/api/version", get(reads::version))
        .route("/api/routes", get(reads::routes))
        .route("/api/services", get(reads::services))
        .route(
            "/api/routes/{name}",
            get(reads::route)
                .put(changes::put_route)
                .delete(changes::delete_route),
        )
        .route(
            "/api/services/{name}",
            get(reads::service)
                .put(changes::put_service)
                .delete(changes::delete_service),
        )
        .route("/api/tcp/routers", get(reads::tcp_routers))
        .route(
            "/api/tcp/routers/{name}",
            get(reads::tcp_router)
                .put(changes::put_tcp_router)
                .delete(changes::delete_tcp_router),
        )
        .route("/api/tcp/services", get(reads::tcp_services))
        .route(
            "/api/tcp/services/{name}",
            get(reads::tcp_service)
                .put(changes::put_tcp_service)
                .delete(changes::delete_tcp_service),
        )
        .route("/api/middlewares", get(reads::middlewares))
        .route(
            "/api/middlewares/{name}",
            get(reads::middleware)
                .put(changes::put_middleware)
                .delete(changes::delete_middleware),
        )
        .route("/api/changes", post(changes::post_changes))
        .route("/api/certificates", get(certificates::list))
        .route(
            "/api/certificates/{name}",
            get(certificates::get)
                .put(certificates::put)
                .delete(certificates::delete),
        )
        .route("/api/backends", get(reads::backends))
        .route("/api/errors", get(reads::errors))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(stats::page))
        .route("/api/stats", get(stats::json))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ));
    let mut app = api;
    if state.dfp.is_some() {
        app = app
            .route(
                "/v1/docker-flow-proxy/reconfigure",
                get(dfp::reconfigure).put(dfp::reconfigure),
            )
            .route(
                "/v1/docker-flow-proxy/remove",
                get(dfp::remove).put(dfp::remove),
            )
            .route(
                "/v1/docker-flow-proxy/cert",
                axum::routing::put(dfp::cert).post(dfp::cert),
            )
            .route("/v1/docker-flow-proxy/ping", get(dfp::ping))
            .route("/v1/docker-flow-proxy/reload", get(dfp::reload))
            .route("/v1/docker-flow-proxy/config", get(dfp::config));
    }
    app.fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(changes::MAX_BODY))
        .with_state(state)
}

/// Serve the admin API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
