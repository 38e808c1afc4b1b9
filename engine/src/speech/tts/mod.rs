//! Speech out: text to phone audio, starting before the whole reply exists.
//!
//! A [`Synthesizer`] turns one speakable chunk into audio at a call's rate.
//! A [`SpeechStream`] sits in front of it: text arrives in pieces (LLM
//! tokens), the [`SentenceSplitter`] releases chunks at sentence or clause
//! boundaries (or after a maximum wait, so a long sentence still starts
//! early), and chunk N+1 is synthesized while chunk N plays. Cancelling the
//! stream drops all pending work at once.
//!
//! # Layout
//! - `normalize`: numbers, phone numbers, money, dates, times and
//!   abbreviations into words.
//! - `phonemize`: the `espeak-ng` program, run per sentence (GPL-3+, so never
//!   linked).
//! - `piper`: local Piper voices through ONNX Runtime.
//! - `http`: an OpenAI-compatible `/v1/audio/speech` provider (streamed PCM).
//! - `splitter`: the sentence splitter.
//! - `stream`: the streaming pipeline.
//! - `cache`: fixed prompts synthesized once at start-up.
//!
//! # Concurrency
//! A stream runs two tasks: one splits text, one synthesizes chunks in
//! order into a bounded audio channel. Piper inference runs on tokio's
//! blocking pool; espeak-ng is a child process killed if its stream is
//! cancelled.

mod cache;
mod http;
mod normalize;
mod phonemize;
mod piper;
mod splitter;
mod stream;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use media_core::SampleRate;

pub use cache::PromptCache;
pub use http::{HttpSynthesizer, HttpSynthesizerConfig};
pub use normalize::{normalize, number_words};
pub use phonemize::PhonemizeError;
pub use piper::{PiperScales, PiperSynthesizer, PiperVoice};
pub use splitter::SentenceSplitter;
pub use stream::{SpeechStream, Spoken, TextInput};

/// Why text could not become audio.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtsError {
    /// The voice could not be loaded.
    #[error("TTS voice: {0}")]
    Voice(String),
    /// espeak-ng failed.
    #[error(transparent)]
    Phonemize(#[from] PhonemizeError),
    /// The network or the provider failed on this text.
    #[error("synthesis failed: {0}")]
    Synthesis(String),
    /// The stream was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// The future [`Synthesizer::synthesize`] returns.
pub type SynthFuture = Pin<Box<dyn Future<Output = Result<Vec<i16>, TtsError>> + Send>>;

/// Text to audio, shared by all calls.
pub trait Synthesizer: Send + Sync + fmt::Debug {
    /// Audio for one speakable chunk, at `rate`. Empty text gives no audio.
    fn synthesize(&self, text: String, rate: SampleRate) -> SynthFuture;

    /// A short name for logs, e.g. `piper/en_US-joe-medium`.
    fn name(&self) -> &str;
}
