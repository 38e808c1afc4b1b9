//! `/v1/leads`: the list, one lead, and status changes.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::{Body, Params};
use super::{ApiError, ApiState};
use crate::store::{LeadFilter, LeadPatch, LeadStatus, Principal, StoreError};

const STATUSES: &[&str] = &["new", "qualified", "contacted", "converted", "closed"];

fn status(s: &str) -> Result<LeadStatus, ApiError> {
    LeadStatus::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!("status must be one of: {}", STATUSES.join(", ")))
    })
}

fn lead_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| ApiError::bad_request("the lead id must be a positive integer"))
}

/// `GET /v1/leads`.
pub(crate) async fn list(
    State(st): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(
        query.as_deref(),
        &["status", "min_score", "from", "to", "cursor", "limit"],
    )?;
    let filter = LeadFilter {
        status: p
            .one_of("status", STATUSES)?
            .map(|s| status(&s))
            .transpose()?,
        min_score: p.int("min_score", 0..=100)?,
        from_ms: p.time("from")?,
        to_ms: p.time("to")?,
        cursor: p.text("cursor")?,
        limit: p.limit()?,
    };
    let (leads, next) = st.store.list_leads(&who.tenant, &filter).await?;
    Ok(Json(json!({ "leads": leads, "next_cursor": next })))
}

/// `GET /v1/leads/{id}`.
pub(crate) async fn detail(
    State(st): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match st.store.lead(&who.tenant, lead_id(&id)?).await {
        Ok(l) => Ok(Json(json!(l))),
        Err(StoreError::NotFound) => Err(ApiError::not_found("lead")),
        Err(e) => Err(e.into()),
    }
}

/// The body of `PATCH /v1/leads/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Change {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    notes: Option<String>,
}

/// `PATCH /v1/leads/{id}`: 409 when the workflow does not allow the change.
pub(crate) async fn update(
    State(st): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Body(change): Body<Change>,
) -> Result<Json<Value>, ApiError> {
    let id = lead_id(&id)?;
    if change.status.is_none() && change.notes.is_none() {
        return Err(ApiError::bad_request("give status, notes or both"));
    }
    if change
        .notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > 4000)
    {
        return Err(ApiError::bad_request(
            "notes must be at most 4000 characters",
        ));
    }
    let patch = LeadPatch {
        status: change.status.as_deref().map(status).transpose()?,
        notes: change.notes,
    };
    match st
        .store
        .patch_lead(&who.tenant, id, &patch, Some(who.token_id))
        .await
    {
        Ok(l) => Ok(Json(json!(l))),
        Err(StoreError::NotFound) => Err(ApiError::not_found("lead")),
        Err(e) => Err(e.into()),
    }
}
