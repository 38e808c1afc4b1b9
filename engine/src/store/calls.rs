//! Calls: pre-registration, the filtered and paginated list, one call in
//! full. Every query is scoped by tenant; every value is bound.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, now_ms};

/// A call pre-registered through the API, before its AudioSocket arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The UUID the dialplan passes to AudioSocket.
    pub call_id: String,
    /// Whose call it is.
    pub tenant: String,
    /// The agent that answers it.
    pub agent: String,
    /// The caller's number, if the dialplan knows it.
    pub caller_id: Option<String>,
    /// The number dialled.
    pub dnis: Option<String>,
    /// "inbound" or "outbound".
    pub direction: String,
    /// Free JSON from the caller of the API.
    pub metadata: Option<String>,
}

/// One row of `GET /v1/calls`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRow {
    /// The call's UUID.
    pub id: String,
    /// The agent.
    pub agent: String,
    /// The caller's number.
    pub caller_id: Option<String>,
    /// The number dialled.
    pub dnis: Option<String>,
    /// "inbound" or "outbound".
    pub direction: String,
    /// JSON given at registration.
    pub metadata: Option<serde_json::Value>,
    /// When the row was first written (epoch ms).
    pub created_ms: i64,
    /// When it was pre-registered.
    pub registered_ms: Option<i64>,
    /// When the connection arrived.
    pub start_ms: Option<i64>,
    /// When the call was answered.
    pub answer_ms: Option<i64>,
    /// When it ended.
    pub end_ms: Option<i64>,
    /// End minus start.
    pub duration_ms: Option<i64>,
    /// completed / transferred / abandoned / failed / refused; none while
    /// in progress.
    pub outcome: Option<String>,
    /// Where a transferred call went.
    pub handoff_target: Option<String>,
    /// Why a failed or refused call ended.
    pub end_reason: Option<String>,
}

/// What the store knows of a call's UUID when its connection arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Registered through the API and not yet started.
    Registered(Registration),
    /// Never seen: a call straight from the dialplan.
    Fresh,
    /// A call with this UUID already started (a dialplan reusing a UUID).
    Used,
}

/// A transcript segment of `GET /v1/calls/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentRow {
    /// caller / agent.
    pub speaker: String,
    /// The words.
    pub text: String,
    /// Offset from the call's start.
    pub start_ms: i64,
    /// Offset from the call's start.
    pub end_ms: i64,
    /// STT confidence, if any.
    pub confidence: Option<f64>,
    /// The agent was cut off here.
    pub interrupted: bool,
}

/// A turn's latency breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnRow {
    /// Caller stopped to first reply frame.
    pub v2v_ms: i64,
    /// Endpointing wait.
    pub endpoint_ms: i64,
    /// STT after the turn's end.
    pub stt_ms: i64,
    /// First token.
    pub first_token_ms: i64,
    /// First audio.
    pub first_audio_ms: i64,
    /// Playout.
    pub playout_ms: i64,
}

/// One model request of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AiRow {
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// Cost.
    pub cost: f64,
    /// Time to first token.
    pub first_token_ms: Option<i64>,
    /// Whole request.
    pub total_ms: i64,
    /// ok / cancelled / failed: ...
    pub outcome: String,
    /// When (epoch ms).
    pub at_ms: i64,
}

/// `GET /v1/calls/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallDetail {
    /// The call.
    #[serde(flatten)]
    pub call: CallRow,
    /// Both sides, in order.
    pub transcript: Vec<SegmentRow>,
    /// Model requests.
    pub ai_usage: Vec<AiRow>,
    /// Per-turn latency.
    pub turns: Vec<TurnRow>,
}

/// Filters of `GET /v1/calls`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFilter {
    /// Created at or after (epoch ms).
    pub from_ms: Option<i64>,
    /// Created before.
    pub to_ms: Option<i64>,
    /// Exact outcome.
    pub outcome: Option<String>,
    /// Exact agent.
    pub agent: Option<String>,
    /// Exact caller number.
    pub caller: Option<String>,
    /// The page after this cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

