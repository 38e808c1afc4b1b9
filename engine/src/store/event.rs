//! What a call produces for the store. Every event carries its own
//! idempotent key (a call id with a sequence number, or a request id), so a
//! batch replayed after an outage writes each row exactly once.

use serde::{Deserialize, Serialize};

/// One thing to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreEvent {
    /// A call was answered.
    CallStarted(CallStart),
    /// Someone said something.
    Segment(Segment),
    /// One caller turn's latency breakdown.
    Turn(Turn),
    /// One model request's accounting.
    AiRequest(AiRequest),
    /// A call ended.
    CallEnded(CallEnd),
    /// A lead was extracted at a call's end.
    Lead(Lead),
}

impl StoreEvent {
    /// The call it belongs to, if any.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            StoreEvent::CallStarted(c) => Some(&c.call_id),
            StoreEvent::Segment(s) => Some(&s.call_id),
            StoreEvent::Turn(t) => Some(&t.call_id),
            StoreEvent::AiRequest(a) => a.call_id.as_deref(),
            StoreEvent::CallEnded(c) => Some(&c.call_id),
            StoreEvent::Lead(l) => Some(&l.call_id),
        }
    }
}

/// A call's start. Key: `call_id`; a pre-registered row keeps its tenant,
/// agent and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStart {
    /// The AudioSocket UUID.
    pub call_id: String,
    /// Whose call it is.
    pub tenant: String,
    /// The agent that answered.
    pub agent: String,
    /// The caller's number, if known.
    pub caller_id: Option<String>,
    /// The number dialled, if known.
    pub dnis: Option<String>,
    /// "inbound" or "outbound".
    pub direction: String,
    /// When the connection arrived.
    pub start_ms: i64,
    /// When the call was answered (the first audio frame).
    pub answer_ms: Option<i64>,
    /// Free JSON about the call (for Stasis calls: the ARI channel and its
    /// variables). A registered row keeps its own.
    #[serde(default)]
    pub metadata: Option<String>,
    /// The node that runs the call (`[server] node`).
    #[serde(default)]
    pub node: Option<String>,
}

/// A transcript segment. Key: (`call_id`, `seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The call.
    pub call_id: String,
    /// Its order in the call, from 0.
    pub seq: i64,
    /// "caller" or "agent".
    pub speaker: String,
    /// The words.
    pub text: String,
    /// Offset from the call's start.
    pub start_ms: i64,
    /// Offset from the call's start.
    pub end_ms: i64,
    /// STT confidence, when the recogniser gives one.
    pub confidence: Option<f64>,
    /// The agent was cut off (its text is what the caller heard).
    pub interrupted: bool,
}

/// A caller turn's latency breakdown. Key: (`call_id`, `seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The call.
    pub call_id: String,
    /// Its order in the call, from 0.
    pub seq: i64,
    /// Whose call it is.
    pub tenant: String,
    /// When the reply's first frame left (epoch ms).
    pub at_ms: i64,
    /// Caller stopped speaking to first reply frame sent.
    pub v2v_ms: i64,
    /// Waiting for the turn's end.
    pub endpoint_ms: i64,
    /// Transcription after the turn's end.
    pub stt_ms: i64,
    /// The model's first token.
    pub first_token_ms: i64,
    /// Text to first audio.
    pub first_audio_ms: i64,
    /// Audio to the first frame sent.
    pub playout_ms: i64,
}

/// A model request. Key: `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiRequest {
    /// A fresh UUID per request.
    pub id: String,
    /// Whose request it was.
    pub tenant: String,
    /// The call it served, if any.
    pub call_id: Option<String>,
    /// The provider's configured name.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// In the currency of the provider's configured prices.
    pub cost: f64,
    /// Time to the first token, if one came.
    pub first_token_ms: Option<i64>,
    /// The whole request.
    pub total_ms: i64,
    /// "ok", "cancelled", "failed", ...
    pub outcome: String,
    /// When it ended (epoch ms).
    pub at_ms: i64,
}

/// A call's end. Key: `call_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEnd {
    /// The call.
    pub call_id: String,
    /// Whose call it is (used if the start was never recorded).
    pub tenant: String,
    /// The agent (likewise).
    pub agent: String,
    /// When it ended (epoch ms).
    pub end_ms: i64,
    /// End minus start.
    pub duration_ms: i64,
    /// completed / transferred / abandoned / failed / refused.
    pub outcome: String,
    /// Where a transferred call went.
    pub handoff_target: Option<String>,
    /// Why it ended, in words, for a failed or refused call (spools
    /// written before this field read as none).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A lead. Key: `call_id` (one lead per call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    /// The source call.
    pub call_id: String,
    /// Whose lead it is.
    pub tenant: String,
    /// The caller's name.
    pub name: Option<String>,
    /// A phone number.
    pub phone: Option<String>,
    /// An e-mail address.
    pub email: Option<String>,
    /// What the caller wants.
    pub intent: Option<String>,
    /// 0-100, from the configured rules.
    pub score: i64,
    /// Anything else learned.
    pub notes: Option<String>,
    /// When it was extracted (epoch ms).
    pub at_ms: i64,
}
