//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document: open
//! routes for balancers, dialplans and Prometheus.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiState, OPENAPI};

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while the node takes calls and has room for one
/// more, else 503; either way the body says how many calls it can take.
pub(crate) async fn readyz(State(st): State<Arc<ApiState>>) -> impl IntoResponse {
    let live = &st.live;
    let draining = live.draining.load(Ordering::Relaxed);
    let spare = live.spare();
    let ready = spare > 0;
    let store = st.writer.as_ref().map(|w| {
        json!({
            "database_up": w.db_up.load(Ordering::Relaxed),
            "spooled_events": w.spool_pending.load(Ordering::Relaxed),
        })
    });
    let body = json!({
        "ready": ready,
        "draining": draining,
        "spare_calls": spare,
        "active_calls": live.active(),
        "max_calls": live.max,
        "store": store,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(st): State<Arc<ApiState>>) -> impl IntoResponse {
    let live = &st.live;
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "hark_calls_active",
        "gauge",
        "Calls in progress.",
        live.active() as f64,
    );
    metric(
        "hark_calls_max",
        "gauge",
        "Most calls at once (max_calls).",
        live.max as f64,
    );
    metric(
        "hark_calls_accepted_total",
        "counter",
        "Calls accepted.",
        live.accepted.load(Ordering::Relaxed) as f64,
    );
    metric(
        "hark_calls_refused_total",
        "counter",
        "Calls refused at capacity.",
        live.refused.load(Ordering::Relaxed) as f64,
    );
    if let Some(w) = &st.writer {
        metric(
            "hark_store_events_written_total",
            "counter",
            "Events written to the database.",
            w.written.load(Ordering::Relaxed) as f64,
        );
        metric(
            "hark_store_events_spooled_total",
            "counter",
            "Events that went to the spool while the database was away.",
            w.spooled.load(Ordering::Relaxed) as f64,
        );
        metric(
            "hark_store_events_rejected_total",
            "counter",
            "Events the database refused (kept in the rejected file).",
            w.rejected.load(Ordering::Relaxed) as f64,
        );
        metric(
            "hark_store_spool_pending",
            "gauge",
            "Events in the spool waiting for the database.",
            w.spool_pending.load(Ordering::Relaxed) as f64,
        );
        metric(
            "hark_store_database_up",
            "gauge",
            "1 if the last write reached the database.",
            if w.db_up.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
