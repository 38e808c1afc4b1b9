//! End-of-turn detection with Smart Turn v3 (pipecat-ai's audio model:
//! prosody and content of the last 8 s of a turn -> the probability that
//! the speaker is done).
//!
//! The model comes from the `pipecat-ai` wheel through `models/fetch.py`
//! (`models/smart-turn/smart-turn-v3.2-cpu.onnx`, int8, BSD-2-Clause).
//! It runs on inference threads of its own (`OnnxThreads`): features and
//! inference together take milliseconds, so the driver asks for a score
//! only when a pause begins, never per frame.
//!
//! # Layout
//! - `features`: Whisper-style log-mel features (80 x 800) in Rust.

mod features;

use std::path::Path;

use media_core::{Resampler, SampleRate};
use ort::value::TensorRef;

use super::inference::OnnxThreads;
use super::onnx::OnnxError;
use features::{FRAMES, LogMel, MELS, SAMPLES};

/// Turns that may wait for a thread, all calls together.
const QUEUE: usize = 64;

/// Why a turn could not be scored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnModelError {
    /// The turn's audio could not be resampled to 16 kHz.
    #[error("cannot resample the turn to 16 kHz: {0}")]
    Resample(#[from] media_core::ResampleError),
    /// ONNX Runtime failed on the model.
    #[error("turn model: {0}")]
    Inference(String),
    /// The inference threads are gone (hark is stopping).
    #[error("turn model: the inference threads are gone")]
    Gone,
}

/// What a call judges its pauses with: the shared model and the agent's
/// settings.
#[derive(Debug, Clone)]
pub struct TurnCheck {
    /// The agent's `turn = "smart"` settings.
    pub config: media_core::SmartTurn,
    /// The model, shared by all calls.
    pub model: std::sync::Arc<TurnModel>,
}

/// The loaded Smart Turn model, shared by all calls.
#[derive(Debug)]
pub struct TurnModel {
    threads: OnnxThreads,
    mel: std::sync::Arc<LogMel>,
}

impl TurnModel {
    /// Loads `model` on ONNX Runtime from `library`, once per thread
    /// (`threads` at once, one intra-op thread each).
    pub fn load(library: &Path, model: &Path, threads: usize) -> Result<Self, OnnxError> {
        Ok(Self {
            threads: OnnxThreads::start(library, model, threads, 1, QUEUE, "turn")?,
            mel: std::sync::Arc::new(LogMel::new()),
        })
    }

    /// The probability (0 to 1) that the speaker has finished, from the
    /// turn so far: `samples` at `rate`, of which the last 8 s count.
    pub async fn complete(
        &self,
        rate: SampleRate,
        samples: Vec<i16>,
    ) -> Result<f32, TurnModelError> {
        let mel = std::sync::Arc::clone(&self.mel);
        self.threads
            .run(move |session| {
                let audio = model_input(rate, &samples)?;
                let features = mel.compute(&audio);
                let fail = |e: ort::Error| TurnModelError::Inference(e.to_string());
                let outputs = session
                    .run(ort::inputs![
                        "input_features" => TensorRef::from_array_view(([1usize, MELS, FRAMES], &features[..])).map_err(fail)?,
                    ])
                    .map_err(fail)?;
                let (_, p) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
                p.first()
                    .copied()
                    .filter(|p| p.is_finite())
                    .ok_or_else(|| TurnModelError::Inference("no probability in the output".into()))
            })
            .await
            .map_err(|_| TurnModelError::Gone)?
    }
}

