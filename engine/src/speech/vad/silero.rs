//! Silero VAD (v6) through ONNX Runtime.
//!
//! The model is stateless between runs: its recurrent state (`state`,
//! f32[2,1,128]) and the last 64 (16 kHz) or 32 (8 kHz) samples of the
//! previous window (the "context", prepended to each window as the reference
//! wrapper does) are per call, in [`SileroVad`]. The loaded model is shared by
//! all calls through [`SileroModel`]: a small pool of ONNX Runtime sessions,
//! each behind its own mutex, held only for one inference (about 150 us).
//! A call takes the first free session, so the cost of a window does not grow
//! with the number of calls until every session is busy.

use std::path::Path;
use std::sync::Arc;

use media_core::{SampleRate, Vad, VadError};
use ort::session::Session;
use ort::value::TensorRef;

use crate::speech::onnx::{OnnxError, SessionPool};

/// Samples in the state tensor: 2 x 1 x 128.
const STATE_LEN: usize = 2 * 128;

/// The shared, loaded Silero model.
#[derive(Debug)]
pub struct SileroModel {
    pool: SessionPool,
}

impl SileroModel {
    /// Loads `model` with ONNX Runtime from `library`, as `sessions`
    /// independent sessions (one per core is the useful maximum), each
    /// running single-threaded: parallelism comes from calls, not from
    /// splitting one tiny inference.
    pub fn load(library: &Path, model: &Path, sessions: usize) -> Result<Arc<Self>, OnnxError> {
        Ok(Arc::new(Self {
            pool: SessionPool::load(library, model, sessions, 1)?,
        }))
    }

    /// Times a detector found every session busy and waited for a lock
    /// (on whatever thread it ran: a tokio worker, in a call's task).
    pub fn lock_waits(&self) -> u64 {
        self.pool.waits()
    }

    /// A detector for one call at `rate` (8 or 16 kHz; anything else is
    /// resampled by the endpointer to the nearer of the two), scoring in
    /// place on the model's sessions (tools, benches; calls use
    /// [`VadThreads`](super::VadThreads)).
    pub fn detector(self: &Arc<Self>, rate: SampleRate) -> SileroVad {
        SileroVad {
            model: Arc::clone(self),
            state: SileroState::new(rate),
        }
    }
}

/// The rate and window Silero runs at for a caller at `rate`: 16 kHz and
/// 512 samples from 16 kHz up, else 8 kHz and 256.
pub fn silero_shape(rate: SampleRate) -> (SampleRate, usize) {
    if rate.hz() >= 16_000 {
        (SampleRate::HZ_16000, 512)
    } else {
        (SampleRate::HZ_8000, 256)
    }
}

/// One call's Silero state: the recurrent state and the context, which
/// travel with each window to whichever session scores it.
pub struct SileroState {
    rate: SampleRate,
    window: usize,
    context: usize,
    /// context ++ window, as f32 in -1..1.
    input: Vec<f32>,
    state: Vec<f32>,
}

impl std::fmt::Debug for SileroState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroState")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl SileroState {
    /// Fresh state for a caller at `rate`.
    pub fn new(rate: SampleRate) -> Self {
        let (rate, window) = silero_shape(rate);
        let context = if rate == SampleRate::HZ_16000 { 64 } else { 32 };
        Self {
            rate,
            window,
            context,
            input: vec![0.0; context + window],
            state: vec![0.0; STATE_LEN],
        }
    }

    /// The rate it scores at.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The speech probability of `window` (the next window of this
    /// call's audio), run on `session`.
    pub(crate) fn score(&mut self, session: &mut Session, window: &[i16]) -> Result<f32, VadError> {
        media_core::check_window(self.window, window)?;
        // Slide: the tail of the last input becomes this window's context.
        self.input.copy_within(self.window.., 0);
        for (dst, &s) in self.input[self.context..].iter_mut().zip(window) {
            *dst = f32::from(s) / 32_768.0;
        }
        match run(
            session,
            &self.input,
            &mut self.state,
            i64::from(self.rate.hz()),
        ) {
            Ok(p) => Ok(p.clamp(0.0, 1.0)),
            Err(reason) => {
                tracing::warn!(%reason, "Silero VAD inference failed");
                Err(VadError::Inference)
            }
        }
    }

    fn reset(&mut self) {
        self.input.fill(0.0);
        self.state.fill(0.0);
    }
}

fn run(session: &mut Session, input: &[f32], state: &mut [f32], sr: i64) -> Result<f32, String> {
    let sr = [sr];
    let outputs = session
        .run(ort::inputs![
            "input" => TensorRef::from_array_view(([1usize, input.len()], input)).map_err(|e| e.to_string())?,
            "state" => TensorRef::from_array_view(([2usize, 1, 128], &*state)).map_err(|e| e.to_string())?,
            "sr" => TensorRef::from_array_view(((), &sr[..])).map_err(|e| e.to_string())?,
        ])
        .map_err(|e| e.to_string())?;
    let (_, p) = outputs["output"]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())?;
    let (_, new_state) = outputs["stateN"]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())?;
    if new_state.len() != state.len() {
        return Err(format!(
            "state of {} values, expected {}",
            new_state.len(),
            state.len()
        ));
    }
    state.copy_from_slice(new_state);
    p.first().copied().ok_or_else(|| "empty output".to_string())
}

/// One call's Silero detector scoring in place, on a free session of the
/// model's pool.
pub struct SileroVad {
    model: Arc<SileroModel>,
    state: SileroState,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("rate", &self.state.rate)
            .finish_non_exhaustive()
    }
}

impl Vad for SileroVad {
    fn rate(&self) -> SampleRate {
        self.state.rate
    }

    fn window_samples(&self) -> usize {
        self.state.window
    }

    fn probability(&mut self, window: &[i16]) -> Result<f32, VadError> {
        let state = &mut self.state;
        self.model.pool.with(|s| state.score(s, window))
    }

    fn reset(&mut self) {
        self.state.reset();
    }
}
