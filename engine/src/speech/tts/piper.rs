//! Local Piper TTS through ONNX Runtime.
//!
//! A Piper voice is a VITS network plus a JSON config that maps each IPA
//! symbol to an id. Synthesis of one sentence runs like this:
//!
//! 1. Normalize the text for the phone (`normalize`).
//! 2. Phonemize it with the `espeak-ng` program (`phonemize`).
//! 3. Map the phonemes to ids: `^`, then each symbol followed by the pad
//!    `_`, then `$`. Symbols the voice does not know are skipped.
//! 4. Run the network with the voice's `noise_scale`, `length_scale` (the
//!    speaking rate: above 1 is slower) and `noise_w`.
//! 5. Resample its 22,050 Hz output to the call's rate.
//!
//! The loaded network is shared by all calls: one session per inference
//! thread of its own (`OnnxThreads`), so neither the media loop nor any
//! other runtime thread waits for a sentence or for a lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use media_core::{Resampler, SampleRate};
use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;

use super::{SynthFuture, Synthesizer, TtsError, normalize::normalize, phonemize::phonemize};
use crate::speech::inference::OnnxThreads;

/// Sentences that may wait for a Piper thread, all calls together; past
/// that a reply task waits for room (it is never the media loop).
const SENTENCE_QUEUE: usize = 64;

/// Inference settings (from the voice's config, overridable per agent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PiperScales {
    /// Variation in the voice (0.667 in most voices).
    pub noise_scale: f32,
    /// Speaking rate: 1.0 as trained, 1.2 is 20 % slower.
    pub length_scale: f32,
    /// Variation in phoneme length (0.8 in most voices).
    pub noise_w: f32,
}

#[derive(Debug, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    espeak: EspeakConfig,
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// A loaded Piper voice.
#[derive(Debug)]
pub struct PiperVoice {
    name: String,
    threads: OnnxThreads,
    ids: HashMap<char, Vec<i64>>,
    espeak_voice: String,
    rate: SampleRate,
    scales: PiperScales,
}

impl PiperVoice {
    /// Loads the voice `model` (`.onnx`, with `.onnx.json` beside it) on
    /// ONNX Runtime from `library`. `sessions` sentences can be synthesized
    /// at once (one inference thread each), each with `threads` intra-op
    /// threads.
    pub fn load(
        library: &Path,
        model: &Path,
        sessions: usize,
        threads: usize,
    ) -> Result<Arc<Self>, TtsError> {
        let config_path = PathBuf::from(format!("{}.json", model.display()));
        let text = std::fs::read_to_string(&config_path).map_err(|e| {
            TtsError::Voice(format!(
                "cannot read {}: {e} (run models/fetch.py)",
                config_path.display()
            ))
        })?;
        let config: VoiceConfig = serde_json::from_str(&text)
            .map_err(|e| TtsError::Voice(format!("{}: {e}", config_path.display())))?;
        let rate = SampleRate::new(config.audio.sample_rate).ok_or_else(|| {
            TtsError::Voice(format!("{}: bad sample rate", config_path.display()))
        })?;
        let ids = config
            .phoneme_id_map
            .into_iter()
            .filter_map(|(k, v)| {
                let mut chars = k.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some((c, v)),
                    _ => None,
                }
            })
            .collect::<HashMap<_, _>>();
        for needed in ['^', '_', '$'] {
            if !ids.contains_key(&needed) {
                return Err(TtsError::Voice(format!(
                    "{}: phoneme_id_map has no {needed:?}",
                    config_path.display()
                )));
            }
        }
        let threads =
            OnnxThreads::start(library, model, sessions, threads, SENTENCE_QUEUE, "piper")
                .map_err(|e| TtsError::Voice(e.to_string()))?;
        let name = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "piper".into());
        Ok(Arc::new(Self {
            name: format!("piper/{name}"),
            threads,
            ids,
            espeak_voice: config.espeak.voice,
            rate,
            scales: PiperScales {
                noise_scale: config.inference.noise_scale,
                length_scale: config.inference.length_scale,
                noise_w: config.inference.noise_w,
            },
        }))
    }

    /// The voice's own rate (22,050 Hz for medium voices).
    pub fn native_rate(&self) -> SampleRate {
        self.rate
    }

    /// The voice's default scales.
    pub fn default_scales(&self) -> PiperScales {
        self.scales
    }

    /// Phoneme ids for an IPA string.
    fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let pad = &self.ids[&'_'];
        let mut ids = self.ids[&'^'].clone();
        for c in phonemes.chars() {
            if let Some(id) = self.ids.get(&c) {
                ids.extend_from_slice(id);
                ids.extend_from_slice(pad);
            }
        }
        ids.extend_from_slice(&self.ids[&'$']);
        ids
    }

    /// Synthesizes one sentence's phonemes at `rate`, on the voice's
    /// inference threads.
    async fn synthesize(
        &self,
        phonemes: &str,
        rate: SampleRate,
        scales: PiperScales,
    ) -> Result<Vec<i16>, TtsError> {
        let ids = self.phoneme_ids(phonemes);
        if ids.len() <= 2 {
            return Ok(Vec::new());
        }
        let native = self.rate;
        self.threads
            .run(move |session| {
                let audio = infer(session, &ids, scales)?;
                Resampler::convert_all(native, rate, &audio)
                    .map_err(|e| TtsError::Synthesis(e.to_string()))
            })
            .await
            .map_err(|e| TtsError::Synthesis(e.to_string()))?
    }

    /// Sentences synthesized so far.
    pub fn synthesized(&self) -> u64 {
        self.threads.done()
    }
}

/// Runs the network on phoneme ids; audio at the voice's native rate.
fn infer(session: &mut Session, ids: &[i64], scales: PiperScales) -> Result<Vec<i16>, TtsError> {
    let lengths = [ids.len() as i64];
    let scales = [scales.noise_scale, scales.length_scale, scales.noise_w];
    let fail = |e: ort::Error| TtsError::Synthesis(e.to_string());
    let outputs = session
        .run(ort::inputs![
            "input" => TensorRef::from_array_view(([1usize, ids.len()], ids)).map_err(fail)?,
            "input_lengths" => TensorRef::from_array_view(([1usize], &lengths[..])).map_err(fail)?,
            "scales" => TensorRef::from_array_view(([3usize], &scales[..])).map_err(fail)?,
        ])
        .map_err(fail)?;
    let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
    Ok(audio
        .iter()
        .map(|&v| (v * 32_767.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect())
}

/// A Piper voice with per-agent scales, as a [`Synthesizer`].
#[derive(Debug, Clone)]
pub struct PiperSynthesizer {
    voice: Arc<PiperVoice>,
    scales: PiperScales,
}

impl PiperSynthesizer {
    /// `voice` at `length_scale` (speaking rate), other scales as the voice says.
    pub fn new(voice: Arc<PiperVoice>, length_scale: Option<f32>) -> Self {
        let mut scales = voice.default_scales();
        if let Some(l) = length_scale {
            scales.length_scale = l;
        }
        Self { voice, scales }
    }
}

impl Synthesizer for PiperSynthesizer {
    fn synthesize(&self, text: String, rate: SampleRate) -> SynthFuture {
        let voice = Arc::clone(&self.voice);
        let scales = self.scales;
        Box::pin(async move {
            let spoken = normalize(&text);
            if spoken.trim().is_empty() {
                return Ok(Vec::new());
            }
            let phonemes = phonemize(&voice.espeak_voice, &spoken).await?;
            voice.synthesize(&phonemes, rate, scales).await
        })
    }

    fn name(&self) -> &str {
        &self.voice.name
    }
}
