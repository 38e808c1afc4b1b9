//! Voice activity detectors behind media-core's `Vad` trait.
//!
//! # Layout
//! - `silero`: Silero VAD v6 through ONNX Runtime, one shared model and
//!   per-call state.
//!
//! The energy VAD (no model) lives in media-core.

mod silero;

pub use silero::{SileroModel, SileroVad};
