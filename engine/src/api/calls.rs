//! `/v1/calls`: the list, one call, and pre-registration.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::{Body, Params};
use super::{ApiError, ApiState};
use crate::store::{CallFilter, Principal, Registration};

/// Outcomes a filter may name.
const OUTCOMES: &[&str] = &["completed", "transferred", "abandoned", "failed", "refused"];

/// `GET /v1/calls`.
pub(crate) async fn list(
    State(st): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(
        query.as_deref(),
        &[
            "from", "to", "outcome", "agent", "caller", "cursor", "limit",
        ],
    )?;
    let filter = CallFilter {
        from_ms: p.time("from")?,
        to_ms: p.time("to")?,
        outcome: p.one_of("outcome", OUTCOMES)?,
        agent: p.text("agent")?,
        caller: p.text("caller")?,
        cursor: p.text("cursor")?,
        limit: p.limit()?,
    };
    let (calls, next) = st.store.list_calls(&who.tenant, &filter).await?;
    Ok(Json(json!({ "calls": calls, "next_cursor": next })))
}

/// A path id that must be a UUID; anything else cannot exist.
pub(crate) fn uuid_path(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::bad_request("the call id must be a UUID"))
}

/// `GET /v1/calls/{id}`.
pub(crate) async fn detail(
    State(st): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = uuid_path(&id)?;
    match st.store.call(&who.tenant, &id).await {
        Ok(mut c) => {
            // Decided, but the end not yet written: say so at once.
            if c.call.outcome.is_none()
                && let Some(o) = st.registry.outcome(&id)
            {
                c.call.outcome = Some(o.outcome);
                c.call.handoff_target = o.handoff_target;
            }
            Ok(Json(json!(c)))
        }
        Err(crate::store::StoreError::NotFound) => Err(ApiError::not_found("call")),
        Err(e) => Err(e.into()),
    }
}

/// The body of `POST /v1/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCall {
    agent: String,
    #[serde(default)]
    caller_id: Option<String>,
    #[serde(default)]
    dnis: Option<String>,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `POST /v1/calls`: registers a call ahead; answers the UUID to pass to
/// `AudioSocket()`.
pub(crate) async fn register(
    State(st): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Body(body): Body<NewCall>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !st.agents.contains(&body.agent) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_agent",
            format!(
                "no agent {:?} answers calls here; agents: {}",
                body.agent,
                st.agents.join(", ")
            ),
        ));
    }
    // An anonymous caller or a Local channel has no number: Asterisk's
    // ${CALLERID(num)} is then empty, which means "unknown", not an error.
    let short = |name: &str, v: Option<String>| match v {
        Some(s) if s.chars().count() > 64 => Err(ApiError::bad_request(format!(
            "{name} must be at most 64 characters"
        ))),
        Some(s) if s.is_empty() => Ok(None),
        v => Ok(v),
    };
    let caller_id = short("caller_id", body.caller_id)?;
    let dnis = short("dnis", body.dnis)?;
    let direction = body.direction.unwrap_or_else(|| "inbound".into());
    if direction != "inbound" && direction != "outbound" {
        return Err(ApiError::bad_request(
            "direction must be inbound or outbound",
        ));
    }
    let metadata = match &body.metadata {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > 4096 {
                return Err(ApiError::bad_request(
                    "metadata must be at most 4096 bytes of JSON",
                ));
            }
            Some(text)
        }
        Some(_) => return Err(ApiError::bad_request("metadata must be a JSON object")),
    };
    let reg = Registration {
        call_id: uuid::Uuid::new_v4().hyphenated().to_string(),
        tenant: who.tenant.clone(),
        agent: body.agent,
        caller_id,
        dnis,
        direction,
        metadata,
    };
    st.store.register_call(&reg).await?;
    st.registry.insert(reg.clone());
    let detail = json!({ "agent": reg.agent });
    if let Err(e) = st
        .store
        .audit(
            &who.tenant,
            Some(who.token_id),
            "call.register",
            &format!("call:{}", reg.call_id),
            &detail,
        )
        .await
    {
        tracing::warn!(error = %e, "audit entry not written");
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": reg.call_id,
            "agent": reg.agent,
            "caller_id": reg.caller_id,
            "dnis": reg.dnis,
            "direction": reg.direction,
            "metadata": body.metadata.filter(|m| !m.is_null()),
        })),
    ))
}