const CALL_COLUMNS: &str = "id, agent, caller_id, dnis, direction, metadata, created_ms, registered_ms, start_ms, answer_ms, end_ms, duration_ms, outcome, handoff_target, end_reason";

/// A keyset cursor: the last row's (created_ms, id). Pages stay stable
/// while calls are inserted: new rows sort before the first page.
pub(crate) fn encode_cursor(created_ms: i64, id: &str) -> String {
    format!("{created_ms}.{id}")
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let (ms, id) = cursor.split_once('.').ok_or(StoreError::BadCursor)?;
    let ms: i64 = ms.parse().map_err(|_| StoreError::BadCursor)?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(StoreError::BadCursor);
    }
    Ok((ms, id.to_string()))
}

fn call_row(r: &AnyRow) -> Result<CallRow, sqlx::Error> {
    let metadata: Option<String> = r.try_get("metadata")?;
    Ok(CallRow {
        id: r.try_get("id")?,
        agent: r.try_get("agent")?,
        caller_id: r.try_get("caller_id")?,
        dnis: r.try_get("dnis")?,
        direction: r.try_get("direction")?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        created_ms: r.try_get("created_ms")?,
        registered_ms: r.try_get("registered_ms")?,
        start_ms: r.try_get("start_ms")?,
        answer_ms: r.try_get("answer_ms")?,
        end_ms: r.try_get("end_ms")?,
        duration_ms: r.try_get("duration_ms")?,
        outcome: r.try_get("outcome")?,
        handoff_target: r.try_get("handoff_target")?,
        end_reason: r.try_get("end_reason")?,
    })
}

