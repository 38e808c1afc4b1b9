//! The speech resources calls share: the VAD model, the transcriber, the
//! voice and the prompt cache.
//!
//! Loaded once at start-up, only when some agent listens; a model that is
//! missing stops the start with a message naming it, rather than failing
//! on the first call.
//!
//! # Layout
//! - [`onnx`]: the ONNX Runtime, loaded once from a shared library.
//! - `inference`: a model's own inference threads, reached by a bounded
//!   queue with oneshot replies.
//! - [`vad`]: Silero VAD on inference threads of its own.
//! - [`stt`]: speech to text: local Whisper on its own threads, or an
//!   OpenAI-compatible provider.
//! - [`turn`]: end-of-turn detection with Smart Turn v3 (log-mel features
//!   in Rust, the model on its own threads).
//! - [`tts`]: speech out: Piper on its own threads, an OpenAI-compatible
//!   provider, streaming by sentence.

mod inference;
pub mod onnx;
pub mod stt;
pub mod tts;
pub mod turn;
pub mod vad;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use media_core::{Ears, Endpointer, EnergyVad, EnergyVadConfig, SampleRate};

use crate::config::{AgentSpec, Config, SttConfig, TtsConfig, VadKind};
use stt::{HttpTranscriber, Transcriber, WhisperConfig, WhisperTranscriber};
use tts::{HttpSynthesizer, PiperSynthesizer, PiperVoice, PromptCache, Synthesizer, TtsError};
use turn::{TurnCheck, TurnModel};
use vad::{VadThreads, silero_shape};

