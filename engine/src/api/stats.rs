//! `GET /v1/stats`: the tenant's figures for a period (default: the last
//! 24 hours).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::params::Params;
use super::{ApiError, ApiState};
use crate::store::{Principal, now_ms};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// `GET /v1/stats?from=&to=`.
pub(crate) async fn stats(
    State(st): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(query.as_deref(), &["from", "to"])?;
    let to = p.time("to")?.unwrap_or_else(|| now_ms() + 1);
    // The day before `to`, but never before the epoch: times are >= 0.
    let from = p.time("from")?.unwrap_or((to - DAY_MS).max(0));
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    let s = st.store.stats(&who.tenant, from, to).await?;
    Ok(Json(json!(s)))
}
