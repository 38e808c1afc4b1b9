//! Local Whisper through whisper-rs (whisper.cpp).
//!
//! The model is loaded once and shared read-only by `workers` threads, each
//! with its own decoder state, fed by a bounded [`JobQueue`].
//!
//! Latency versus accuracy: whisper.cpp encodes a fixed 30 s window by
//! default, so a 2 s turn costs as much as a 30 s one. Sizing the encoder
//! window to the turn (`audio_ctx`, 50 units per second) is several times
//! faster but can send the decoder into repetition loops. So with
//! `fit_window` on, a turn is first decoded with a window fitted to it and an
//! output cap of a few tokens per second of audio. If that result repeats
//! itself, hits the cap, or is empty on a long turn, the turn is decoded again
//! with the full window. The benches measure both latency and word error
//! rate with and without it.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use media_core::{Resampler, SampleRate};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::queue::{JobQueue, Pushed, Queued};
use super::{SttError, SttRequest, SubmitError, Transcriber, Transcript, is_hallucination};

/// Whisper's input rate.
const WHISPER_RATE: SampleRate = SampleRate::HZ_16000;

/// Settings for [`WhisperTranscriber`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperConfig {
    /// The ggml model file.
    pub model: PathBuf,
    /// Its short name for logs, e.g. `tiny.en`.
    pub name: String,
    /// Spoken language (`"en"`), or `None` to detect it per turn.
    pub language: Option<String>,
    /// Threads per worker.
    pub threads: usize,
    /// Worker threads (turns transcribed at once).
    pub workers: usize,
    /// Turns that may wait.
    pub queue: usize,
    /// Try an encoder window fitted to the turn first (see the module docs).
    pub fit_window: bool,
}

/// Why Whisper could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WhisperStartError {
    /// The model file is missing or not a ggml Whisper model.
    #[error("cannot load the Whisper model {path}: {reason} (run models/fetch.py)")]
    Model {
        /// The model file.
        path: PathBuf,
        /// whisper.cpp's reason.
        reason: String,
    },
    /// A worker thread could not be started.
    #[error("cannot start a Whisper worker: {0}")]
    Thread(String),
}

struct Job {
    turn: media_core::Turn,
    reply: tokio::sync::oneshot::Sender<Result<Transcript, SttError>>,
}

/// Local Whisper on a fixed pool of worker threads.
pub struct WhisperTranscriber {
    queue: Arc<JobQueue<Job>>,
    workers: Vec<JoinHandle<()>>,
    name: String,
}

impl std::fmt::Debug for WhisperTranscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperTranscriber")
            .field("name", &self.name)
            .field("workers", &self.workers.len())
            .field("waiting", &self.queue.len())
            .finish()
    }
}

impl WhisperTranscriber {
    /// Loads the model and starts the workers.
    pub fn start(config: WhisperConfig) -> Result<Self, WhisperStartError> {
        // whisper.cpp logs every tensor to stderr otherwise.
        whisper_rs::install_logging_hooks();
        let fail = |reason: String| WhisperStartError::Model {
            path: config.model.clone(),
            reason,
        };
        if !config.model.exists() {
            return Err(fail("no such file".into()));
        }
        let ctx =
            WhisperContext::new_with_params(&config.model, WhisperContextParameters::default())
                .map_err(|e| fail(e.to_string()))?;
        // Each worker's state holds the shared model alive.
        let queue = Arc::new(JobQueue::new(config.queue));
        let name = format!("whisper/{}", config.name);
        let mut workers = Vec::with_capacity(config.workers.max(1));
        for i in 0..config.workers.max(1) {
            let state = ctx.create_state().map_err(|e| fail(e.to_string()))?;
            let worker = Worker {
                state,
                config: config.clone(),
                name: name.clone(),
                resampler: None,
                pcm: Vec::new(),
            };
            let queue = Arc::clone(&queue);
            let handle = std::thread::Builder::new()
                .name(format!("whisper-{i}"))
                .spawn(move || worker.run(&queue))
                .map_err(|e| WhisperStartError::Thread(e.to_string()))?;
            workers.push(handle);
        }
        Ok(Self {
            queue,
            workers,
            name,
        })
    }

    /// Turns waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }
}

