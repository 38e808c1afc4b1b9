//! The speech resources calls share: the VAD model and the transcriber.
//!
//! Loaded once at start-up, only when some agent listens; a model that is
//! missing stops the start with a message naming it, rather than failing
//! on the first call.

use std::sync::Arc;

use media_core::{Ears, Endpointer, EnergyVad, EnergyVadConfig};

use crate::config::{AgentSpec, Config, SttConfig, VadKind};
use crate::stt::{HttpTranscriber, Transcriber, WhisperTranscriber};
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
}

/// Shared by every call that listens.
#[derive(Debug)]
pub struct Speech {
    silero: Option<Arc<SileroModel>>,
    transcriber: Arc<dyn Transcriber>,
}

impl Speech {
    /// Loads what the configured agents need; `None` when no agent listens.
    /// Call inside a tokio runtime (the HTTP transcriber spawns on it).
    pub fn load(config: &Config) -> Result<Option<Arc<Speech>>, SpeechError> {
        let listening: Vec<&AgentSpec> = config
            .listeners
            .iter()
            .map(|l| &l.agent)
            .filter(|a| a.listens())
            .collect();
        if listening.is_empty() {
            return Ok(None);
        }
        let s = &config.speech;
        let needs_silero = listening.iter().any(|a| {
            matches!(
                a,
                AgentSpec::Transcribe {
                    vad: VadKind::Silero,
                    ..
                }
            )
        });
        let silero = if needs_silero {
            Some(SileroModel::load(
                &s.onnxruntime,
                &s.silero_model(),
                s.vad_sessions,
            )?)
        } else {
            None
        };
        let transcriber: Arc<dyn Transcriber> = match &s.stt {
            SttConfig::Whisper(w) => Arc::new(WhisperTranscriber::start(w.clone())?),
            SttConfig::Http(h) => Arc::new(HttpTranscriber::new(h.clone())?),
        };
        tracing::info!(
            stt = transcriber.name(),
            silero = silero.is_some(),
            "speech loaded"
        );
        Ok(Some(Arc::new(Speech {
            silero,
            transcriber,
        })))
    }

    /// The transcriber.
    pub fn transcriber(&self) -> &Arc<dyn Transcriber> {
        &self.transcriber
    }

    /// Turn detection for a call of `agent`, if it listens.
    pub fn ears(&self, agent: &AgentSpec) -> Option<Ears> {
        let AgentSpec::Transcribe { vad, endpoint, .. } = agent else {
            return None;
        };
        let endpoint = *endpoint;
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
