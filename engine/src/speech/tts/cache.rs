//! Fixed phrases synthesized once at start-up and reused.
//!
//! The greeting, the hold message and the goodbye are the same on every
//! call; synthesizing them per call would cost hundreds of milliseconds of
//! CPU each time and delay the first word of every call.

use std::collections::HashMap;
use std::sync::Arc;

use media_core::SampleRate;

use super::{Synthesizer, TtsError};

/// Prompt name and rate -> audio.
#[derive(Debug, Default, Clone)]
pub struct PromptCache {
    audio: HashMap<(String, SampleRate), Arc<[i16]>>,
}

impl PromptCache {
    /// Synthesizes every `(name, text)` at every rate.
    pub async fn build(
        synth: &dyn Synthesizer,
        prompts: &[(String, String)],
        rates: &[SampleRate],
    ) -> Result<Self, TtsError> {
        let mut audio = HashMap::new();
        for (name, text) in prompts {
            for &rate in rates {
                let samples = synth.synthesize(text.clone(), rate).await?;
                audio.insert((name.clone(), rate), Arc::from(samples));
            }
        }
        Ok(Self { audio })
    }

    /// The cached audio of `name` at `rate`.
    pub fn get(&self, name: &str, rate: SampleRate) -> Option<Arc<[i16]>> {
        self.audio.get(&(name.to_string(), rate)).cloned()
    }

    /// Adds every entry of `other`.
    pub fn extend(&mut self, other: PromptCache) {
        self.audio.extend(other.audio);
    }

    /// How many (prompt, rate) entries are cached.
    pub fn len(&self) -> usize {
        self.audio.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.audio.is_empty()
    }
}