/// Why the speech resources could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeechError {
    /// Silero VAD or ONNX Runtime.
    #[error(transparent)]
    Vad(#[from] self::onnx::OnnxError),
    /// Local Whisper.
    #[error(transparent)]
    Whisper(#[from] self::stt::WhisperStartError),
    /// The provider transcriber.
    #[error(transparent)]
    Http(#[from] self::stt::HttpStartError),
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

/// Threads of the end-of-turn model, all calls together: a check takes
/// about 28 ms of one core and comes once per pause, not per frame.
const TURN_THREADS: usize = 1;

/// Rates prompts are cached at: what `AudioSocket()`/`c(slin)` and
/// `c(slin16)` send.
const PROMPT_RATES: [SampleRate; 2] = [SampleRate::HZ_8000, SampleRate::HZ_16000];

/// Shared by every call that listens.
#[derive(Debug)]
pub struct Speech {
    /// Silero on its inference threads, when some agent uses it.
    silero: Option<Arc<VadThreads>>,
    /// The end-of-turn model on its threads, when some agent judges
    /// pauses with it (`turn = "smart"`).
    turn: Option<Arc<TurnModel>>,
    transcriber: Option<Arc<dyn Transcriber>>,
    /// Transcribers of voice agents with their own model or language, by
    /// agent name (agents with the same settings share one).
    agent_transcribers: BTreeMap<String, Arc<dyn Transcriber>>,
    piper: Option<Arc<PiperVoice>>,
    /// Piper voices of agents with their own, by file.
    agent_voices: BTreeMap<PathBuf, Arc<PiperVoice>>,
    http_tts: Option<Arc<dyn Synthesizer>>,
    /// Prompt caches by voice (`None`: the default voice): the same text
    /// in two voices is two recordings.
    caches: BTreeMap<Option<PathBuf>, Arc<PromptCache>>,
    max_wait: Duration,
}

/// The voice file an agent speaks with, if not the default.
fn own_voice(agent: &AgentSpec) -> Option<PathBuf> {
    match agent {
        AgentSpec::Voice(v) => v.tts_voice.clone(),
        _ => None,
    }
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
            Some(VadThreads::start(
                &s.onnxruntime,
                &s.silero_model(),
                s.vad_sessions,
            )?)
        } else {
            None
        };
        let turn = if agents.iter().any(|a| a.smart_turn().is_some()) {
            Some(Arc::new(TurnModel::load(
                &s.onnxruntime,
                &s.turn_model(),
                TURN_THREADS,
            )?))
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
        // Agents with a Whisper model or language of their own: one
        // transcriber per distinct setting.
        let mut agent_transcribers: BTreeMap<String, Arc<dyn Transcriber>> = BTreeMap::new();
        let mut by_setting: Vec<(WhisperConfig, Arc<dyn Transcriber>)> = Vec::new();
        for agent in &agents {
            let AgentSpec::Voice(v) = agent else {
                continue;
            };
            let Some(w) = &v.stt else {
                continue;
            };
            let t = match by_setting.iter().find(|(c, _)| c == w) {
                Some((_, t)) => Arc::clone(t),
                None => {
                    let t: Arc<dyn Transcriber> = Arc::new(WhisperTranscriber::start(w.clone())?);
                    by_setting.push((w.clone(), Arc::clone(&t)));
                    t
                }
            };
            agent_transcribers.insert(v.name.clone(), t);
        }
        let mut agent_voices = BTreeMap::new();
        if let TtsConfig::Piper {
            sessions, threads, ..
        } = &s.tts
        {
            for path in agents.iter().filter_map(|a| own_voice(a)) {
                if let std::collections::btree_map::Entry::Vacant(e) = agent_voices.entry(path) {
                    let voice = PiperVoice::load(&s.onnxruntime, e.key(), *sessions, *threads)?;
                    e.insert(voice);
                }
            }
        }
        let mut speech = Speech {
            silero,
            turn,
            transcriber,
            agent_transcribers,
            piper,
            agent_voices,
            http_tts,
            caches: BTreeMap::new(),
            max_wait: s.tts_max_wait,
        };
        // Fixed texts are synthesized once, now, not on every call: the
        // configured prompts (keyed by name and by their text) in each
        // voice, every say agent's text and every voice agent's phrases.
        let mut caches: BTreeMap<Option<PathBuf>, PromptCache> = BTreeMap::new();
        for agent in agents.iter().filter(|a| a.speaks()) {
            let key = own_voice(agent);
            if caches.contains_key(&key) {
                continue;
            }
            let mut cache = PromptCache::default();
            if let Some(synth) = speech.synthesizer(agent)
                && !s.prompts.is_empty()
            {
                let mut named: Vec<(String, String)> = Vec::new();
                for (name, text) in &s.prompts {
                    named.push((name.clone(), text.clone()));
                    named.push((text.clone(), text.clone()));
                }
                cache.extend(PromptCache::build(synth.as_ref(), &named, &PROMPT_RATES).await?);
            }
            caches.insert(key, cache);
        }
        for agent in &agents {
            let Some(synth) = speech.synthesizer(agent) else {
                continue;
            };
            let cache = caches.entry(own_voice(agent)).or_default();
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
        let prompts: usize = caches.values().map(PromptCache::len).sum();
        speech.caches = caches.into_iter().map(|(k, c)| (k, Arc::new(c))).collect();
        tracing::info!(
            stt = speech.transcriber.as_ref().map(|t| t.name().to_string()),
            agent_stt = speech.agent_transcribers.len(),
            agent_voices = speech.agent_voices.len(),
            silero = speech.silero.is_some(),
            turn_model = speech.turn.is_some(),
            prompts,
            "speech loaded"
        );
        Ok(Some(Arc::new(speech)))
    }

    /// The transcriber, when some agent listens.
    pub fn transcriber(&self) -> Option<&Arc<dyn Transcriber>> {
        self.transcriber.as_ref()
    }

    /// The transcriber for `agent`: its own model or language, else `[stt]`'s.
    pub fn transcriber_for(&self, agent: &AgentSpec) -> Option<Arc<dyn Transcriber>> {
        self.agent_transcribers
            .get(agent.name())
            .or(self.transcriber.as_ref())
            .cloned()
    }

    /// The synthesizer for `agent` (with its speaking rate), if it speaks.
    fn synthesizer(&self, agent: &AgentSpec) -> Option<Arc<dyn Synthesizer>> {
        let length_scale = match agent {
            AgentSpec::Say { length_scale, .. } => length_scale,
            AgentSpec::Voice(v) => &v.length_scale,
            _ => return None,
        };
        let voice = match own_voice(agent) {
            Some(path) => self.agent_voices.get(&path),
            None => self.piper.as_ref(),
        };
        match (voice, &self.http_tts) {
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
            cache: self
                .caches
                .get(&own_voice(agent))
                .cloned()
                .unwrap_or_default(),
            max_wait: self.max_wait,
        })
    }

    /// Turn detection for a call of `agent`, if it listens. With Silero,
    /// the endpointer hands its windows out to the VAD threads (see
    /// [`vad_threads`](Self::vad_threads)).
    pub fn ears(&self, agent: &AgentSpec) -> Option<Ears> {
        let (vad, endpoint) = agent.ears()?;
        match (vad, &self.silero) {
            (VadKind::Silero, Some(_)) => Some(Ears(Box::new(move |rate| {
                let (rate, window) = silero_shape(rate);
                Endpointer::scored_elsewhere(endpoint, rate, window)
            }))),
            _ => Some(Ears(Box::new(move |rate| {
                Endpointer::new(
                    endpoint,
                    Box::new(EnergyVad::new(rate, EnergyVadConfig::default())),
                )
            }))),
        }
    }

    /// How a call of `agent` judges its pauses, if with the end-of-turn
    /// model (`turn = "smart"`).
    pub fn turn_check(&self, agent: &AgentSpec) -> Option<TurnCheck> {
        Some(TurnCheck {
            config: agent.smart_turn()?,
            model: Arc::clone(self.turn.as_ref()?),
        })
    }

    /// The VAD threads a call of `agent` scores its windows on, if it
    /// listens with Silero.
    pub fn vad_threads(&self, agent: &AgentSpec) -> Option<Arc<VadThreads>> {
        match agent.ears()? {
            (VadKind::Silero, _) => self.silero.clone(),
            _ => None,
        }
    }
}
