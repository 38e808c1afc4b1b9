//! `[speech]`, `[stt]` and `[tts]`: where the models are and which engines
//! turn speech into text and back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use media_core::SampleRate;

use super::raw::RawConfig;
use super::{ConfigError, invalid, providers::read_key};
use crate::speech::stt::{HttpTranscriberConfig, WhisperConfig};
use crate::speech::tts::HttpSynthesizerConfig;

/// Where the models are and how speech is recognised.
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// The folder `models/fetch.py` fills.
    pub models_dir: PathBuf,
    /// The ONNX Runtime shared library.
    pub onnxruntime: PathBuf,
    /// Silero inference threads (one ONNX Runtime session each), shared by all calls.
    pub vad_sessions: usize,
    /// The speech-to-text engine.
    pub stt: SttConfig,
    /// The text-to-speech engine.
    pub tts: TtsConfig,
    /// Longest wait before a reply's text without a sentence end is spoken.
    pub tts_max_wait: Duration,
    /// Fixed phrases (greeting, hold, goodbye, ...) synthesized at start-up.
    pub prompts: BTreeMap<String, String>,
}

/// Which text-to-speech engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TtsConfig {
    /// A local Piper voice.
    Piper {
        /// The voice's `.onnx` (its `.onnx.json` beside it).
        voice: PathBuf,
        /// Piper inference threads, one session each: sentences synthesized at once.
        sessions: usize,
        /// Threads per sentence.
        threads: usize,
    },
    /// An OpenAI-compatible `/v1/audio/speech` server.
    Http(HttpSynthesizerConfig),
}

impl SpeechConfig {
    /// The Silero VAD model file.
    pub fn silero_model(&self) -> PathBuf {
        self.models_dir.join("silero/silero_vad.onnx")
    }

    /// The Smart Turn end-of-turn model file.
    pub fn turn_model(&self) -> PathBuf {
        self.models_dir.join("smart-turn/smart-turn-v3.2-cpu.onnx")
    }
}

/// Which speech-to-text engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SttConfig {
    /// Local Whisper.
    Whisper(WhisperConfig),
    /// An OpenAI-compatible `/v1/audio/transcriptions` server.
    Http(HttpTranscriberConfig),
}

/// Which voice activity detector an agent listens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadKind {
    /// Silero VAD (the model from models/).
    Silero,
    /// Energy above the noise floor, tones rejected: no model needed.
    Energy,
}