/// The last 8 s of the turn at 16 kHz in [-1, 1], zeros before when the
/// turn is shorter (as the model was trained).
fn model_input(rate: SampleRate, samples: &[i16]) -> Result<Vec<f32>, TurnModelError> {
    // Only what can reach the last 8 s is resampled (8.1 s: the
    // resampler's edge stays out of the window).
    let keep = rate.hz() as usize * 81 / 10;
    let tail = &samples[samples.len().saturating_sub(keep)..];
    let at16 = if rate == SampleRate::HZ_16000 {
        tail.to_vec()
    } else {
        Resampler::convert_all(rate, SampleRate::HZ_16000, tail)?
    };
    let tail = &at16[at16.len().saturating_sub(SAMPLES)..];
    let mut audio = vec![0.0f32; SAMPLES - tail.len()];
    audio.extend(tail.iter().map(|&s| f32::from(s) / 32_768.0));
    Ok(audio)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn model() -> TurnModel {
        let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
        TurnModel::load(
            &models.join("onnxruntime/libonnxruntime.so.1.31.1"),
            &models.join("smart-turn/smart-turn-v3.2-cpu.onnx"),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py first"))
    }

    /// A real recorded prompt (Debian's asterisk-core-sounds-en-wav, 8 kHz,
    /// installed by scripts/test).
    fn prompt(name: &str) -> (SampleRate, Vec<i16>) {
        let path = PathBuf::from(format!("/usr/share/asterisk/sounds/en/{name}.wav"));
        let wav = crate::wav::read(&path)
            .unwrap_or_else(|e| panic!("{e}: install asterisk-core-sounds-en-wav (scripts/test)"));
        (wav.rate, wav.samples)
    }

    #[tokio::test]
    async fn a_whole_sentence_is_complete_and_the_same_sentence_cut_short_is_not() {
        let model = model();
        // (prompt, where a cut leaves the sentence open, in ms): "The
        // conference will | begin when the leader arrives." and "The
        // leader has left | the conference."
        for (name, cut_ms) in [("conf-waitforleader", 830), ("conf-leaderhasleft", 1_210)] {
            let (rate, samples) = prompt(name);
            let cut = rate.hz() as usize * cut_ms / 1_000;
            assert!(cut < samples.len());
            let whole = model.complete(rate, samples.clone()).await.expect("scored");
            let open = model
                .complete(rate, samples[..cut].to_vec())
                .await
                .expect("scored");
            assert!(whole > 0.5, "{name}: whole sentence scored {whole}");
            assert!(open < 0.5, "{name}: cut at {cut_ms} ms scored {open}");
            assert!(whole - open > 0.5, "{name}: {whole} against {open}");
        }
    }

    #[tokio::test]
    async fn silence_and_a_16_khz_turn_longer_than_8_s_are_scored_without_error() {
        let model = model();
        let p = model
            .complete(SampleRate::HZ_8000, vec![0; 800])
            .await
            .expect("silence is scored");
        assert!((0.0..=1.0).contains(&p));
        let (rate, samples) = prompt("demo-thanks");
        let long16 =
            Resampler::convert_all(rate, SampleRate::HZ_16000, &samples).expect("resample");
        let mut turn = vec![0i16; 16_000 * 6];
        turn.extend_from_slice(&long16);
        assert!(turn.len() > SAMPLES);
        let p = model
            .complete(SampleRate::HZ_16000, turn)
            .await
            .expect("scored");
        assert!(p > 0.5, "a finished goodbye scored {p}");
    }

    #[test]
    fn the_model_input_is_the_last_8_s_with_zeros_before() {
        let short = model_input(SampleRate::HZ_16000, &[16_384; 1_600]).expect("input");
        assert_eq!(short.len(), SAMPLES);
        assert!(short[..SAMPLES - 1_600].iter().all(|&v| v == 0.0));
        assert!(short[SAMPLES - 1_600..].iter().all(|&v| v == 0.5));
        let mut long = vec![1i16; SAMPLES];
        long.extend(std::iter::repeat_n(-16_384i16, 100));
        let input = model_input(SampleRate::HZ_16000, &long).expect("input");
        assert_eq!(input.len(), SAMPLES);
        assert!(input[SAMPLES - 100..].iter().all(|&v| v == -0.5));
    }
}
