//! Applying events: one transaction per batch, one statement per event,
//! each an insert that leaves an existing row with the same key alone (or,
//! for a call's start and end, fills in only what is new).

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe};

use super::{Dialect, Store, StoreError, StoreEvent, is_outage, now_ms};

/// An event the database refused, with its reason (it goes to the
/// rejected file, never silently away).
pub(crate) type Rejected = (StoreEvent, String);

impl Store {
    /// Writes `events` in one transaction. If the database refuses one
    /// statement, the batch is written event by event and the refused ones
    /// are returned. `Err` means the database is away: nothing is known to
    /// be written, and writing the batch again is safe (idempotent keys).
    pub(crate) async fn write_batch(
        &self,
        events: &[StoreEvent],
    ) -> Result<Vec<Rejected>, sqlx::Error> {
        if let Err(e) = self.ready().await {
            return Err(match e {
                StoreError::Db(e) => e,
                other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
            });
        }
        let mut tx = self.pool().begin().await?;
        let mut refused = false;
        for e in events {
            match apply(&mut tx, self.dialect(), e).await {
                Ok(()) => {}
                Err(err) if is_outage(&err) => return Err(err),
                Err(_) => {
                    refused = true;
                    break;
                }
            }
        }
        if !refused {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        tx.rollback().await?;
        let mut rejected = Vec::new();
        for e in events {
            let mut conn = self.pool().acquire().await?;
            match apply(&mut conn, self.dialect(), e).await {
                Ok(()) => {}
                Err(err) if is_outage(&err) => return Err(err),
                Err(err) => rejected.push((e.clone(), err.to_string())),
            }
        }
        Ok(rejected)
    }
}

type AnyQuery = Query<'static, Any, AnyArguments>;

fn query(sql: String) -> AnyQuery {
    // Every statement here is built from fixed text and the dialect's fixed
    // fragments; values are always bound.
    sqlx::query(AssertSqlSafe(sql))
}

/// One event as one statement.
async fn apply(
    conn: &mut AnyConnection,
    d: Dialect,
    event: &StoreEvent,
) -> Result<(), sqlx::Error> {
    let q = match event {
        StoreEvent::CallStarted(c) => {
            let keep = |col: &str| format!("{col} = COALESCE({col}, {})", d.new_value(col));
            query(format!(
                "INSERT INTO calls (id, tenant_id, agent, caller_id, dnis, direction, created_ms, start_ms, answer_ms, metadata, node) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){}{}, {}, {}, {}, {}, {}",
                d.on_duplicate("id"),
                keep("caller_id"),
                keep("dnis"),
                keep("start_ms"),
                keep("answer_ms"),
                keep("metadata"),
                keep("node"),
            ))
            .bind(c.call_id.clone())
            .bind(c.tenant.clone())
            .bind(c.agent.clone())
            .bind(c.caller_id.clone())
            .bind(c.dnis.clone())
            .bind(c.direction.clone())
            .bind(c.start_ms)
            .bind(c.start_ms)
            .bind(c.answer_ms)
            .bind(c.metadata.clone())
            .bind(c.node.clone())
        }
        StoreEvent::CallEnded(c) => {
            let set = |col: &str| format!("{col} = {}", d.new_value(col));
            query(format!(
                "INSERT INTO calls (id, tenant_id, agent, direction, created_ms, end_ms, duration_ms, outcome, handoff_target, end_reason) \
                 VALUES (?, ?, ?, 'inbound', ?, ?, ?, ?, ?, ?){}{}, {}, {}, {}, {}",
                d.on_duplicate("id"),
                set("end_ms"),
                set("duration_ms"),
                set("outcome"),
                set("handoff_target"),
                set("end_reason"),
            ))
            .bind(c.call_id.clone())
            .bind(c.tenant.clone())
            .bind(c.agent.clone())
            .bind(c.end_ms - c.duration_ms)
            .bind(c.end_ms)
            .bind(c.duration_ms)
            .bind(c.outcome.clone())
            .bind(c.handoff_target.clone())
            .bind(c.reason.clone())
        }
        StoreEvent::Segment(s) => query(format!(
            "INSERT INTO segments (call_id, seq, speaker, text, start_ms, end_ms, confidence, interrupted) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?){}",
            d.ignore_duplicate("seq")
        ))
        .bind(s.call_id.clone())
        .bind(s.seq)
        .bind(s.speaker.clone())
        .bind(s.text.clone())
        .bind(s.start_ms)
        .bind(s.end_ms)
        .bind(s.confidence)
        .bind(i64::from(s.interrupted)),
        StoreEvent::Turn(t) => query(format!(
            "INSERT INTO turns (call_id, seq, tenant_id, at_ms, v2v_ms, endpoint_ms, stt_ms, first_token_ms, first_audio_ms, playout_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?){}",
            d.ignore_duplicate("seq")
        ))
        .bind(t.call_id.clone())
        .bind(t.seq)
        .bind(t.tenant.clone())
        .bind(t.at_ms)
        .bind(t.v2v_ms)
        .bind(t.endpoint_ms)
        .bind(t.stt_ms)
        .bind(t.first_token_ms)
        .bind(t.first_audio_ms)
        .bind(t.playout_ms),
        StoreEvent::AiRequest(a) => query(format!(
            "INSERT INTO ai_requests (id, tenant_id, call_id, provider, model, tokens_in, tokens_out, cost, first_token_ms, total_ms, outcome, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){}",
            d.ignore_duplicate("id")
        ))
        .bind(a.id.clone())
        .bind(a.tenant.clone())
        .bind(a.call_id.clone())
        .bind(a.provider.clone())
        .bind(a.model.clone())
        .bind(a.tokens_in)
        .bind(a.tokens_out)
        .bind(a.cost)
        .bind(a.first_token_ms)
        .bind(a.total_ms)
        .bind(a.outcome.clone())
        .bind(a.at_ms),
        StoreEvent::Lead(l) => query(format!(
            "INSERT INTO leads (tenant_id, call_id, name, phone, email, intent, score, status, notes, created_ms, updated_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?){}",
            d.ignore_duplicate("call_id")
        ))
        .bind(l.tenant.clone())
        .bind(l.call_id.clone())
        .bind(l.name.clone())
        .bind(l.phone.clone())
        .bind(l.email.clone())
        .bind(l.intent.clone())
        .bind(l.score.clamp(0, 100))
        .bind(l.notes.clone())
        .bind(l.at_ms)
        .bind(now_ms().max(l.at_ms)),
    };
    q.execute(conn).await.map(|_| ())
}