impl Transcriber for WhisperTranscriber {
    fn submit(&self, request: SttRequest) -> Result<(), SubmitError> {
        let job = Job {
            turn: request.turn,
            reply: request.reply,
        };
        match self.queue.push(request.call, job) {
            Ok(Pushed::Queued) => Ok(()),
            Ok(Pushed::Superseded(old)) => {
                let _ = old.reply.send(Err(SttError::Superseded));
                Ok(())
            }
            Err((e, _job)) => Err(e),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for WhisperTranscriber {
    fn drop(&mut self) {
        for job in self.queue.stop() {
            let _ = job.reply.send(Err(SttError::Stopped));
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

struct Worker {
    state: WhisperState,
    config: WhisperConfig,
    name: String,
    resampler: Option<Resampler>,
    pcm: Vec<f32>,
}

/// One decoding's result.
#[derive(Debug, Default)]
struct Decoded {
    text: String,
    confidence: f32,
    no_speech: f32,
    tokens: usize,
}

impl Worker {
    fn run(mut self, queue: &JobQueue<Job>) {
        while let Some(Queued { since, job, .. }) = queue.pop() {
            if job.reply.is_closed() {
                // Nobody waits for it (a preview the caller talked past).
                continue;
            }
            let queued = since.elapsed();
            let started = Instant::now();
            let result = self
                .transcribe(&job.turn)
                .map(|(text, confidence)| Transcript {
                    text,
                    confidence,
                    audio: job.turn.duration(),
                    queued,
                    processing: started.elapsed(),
                    engine: self.name.clone(),
                });
            let _ = job.reply.send(result);
        }
    }

    /// Text and confidence of a turn.
    fn transcribe(&mut self, turn: &media_core::Turn) -> Result<(String, f32), SttError> {
        self.prepare(turn)?;
        let secs = self.pcm.len() as f32 / WHISPER_RATE.hz() as f32;
        let decoded = if self.config.fit_window {
            // 50 encoder units per second of audio, with headroom, in steps
            // of 64; the decoder may write ~5 tokens per second of speech.
            let ctx = (((secs * 50.0) as i32 + 128 + 63) / 64 * 64).min(1500);
            let cap = (secs * 6.0) as i32 + 10;
            let mut fast = self.decode(ctx, cap)?;
            if looks_broken(&fast, secs, cap)
                && let Some(text) = loop_cut(&fast.text)
                && text.split_whitespace().count() as f32 >= secs / 2.0
            {
                // The decoder looped over a phrase it had heard right:
                // keep one copy rather than pay for the full window.
                tracing::debug!(looped = %fast.text, kept = %text, "fitted window looped: kept the first pass");
                fast.text = text;
                // It hit the token cap only by looping.
                fast.tokens = 0;
            }
            if looks_broken(&fast, secs, cap) {
                tracing::debug!(text = %fast.text, "fitted window failed: decoding with the full window");
                self.decode(0, 0)?
            } else {
                fast
            }
        } else {
            self.decode(0, 0)?
        };
        if is_hallucination(&decoded.text, decoded.confidence, decoded.no_speech) {
            return Err(SttError::NoSpeech);
        }
        Ok((decoded.text.trim().to_string(), decoded.confidence))
    }

    /// Turn audio -> 16 kHz f32 in `self.pcm`.
    fn prepare(&mut self, turn: &media_core::Turn) -> Result<(), SttError> {
        self.pcm.clear();
        if turn.rate == WHISPER_RATE {
            self.pcm
                .extend(turn.samples.iter().map(|&s| f32::from(s) / 32_768.0));
            return Ok(());
        }
        let needs_new = self
            .resampler
            .as_ref()
            .is_none_or(|r| r.from_rate() != turn.rate);
        if needs_new {
            self.resampler = Some(
                Resampler::new(turn.rate, WHISPER_RATE)
                    .map_err(|e| SttError::Failed(e.to_string()))?,
            );
        }
        let r = self
            .resampler
            .as_mut()
            .expect("set just above when missing");
        let mut out = Vec::with_capacity(turn.samples.len() * 2 + 64);
        r.process(&turn.samples, &mut out)
            .and_then(|()| r.finish(&mut out))
            .map_err(|e| SttError::Failed(e.to_string()))?;
        // A fresh stream for the next turn.
        self.resampler = None;
        self.pcm
            .extend(out.iter().map(|&s| f32::from(s) / 32_768.0));
        Ok(())
    }

    /// One whisper.cpp decode. `audio_ctx` 0 = the full 30 s window; `max_tokens` 0 = no cap.
    fn decode(&mut self, audio_ctx: i32, max_tokens: i32) -> Result<Decoded, SttError> {
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.config.threads.max(1) as i32);
        params.set_language(Some(self.config.language.as_deref().unwrap_or("auto")));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_no_timestamps(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_temperature(0.0);
        params.set_audio_ctx(audio_ctx);
        params.set_max_tokens(max_tokens);
        // Whisper needs at least 1 s of input; pad short turns with silence.
        let min = WHISPER_RATE.hz() as usize + WHISPER_RATE.hz() as usize / 10;
        if self.pcm.len() < min {
            self.pcm.resize(min, 0.0);
        }
        self.state
            .full(params, &self.pcm)
            .map_err(|e| SttError::Failed(e.to_string()))?;
        let mut out = Decoded::default();
        let mut prob_sum = 0.0f32;
        for (i, segment) in self.state.as_iter().enumerate() {
            if i == 0 {
                out.no_speech = segment.no_speech_probability();
            }
            if let Ok(text) = segment.to_str_lossy() {
                out.text.push_str(&text);
            }
            for t in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(t) else {
                    continue;
                };
                let special = token
                    .to_str_lossy()
                    .map(|s| s.starts_with("[_") || s.starts_with("<|"))
                    .unwrap_or(true);
                if !special {
                    prob_sum += token.token_probability();
                    out.tokens += 1;
                }
            }
        }
        out.confidence = if out.tokens > 0 {
            prob_sum / out.tokens as f32
        } else {
            0.0
        };
        Ok(out)
    }
}

/// True when a fitted-window decode went wrong: it repeats a phrase, ran
/// into its token cap, or found (almost) nothing in a turn of real length:
/// fewer than one word per two seconds, where speech has two or three per
/// second (seen: "for" for a 2.5 s sentence). A false alarm only costs the
/// full-window decode's time.
fn looks_broken(d: &Decoded, secs: f32, cap: i32) -> bool {
    if d.tokens as i32 >= cap {
        return true;
    }
    let words = d.text.split_whitespace().count() as f32;
    if secs > 1.5 && words < secs / 2.0 {
        return true;
    }
    repeats(&d.text)
}

/// True when some run of 1 to 4 words occurs three times in a row, or a
/// run of 4 or more words twice in a row (a decoder loop over a whole
/// phrase, which natural speech almost never does).
fn repeats(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    for n in 1..=4 {
        for start in 0..words.len() {
            let end = start + 3 * n;
            if end > words.len() {
                break;
            }
            let a = &words[start..start + n];
            if a == &words[start + n..start + 2 * n] && a == &words[start + 2 * n..end] {
                return true;
            }
        }
    }
    for n in 4..=words.len() / 2 {
        for start in 0..=words.len() - 2 * n {
            if words[start..start + n] == words[start + n..start + 2 * n] {
                return true;
            }
        }
    }
    false
}

/// A decoder loop: the text up to the end of the first copy of a phrase of
/// 3 or more words when everything after it only repeats that phrase
/// (the last copy may be cut short). `None` for anything else.
fn loop_cut(text: &str) -> Option<String> {
    let raw: Vec<&str> = text.split_whitespace().collect();
    let words: Vec<String> = raw
        .iter()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    let len = words.len();
    for start in 0..len {
        for n in 3..=(len - start) / 2 {
            let looping = (start + n..len).all(|i| words[i] == words[start + (i - start) % n]);
            if looping {
                return Some(raw[..start + n].join(" "));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_cut_after_its_first_copy() {
        assert_eq!(
            loop_cut(
                "Thank you for your patience. Thank you for your patience. Thank you for your"
            )
            .as_deref(),
            Some("Thank you for your patience.")
        );
        assert_eq!(
            loop_cut("Hello. The leader arrives now. The leader arrives now. The leader")
                .as_deref(),
            Some("Hello. The leader arrives now.")
        );
        // Short repeats are not cut ("no no no" is speech), nor is a
        // repeat followed by something new.
        assert_eq!(loop_cut("no no no no"), None);
        assert_eq!(
            loop_cut("I said one two three one two three and four"),
            None
        );
        assert_eq!(loop_cut("I would like to book a table."), None);
    }

    #[test]
    fn repetition_is_detected() {
        assert!(repeats(
            "The conference will begin. The conference will begin. The conference will begin."
        ));
        assert!(repeats("no no no"));
        // Seen on Piper audio with the fitted window: the whole sentence twice.
        assert!(repeats(
            "Thank you for calling our offices are closed today. Thank you for calling our offices are closed today."
        ));
        assert!(!repeats(
            "I said thank you, and thank you again for calling."
        ));
        assert!(!repeats("I would like to book a table for two people."));
        assert!(!repeats("no, no, I said yes"));
    }

    #[test]
    fn a_decode_at_its_cap_or_empty_is_broken() {
        let d = Decoded {
            text: "a b c".into(),
            tokens: 20,
            ..Decoded::default()
        };
        assert!(looks_broken(&d, 2.0, 20));
        let d = Decoded::default();
        assert!(looks_broken(&d, 3.0, 30));
        assert!(!looks_broken(&d, 1.0, 30));
        let one_word = Decoded {
            text: " for".into(),
            tokens: 1,
            ..Decoded::default()
        };
        assert!(looks_broken(&one_word, 2.5, 25));
        let fine = Decoded {
            text: "Your table is booked.".into(),
            tokens: 6,
            ..Decoded::default()
        };
        assert!(!looks_broken(&fine, 2.5, 25));
    }
}
