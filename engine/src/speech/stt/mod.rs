//! Speech to text: turns in, transcripts out, never blocking the media loop.
//!
//! A [`Transcriber`] takes a finished caller turn with [`Transcriber::submit`],
//! which returns at once; the transcript arrives later on the request's
//! oneshot channel. Local Whisper runs on a fixed pool of worker threads
//! behind a bounded queue (`queue`); a provider transcriber sends the turn
//! to an OpenAI-compatible `/v1/audio/transcriptions` endpoint.
//!
//! # Layout
//! - `queue`: the bounded job queue shared by the Whisper workers, with
//!   per-call supersession when it is full.
//! - `whisper`: local Whisper through whisper-rs (whisper.cpp).
//! - `http`: the OpenAI-compatible provider transcriber.
//! - `guard`: rejects Whisper's known hallucinations on non-speech.
//! - `wer`: word error rate, for tests and benches.
//!
//! # Concurrency
//! Whisper workers are OS threads (the work is seconds of CPU, not I/O);
//! they share the loaded model read-only and each owns its decoder state.
//! The queue's lock is taken once per turn, never per frame.

mod guard;
mod http;
mod queue;
mod wer;
mod whisper;

use std::fmt;
use std::time::Duration;

use media_core::{CallId, Turn};
use tokio::sync::oneshot;

pub use guard::is_hallucination;
pub use http::{HttpStartError, HttpTranscriber, HttpTranscriberConfig};
pub use wer::{normalize, word_errors};
pub use whisper::{WhisperConfig, WhisperStartError, WhisperTranscriber};

/// One turn to transcribe, with where to send the answer.
#[derive(Debug)]
pub struct SttRequest {
    /// The call the turn belongs to (a full queue supersedes within a call).
    pub call: CallId,
    /// The caller's audio.
    pub turn: Turn,
    /// Where the result goes.
    pub reply: oneshot::Sender<Result<Transcript, SttError>>,
}

/// What a turn said.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The text, trimmed. Never empty: an empty result is [`SttError::NoSpeech`].
    pub text: String,
    /// 0.0-1.0: the mean token probability (Whisper) or the provider's.
    pub confidence: f32,
    /// Length of the audio transcribed.
    pub audio: Duration,
    /// Time spent waiting in the queue.
    pub queued: Duration,
    /// Time spent transcribing.
    pub processing: Duration,
    /// Which engine and model produced it, e.g. `whisper/tiny.en`.
    pub engine: String,
}

/// Why a turn has no transcript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SttError {
    /// The turn held no words (or only a known hallucination on non-speech).
    #[error("no speech in the turn")]
    NoSpeech,
    /// A newer turn of the same call took this one's place in a full queue.
    #[error("superseded by a newer turn of the same call")]
    Superseded,
    /// The engine failed on this turn.
    #[error("transcription failed: {0}")]
    Failed(String),
    /// The transcriber is shutting down.
    #[error("transcriber stopped")]
    Stopped,
}

/// Why a turn was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full of other calls' turns.
    #[error("transcription queue full ({0} waiting)")]
    QueueFull(usize),
    /// The transcriber is shutting down.
    #[error("transcriber stopped")]
    Stopped,
}

/// A speech-to-text engine shared by all calls.
pub trait Transcriber: Send + Sync + fmt::Debug {
    /// Queues a turn. Returns at once; the result goes to `request.reply`.
    fn submit(&self, request: SttRequest) -> Result<(), SubmitError>;

    /// A short name for logs and usage records, e.g. `whisper/tiny.en`.
    fn name(&self) -> &str;
}