impl Store {
    /// Closes the calls `node` started before `before_ms` and never ended
    /// (the process died with them up): failed, "node restarted", ended
    /// at `now_ms`. Returns how many.
    pub async fn close_orphans(
        &self,
        node: &str,
        before_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "UPDATE calls SET outcome = 'failed', end_reason = 'node restarted', end_ms = ?, \
             duration_ms = ? - start_ms \
             WHERE node = ? AND end_ms IS NULL AND start_ms IS NOT NULL AND start_ms < ?",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(node.to_string())
        .bind(before_ms)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected())
    }

    /// Writes a pre-registration. `Conflict` if the UUID is taken.
    pub async fn register_call(&self, r: &Registration) -> Result<(), StoreError> {
        let now = now_ms();
        let res = sqlx::query(
            "INSERT INTO calls (id, tenant_id, agent, caller_id, dnis, direction, metadata, created_ms, registered_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.call_id.clone())
        .bind(r.tenant.clone())
        .bind(r.agent.clone())
        .bind(r.caller_id.clone())
        .bind(r.dnis.clone())
        .bind(r.direction.clone())
        .bind(r.metadata.clone())
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// A registration not yet used by a call (any tenant: the UUID is the key).
    pub async fn registration(&self, call_id: &str) -> Result<Lookup, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant_id, agent, caller_id, dnis, direction, metadata, registered_ms, start_ms \
             FROM calls WHERE id = ?",
        )
        .bind(call_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(Lookup::Fresh);
        };
        let started: Option<i64> = r.try_get("start_ms")?;
        let registered: Option<i64> = r.try_get("registered_ms")?;
        if started.is_some() {
            return Ok(Lookup::Used);
        }
        if registered.is_none() {
            return Ok(Lookup::Fresh);
        }
        Ok(Lookup::Registered(Registration {
            call_id: r.try_get("id")?,
            tenant: r.try_get("tenant_id")?,
            agent: r.try_get("agent")?,
            caller_id: r.try_get("caller_id")?,
            dnis: r.try_get("dnis")?,
            direction: r.try_get("direction")?,
            metadata: r.try_get("metadata")?,
        }))
    }

    /// A page of the tenant's calls, newest first, and the next page's cursor.
    pub async fn list_calls(
        &self,
        tenant: &str,
        f: &CallFilter,
    ) -> Result<(Vec<CallRow>, Option<String>), StoreError> {
        let mut sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = ?");
        let mut binds: Vec<Bind> = vec![Bind::Text(tenant.to_string())];
        if let Some(v) = f.from_ms {
            sql.push_str(" AND created_ms >= ?");
            binds.push(Bind::Int(v));
        }
        if let Some(v) = f.to_ms {
            sql.push_str(" AND created_ms < ?");
            binds.push(Bind::Int(v));
        }
        if let Some(v) = &f.outcome {
            sql.push_str(" AND outcome = ?");
            binds.push(Bind::Text(v.clone()));
        }
        if let Some(v) = &f.agent {
            sql.push_str(" AND agent = ?");
            binds.push(Bind::Text(v.clone()));
        }
        if let Some(v) = &f.caller {
            sql.push_str(" AND caller_id = ?");
            binds.push(Bind::Text(v.clone()));
        }
        if let Some(c) = &f.cursor {
            let (ms, id) = decode_cursor(c)?;
            sql.push_str(" AND (created_ms < ? OR (created_ms = ? AND id < ?))");
            binds.extend([Bind::Int(ms), Bind::Int(ms), Bind::Text(id)]);
        }
        let limit = f.limit.clamp(1, 500);
        let rows = keyset_page(sql, binds, limit)
            .fetch_all(self.pool())
            .await?;
        let rows = rows.iter().map(call_row).collect::<Result<Vec<_>, _>>()?;
        let (out, next) = split_page(rows, limit, |c| encode_cursor(c.created_ms, &c.id));
        Ok((out, next))
    }

    /// One call of the tenant with its transcript, usage and turns.
    pub async fn call(&self, tenant: &str, id: &str) -> Result<CallDetail, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = ? AND id = ?"
        )))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        let call = call_row(&row)?;
        let transcript = sqlx::query(
            "SELECT speaker, text, start_ms, end_ms, confidence, interrupted FROM segments WHERE call_id = ? ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(SegmentRow {
                speaker: r.try_get("speaker")?,
                text: r.try_get("text")?,
                start_ms: r.try_get("start_ms")?,
                end_ms: r.try_get("end_ms")?,
                confidence: r.try_get("confidence")?,
                interrupted: r.try_get::<i64, _>("interrupted")? != 0,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let ai_usage = sqlx::query(
            "SELECT provider, model, tokens_in, tokens_out, cost, first_token_ms, total_ms, outcome, at_ms \
             FROM ai_requests WHERE tenant_id = ? AND call_id = ? ORDER BY at_ms, id",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(AiRow {
                provider: r.try_get("provider")?,
                model: r.try_get("model")?,
                tokens_in: r.try_get("tokens_in")?,
                tokens_out: r.try_get("tokens_out")?,
                cost: r.try_get("cost")?,
                first_token_ms: r.try_get("first_token_ms")?,
                total_ms: r.try_get("total_ms")?,
                outcome: r.try_get("outcome")?,
                at_ms: r.try_get("at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let turns = sqlx::query(
            "SELECT v2v_ms, endpoint_ms, stt_ms, first_token_ms, first_audio_ms, playout_ms \
             FROM turns WHERE tenant_id = ? AND call_id = ? ORDER BY seq",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(TurnRow {
                v2v_ms: r.try_get("v2v_ms")?,
                endpoint_ms: r.try_get("endpoint_ms")?,
                stt_ms: r.try_get("stt_ms")?,
                first_token_ms: r.try_get("first_token_ms")?,
                first_audio_ms: r.try_get("first_audio_ms")?,
                playout_ms: r.try_get("playout_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(CallDetail {
            call,
            transcript,
            ai_usage,
            turns,
        })
    }
}

/// A filtered query, newest first by (created_ms, id), one row more than
/// the page so the caller knows whether another page follows.
pub(crate) fn keyset_page(
    mut sql: String,
    binds: Vec<Bind>,
    limit: u32,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sql.push_str(&format!(
        " ORDER BY created_ms DESC, id DESC LIMIT {}",
        limit + 1
    ));
    // Built from fixed text; every value is in `binds`.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Int(v) => q.bind(v),
            Bind::Text(v) => q.bind(v),
        };
    }
    q
}

/// The page and the next page's cursor, from `limit + 1` rows.
pub(crate) fn split_page<T>(
    mut rows: Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// A value to bind to a dynamically assembled query.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Int(i64),
    Text(String),
}
