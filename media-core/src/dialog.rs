//! The vocabulary a talking agent and its driver share: utterances, what the
//! caller said, what the model answered, and the records a call leaves for
//! the control plane.
//!
//! The core decides *what* happens (speak, think, cancel, hang up); the
//! driver does the I/O (STT, the LLM, TTS) and reports back with these types.

use std::fmt;

use crate::conversation::OverlapKind;
use crate::frame::Time;

/// One thing the agent says: a fixed phrase or one streamed model reply.
/// Ids are unique within a call and never reused, so a late result for a
/// cancelled utterance is recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UtteranceId(pub u32);

impl fmt::Display for UtteranceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "u{}", self.0)
    }
}

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The person on the phone.
    Caller,
    /// hark.
    Agent,
}

/// One line of the conversation as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Who said it.
    pub speaker: Speaker,
    /// For the agent: only what the caller actually heard.
    pub text: String,
    /// The caller talked over the agent and this line was cut short.
    pub interrupted: bool,
}

/// What speech-to-text made of one caller turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// The words; empty when the turn had none (noise) or STT failed.
    pub text: String,
    /// The engine's confidence, 0 to 1.
    pub confidence: f32,
    /// When the caller started talking.
    pub speech_start: Time,
    /// When the caller stopped talking.
    pub speech_end: Time,
    /// When the end of the turn was decided.
    pub decided_at: Time,
}

impl Heard {
    /// The caller's transcript segment, if the turn had words.
    pub fn segment(&self) -> Option<Segment> {
        let text = self.text.trim();
        (!text.is_empty()).then(|| Segment {
            speaker: Speaker::Caller,
            text: text.to_string(),
            start: self.speech_start,
            end: self.speech_end,
            confidence: self.confidence,
            interrupted: false,
        })
    }
}

/// What the driver reports about a streamed model reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyInput {
    /// More reply text (also sent to TTS by the driver).
    Text(String),
    /// The model called a tool; `arguments` is its JSON object as text.
    Tool {
        /// The tool's name.
        name: String,
        /// Its arguments.
        arguments: String,
    },
    /// The reply is complete.
    Done,
    /// The reply failed (no provider, or it broke off); why.
    Failed(String),
}

/// A transcript segment for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Who.
    pub speaker: Speaker,
    /// What (for the agent: what was heard).
    pub text: String,
    /// Start, from the call's start.
    pub start: Time,
    /// End, from the call's start.
    pub end: Time,
    /// STT confidence for the caller; 1 for the agent.
    pub confidence: f32,
    /// The caller cut this agent segment short.
    pub interrupted: bool,
}

/// Where the time went between the caller's last word and the agent's
/// first reply frame. All times are from the call's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnLatency {
    /// The caller's last voiced audio.
    pub speech_end: Time,
    /// The endpointer decided the turn was over.
    pub decided_at: Time,
    /// The transcript arrived.
    pub transcribed_at: Time,
    /// The model's first text arrived.
    pub first_token_at: Time,
    /// The first synthesized audio was handed to playout.
    pub first_audio_at: Time,
    /// The first reply frame left.
    pub first_frame_at: Time,
}

impl TurnLatency {
    /// Caller stops speaking -> first reply frame sent.
    pub fn voice_to_voice(&self) -> std::time::Duration {
        self.first_frame_at.saturating_since(self.speech_end)
    }
}

/// How a conversation ended, when the agent ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The agent finished the conversation (`end_call`, time limit).
    Completed,
    /// Handed to a human: the dialplan continues to `target`.
    Transferred {
        /// The configured hand-off target (a queue or extension name).
        target: String,
        /// Why, as the model or the caller gave it.
        reason: String,
    },
    /// The caller stayed silent through every re-prompt.
    Abandoned,
}

impl Outcome {
    /// The word the store and the dialplan use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Transferred { .. } => "transferred",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// Something a call leaves for the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A transcript segment.
    Said(Segment),
    /// A reply's latency breakdown.
    Latency(TurnLatency),
    /// The caller talked over the agent: `onset` of their speech, `at` when
    /// playout was flushed.
    BargeIn {
        /// Caller's speech onset.
        onset: Time,
        /// When the agent's audio was ducked, if it was before it stopped.
        ducked_at: Option<Time>,
        /// When the agent stopped.
        at: Time,
    },
    /// The caller's voice ducked the agent, and it was not an interruption:
    /// the level came back and the agent went on.
    Overlap {
        /// When the agent's audio was ducked (the first voiced window).
        ducked_at: Time,
        /// When its level came back.
        restored_at: Time,
        /// What it was.
        kind: OverlapKind,
    },
    /// The model asked to record a lead; its arguments as JSON text.
    Lead(String),
    /// A reply failed; why.
    ReplyFailed(String),
    /// How the conversation ended.
    Outcome(Outcome),
}
