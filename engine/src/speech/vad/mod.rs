//! Voice activity detectors behind media-core's `Vad` trait.
//!
//! # Layout
//! - `silero`: Silero VAD v6 through ONNX Runtime, one shared model and
//!   per-call state.
//! - `threads`: Silero on inference threads of its own, which calls reach
//!   through a bounded queue (never a lock on a tokio thread).
//!
//! The energy VAD (no model) lives in media-core.

mod silero;
mod threads;

pub use silero::{SileroModel, SileroState, SileroVad, silero_shape};
pub use threads::{Listening, Scored, VadThreads};
