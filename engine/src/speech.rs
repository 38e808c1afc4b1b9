//! The speech resources calls share: the VAD model, the transcriber, the
//! voice and the prompt cache.
//!
//! Loaded once at start-up, only when some agent listens; a model that is
//! missing stops the start with a message naming it, rather than failing
//! on the first call.

use std::sync::Arc;

use std::time::Duration;

use media_core::{Ears, Endpointer, EnergyVad, EnergyVadConfig, SampleRate};

use crate::config::{AgentSpec, Config, SttConfig, TtsConfig, VadKind};
use crate::stt::{HttpTranscriber, Transcriber, WhisperTranscriber};
use crate::tts::{
    HttpSynthesizer, PiperSynthesizer, PiperVoice, PromptCache, Synthesizer, TtsError,
};
use crate::vad::SileroModel;

/// Why the speech resources could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeechError {
    /// Silero VAD or ONNX Runtime.
    #[error(transparent)]
    Vad(#[from] crate::onnx::OnnxError),
    /// Local Whisper.
    #[error(transparent)]
    Whisper(#[from] crate::stt::WhisperStartError),
    /// The provider transcriber.
    #[error(transparent)]
    Http(#[from] crate::stt::HttpStartError),
    /// The voice, or a prompt it could not say.
    #[error(transparent)]
    Tts(#[from] TtsError),
}

/// How a speaking call talks: its synthesizer and the cached prompts.
#[derive(Debug, Clone)]
pub struct Mouth {
    /// The agent's voice and speaking rate.
    pub synth: Arc<dyn Synthesizer>,
    /// Fixed texts synthesized at start-up, keyed by their text.
    pub cache: Arc<PromptCache>,
    /// Longest wait for a sentence end before speaking anyway.
    pub max_wait: Duration,
}

/// Rates prompts are cached at: what `AudioSocket()`/`c(slin)` and
/// `c(slin16)` send.
const PROMPT_RATES: [SampleRate; 2] = [SampleRate::HZ_8000, SampleRate::HZ_16000];

/// Shared by every call that listens.
#[derive(Debug)]
pub struct Speech {
    silero: Option<Arc<SileroModel>>,
    transcriber: Option<Arc<dyn Transcriber>>,
    piper: Option<Arc<PiperVoice>>,
    http_tts: Option<Arc<dyn Synthesizer>>,
    cache: Arc<PromptCache>,
    max_wait: Duration,
}

impl Speech {
    /// Loads what the configured agents need; `None` when no agent listens
    /// or speaks. Call inside a tokio runtime (HTTP clients spawn on it).
    pub async fn load(config: &Config) -> Result<Option<Arc<Speech>>, SpeechError> {
        let agents: Vec<&AgentSpec> = config.listeners.iter().map(|l| &l.agent).collect();
        let listens = agents.iter().any(|a| a.listens());
        let speaks = agents.iter().any(|a| a.speaks());
        if !listens && !speaks {
            return Ok(None);
        }
        let s = &config.speech;
        let needs_silero = agents
            .iter()
            .any(|a| matches!(a.ears(), Some((VadKind::Silero, _))));
        let silero = if needs_silero {
            Some(SileroModel::load(
                &s.onnxruntime,
                &s.silero_model(),
                s.vad_sessions,
            )?)
        } else {
            None
        };
        let transcriber: Option<Arc<dyn Transcriber>> = match (&s.stt, listens) {
            (_, false) => None,
            (SttConfig::Whisper(w), true) => Some(Arc::new(WhisperTranscriber::start(w.clone())?)),
            (SttConfig::Http(h), true) => Some(Arc::new(HttpTranscriber::new(h.clone())?)),
        };
        let (piper, http_tts): (Option<Arc<PiperVoice>>, Option<Arc<dyn Synthesizer>>) =
            match (&s.tts, speaks) {
                (_, false) => (None, None),
                (
                    TtsConfig::Piper {
                        voice,
                        sessions,
                        threads,
                    },
                    true,
                ) => (
                    Some(PiperVoice::load(
                        &s.onnxruntime,
                        voice,
                        *sessions,
                        *threads,
                    )?),
                    None,
                ),
                (TtsConfig::Http(h), true) => {
                    (None, Some(Arc::new(HttpSynthesizer::new(h.clone())?)))
                }
            };
        let mut speech = Speech {
            silero,
            transcriber,
            piper,
            http_tts,
            cache: Arc::new(PromptCache::default()),
            max_wait: s.tts_max_wait,
        };
        // Fixed texts are synthesized once, now, not on every call: the
        // configured prompts (keyed by name and by their text) and every
        // say agent's text.
        let mut cache = PromptCache::default();
        if let Some(agent) = agents.iter().find(|a| a.speaks())
            && let Some(synth) = speech.synthesizer(agent)
            && !s.prompts.is_empty()
        {
            let mut named: Vec<(String, String)> = Vec::new();
            for (name, text) in &s.prompts {
                named.push((name.clone(), text.clone()));
                named.push((text.clone(), text.clone()));
            }
            cache.extend(PromptCache::build(synth.as_ref(), &named, &PROMPT_RATES).await?);
        }
        for agent in &agents {
            let Some(synth) = speech.synthesizer(agent) else {
                continue;
            };
            let texts: Vec<String> = match agent {
                AgentSpec::Say { text, .. } => vec![text.clone()],
                // A voice's fixed phrases: every call may need them at once.
                AgentSpec::Voice(v) => {
                    let c = &v.conversation;
                    let mut t = vec![
                        c.reprompt.clone(),
                        c.silence_goodbye.clone(),
                        c.goodbye.clone(),
                        c.apology.clone(),
                        c.time_up.clone(),
                    ];
                    t.extend(c.greeting.clone());
                    t.extend(c.handoff.as_ref().map(|h| h.phrase.clone()));
                    t
                }
                _ => Vec::new(),
            };
            let named: Vec<(String, String)> = texts
                .into_iter()
                .filter(|t| cache.get(t, SampleRate::HZ_8000).is_none())
                .map(|t| (t.clone(), t))
                .collect();
            if !named.is_empty() {
                cache.extend(PromptCache::build(synth.as_ref(), &named, &PROMPT_RATES).await?);
            }
        }
        speech.cache = Arc::new(cache);
        tracing::info!(
            stt = speech.transcriber.as_ref().map(|t| t.name().to_string()),
            silero = speech.silero.is_some(),
            prompts = speech.cache.len(),
            "speech loaded"
        );
        Ok(Some(Arc::new(speech)))
    }

    /// The transcriber, when some agent listens.
    pub fn transcriber(&self) -> Option<&Arc<dyn Transcriber>> {
        self.transcriber.as_ref()
    }

    /// The synthesizer for `agent` (with its speaking rate), if it speaks.
    fn synthesizer(&self, agent: &AgentSpec) -> Option<Arc<dyn Synthesizer>> {
        let length_scale = match agent {
            AgentSpec::Say { length_scale, .. } => length_scale,
            AgentSpec::Voice(v) => &v.length_scale,
            _ => return None,
        };
        match (&self.piper, &self.http_tts) {
            (Some(voice), _) => Some(Arc::new(PiperSynthesizer::new(
                Arc::clone(voice),
                *length_scale,
            ))),
            (None, Some(http)) => Some(Arc::clone(http)),
            (None, None) => None,
        }
    }

    /// How a call of `agent` speaks, if it does.
    pub fn mouth(&self, agent: &AgentSpec) -> Option<Mouth> {
        Some(Mouth {
            synth: self.synthesizer(agent)?,
            cache: Arc::clone(&self.cache),
            max_wait: self.max_wait,
        })
    }

    /// Turn detection for a call of `agent`, if it listens.
    pub fn ears(&self, agent: &AgentSpec) -> Option<Ears> {
        let (vad, endpoint) = agent.ears()?;
        match (vad, &self.silero) {
            (VadKind::Silero, Some(model)) => {
                let model = Arc::clone(model);
                Some(Ears(Box::new(move |rate| {
                    Endpointer::new(endpoint, Box::new(model.detector(rate)))
                })))
            }
            _ => Some(Ears(Box::new(move |rate| {
                Endpointer::new(
                    endpoint,
                    Box::new(EnergyVad::new(rate, EnergyVadConfig::default())),
                )
            }))),
        }
    }
}