impl RawConfig {
    pub(super) fn speech_config(&self, base: &Path) -> Result<SpeechConfig, ConfigError> {
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let models_dir = resolve(self.speech.models_dir.as_deref().unwrap_or("models"));
        let onnxruntime = match (&self.speech.onnxruntime, std::env::var_os("ORT_DYLIB_PATH")) {
            (Some(p), _) => resolve(p),
            (None, Some(env)) => PathBuf::from(env),
            (None, None) => models_dir.join("onnxruntime/libonnxruntime.so.1.31.1"),
        };
        let vad_sessions = match self.speech.vad_sessions {
            None => 2,
            Some(n @ 1..=64) => n as usize,
            Some(n) => {
                return Err(invalid(
                    "speech.vad_sessions",
                    format!("{n} is out of range: use 1 to 64"),
                ));
            }
        };
        let t = &self.stt;
        let range = |v: Option<u64>, key: &str, min: u64, max: u64, default: u64| match v {
            None => Ok(default),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(v) => Err(invalid(
                format!("stt.{key}"),
                format!("{v} is out of range: use {min} to {max}"),
            )),
        };
        let language = match t.language.as_deref() {
            None => Some("en".to_string()),
            Some("auto") => None,
            Some(l) if l.len() == 2 && l.chars().all(|c| c.is_ascii_lowercase()) => {
                Some(l.to_string())
            }
            Some(l) => {
                return Err(invalid(
                    "stt.language",
                    format!("{l:?} is not a two-letter language code (e.g. \"en\") or \"auto\""),
                ));
            }
        };
        let stt = match t.engine.as_deref() {
            None | Some("whisper") => {
                let model = t.model.clone().unwrap_or_else(|| "tiny.en".to_string());
                if !["tiny.en", "base"].contains(&model.as_str()) {
                    return Err(invalid(
                        "stt.model",
                        format!(
                            "{model:?} is not a Whisper model models/fetch.py provides: use \"tiny.en\" or \"base\""
                        ),
                    ));
                }
                if model.ends_with(".en") && language.as_deref() != Some("en") {
                    return Err(invalid(
                        "stt.language",
                        format!(
                            "{model} understands English only: set language = \"en\" or use model = \"base\""
                        ),
                    ));
                }
                SttConfig::Whisper(WhisperConfig {
                    model: models_dir.join(format!("whisper/ggml-{model}.bin")),
                    name: model,
                    language,
                    threads: range(t.threads, "threads", 1, 64, 2)? as usize,
                    workers: range(t.workers, "workers", 1, 64, 1)? as usize,
                    queue: range(t.queue, "queue", 1, 10_000, 16)? as usize,
                    fit_window: t.fit_window.unwrap_or(true),
                })
            }
            Some("http") => {
                let Some(url) = t.url.clone() else {
                    return Err(invalid(
                        "stt.url",
                        "engine = \"http\" needs url, e.g. \"http://127.0.0.1:8080/v1\"",
                    ));
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid("stt.url", format!("{url:?} is not an http(s) URL")));
                }
                let api_key = read_key("stt", &t.api_key_env, &t.api_key_file, base)?;
                SttConfig::Http(HttpTranscriberConfig {
                    base_url: url,
                    model: t
                        .http_model
                        .clone()
                        .unwrap_or_else(|| "whisper-1".to_string()),
                    language,
                    api_key,
                    timeout: Duration::from_millis(range(
                        t.timeout_ms,
                        "timeout_ms",
                        100,
                        120_000,
                        10_000,
                    )?),
                    max_in_flight: range(t.max_in_flight, "max_in_flight", 1, 1_000, 4)? as usize,
                })
            }
            Some(other) => {
                return Err(invalid(
                    "stt.engine",
                    format!("{other:?} is not an STT engine: use \"whisper\" or \"http\""),
                ));
            }
        };
        let tt = &self.tts;
        let trange = |v: Option<u64>, key: &str, min: u64, max: u64, default: u64| match v {
            None => Ok(default),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(v) => Err(invalid(
                format!("tts.{key}"),
                format!("{v} is out of range: use {min} to {max}"),
            )),
        };
        let tts_max_wait =
            Duration::from_millis(trange(tt.max_wait_ms, "max_wait_ms", 50, 5_000, 300)?);
        let tts = match tt.engine.as_deref() {
            None | Some("piper") => TtsConfig::Piper {
                voice: tt
                    .voice
                    .as_deref()
                    .map(resolve)
                    .unwrap_or_else(|| models_dir.join("piper/en_US-joe-medium.onnx")),
                sessions: trange(tt.sessions, "sessions", 1, 16, 1)? as usize,
                threads: trange(tt.threads, "threads", 1, 64, 2)? as usize,
            },
            Some("http") => {
                let Some(url) = tt.url.clone() else {
                    return Err(invalid(
                        "tts.url",
                        "engine = \"http\" needs url, e.g. \"http://127.0.0.1:8880/v1\"",
                    ));
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid("tts.url", format!("{url:?} is not an http(s) URL")));
                }
                let api_key = read_key("tts", &tt.api_key_env, &tt.api_key_file, base)?;
                let speed = tt.speed.unwrap_or(1.0);
                if !(0.25..=4.0).contains(&speed) {
                    return Err(invalid(
                        "tts.speed",
                        format!("{speed} is out of range: use 0.25 to 4.0"),
                    ));
                }
                let pcm_rate =
                    u32::try_from(trange(tt.pcm_rate, "pcm_rate", 8_000, 48_000, 24_000)?)
                        .ok()
                        .and_then(SampleRate::new)
                        .ok_or_else(|| invalid("tts.pcm_rate", "not a sample rate"))?;
                TtsConfig::Http(HttpSynthesizerConfig {
                    base_url: url,
                    model: tt.model.clone().unwrap_or_else(|| "tts-1".into()),
                    voice: tt.http_voice.clone().unwrap_or_else(|| "alloy".into()),
                    speed,
                    pcm_rate,
                    api_key,
                    timeout: Duration::from_millis(trange(
                        tt.timeout_ms,
                        "timeout_ms",
                        100,
                        120_000,
                        10_000,
                    )?),
                })
            }
            Some(other) => {
                return Err(invalid(
                    "tts.engine",
                    format!("{other:?} is not a TTS engine: use \"piper\" or \"http\""),
                ));
            }
        };
        for (name, text) in &tt.prompts {
            if text.trim().is_empty() || text.len() > 2_000 {
                return Err(invalid(
                    format!("tts.prompts.{name}"),
                    "must hold 1 to 2,000 characters",
                ));
            }
        }
        Ok(SpeechConfig {
            models_dir,
            onnxruntime,
            vad_sessions,
            stt,
            tts,
            tts_max_wait,
            prompts: tt.prompts.clone(),
        })
    }
}
