//! The admin REST API (axum): everything under `/v1` needs a bearer token
//! and sees only its tenant's rows; `/healthz`, `/readyz` and `/metrics`
//! are open, for balancers and Prometheus, and say nothing about tenants.
//!
//! # Layout
//! - `auth.rs`: bearer tokens, roles, the per-token rate limit.
//! - `calls.rs`, `leads.rs`, `stats.rs`: the `/v1` resources.
//! - `ops.rs`: health, readiness, metrics.
//! - `params.rs`: strict query and body parsing; `error.rs`: JSON errors.
//! - `openapi.json`: the committed OpenAPI document, served as is.
//!
//! # Concurrency
//! One axum server task; handlers share [`ApiState`] (the pool, the call
//! counters, the rate-limit buckets behind one short-held mutex).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::admission::Live;
use crate::config::ApiConfig;
use crate::registry::Registry;
use crate::store::{Store, WriterStats};

mod auth;
mod calls;
mod error;
mod leads;
mod ops;
mod params;
mod stats;

pub(crate) use auth::Limiter;
pub(crate) use error::ApiError;

/// The committed OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route, as (method, path) in OpenAPI's notation: the route-coverage
/// test checks the document against this list, and the router is built
/// from the same paths.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/calls"),
    ("post", "/v1/calls"),
    ("get", "/v1/calls/{id}"),
    ("get", "/v1/leads"),
    ("get", "/v1/leads/{id}"),
    ("patch", "/v1/leads/{id}"),
    ("get", "/v1/stats"),
];

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub(crate) store: Store,
    pub(crate) config: ApiConfig,
    /// Agents a call may be registered for (those on a listener).
    pub(crate) agents: Vec<String>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) live: Arc<Live>,
    pub(crate) writer: Option<Arc<WriterStats>>,
    pub(crate) limiter: auth::Limiter,
}

/// The routes.
pub(crate) fn router(state: Arc<ApiState>) -> Router {
    let max_body = state.config.max_body_bytes;
    let v1 = Router::new()
        .route("/v1/calls", get(calls::list).post(calls::register))
        .route("/v1/calls/{id}", get(calls::detail))
        .route("/v1/leads", get(leads::list))
        .route("/v1/leads/{id}", get(leads::detail).patch(leads::update))
        .route("/v1/stats", get(stats::stats))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Binds the API's address.
pub(crate) async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!("api server stopped: {e}");
    }
}
