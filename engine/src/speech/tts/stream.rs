//! The streaming speech pipeline: text pieces in, audio chunks out.

use std::sync::Arc;
use std::time::Duration;

use media_core::SampleRate;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{SentenceSplitter, Synthesizer, TtsError};

/// Text pieces waiting to be split (LLM tokens are small).
const TEXT_QUEUE: usize = 256;
/// Chunks waiting for synthesis.
const CHUNK_QUEUE: usize = 16;
/// Synthesized chunks waiting to be played: one playing, one ready.
const AUDIO_QUEUE: usize = 2;

/// One synthesized chunk: the text it speaks and its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spoken {
    /// The chunk's text as released by the splitter.
    pub text: String,
    /// Its audio at the stream's rate.
    pub audio: Vec<i16>,
}

/// The sending half of a stream's text input, for a task that produces
/// the text (an LLM reply) while another task takes the audio. Dropping
/// it finishes the text, like [`SpeechStream::finish`].
#[derive(Debug, Clone)]
pub struct TextInput(mpsc::Sender<String>);

impl TextInput {
    /// Adds text; fails once the stream is cancelled.
    pub async fn push(&self, text: impl Into<String>) -> Result<(), TtsError> {
        self.0
            .send(text.into())
            .await
            .map_err(|_| TtsError::Cancelled)
    }
}

/// One reply being spoken. See the module docs of `tts`.
///
/// Push text as it arrives, call [`finish`](Self::finish) at its end, and
/// take audio with [`next_audio`](Self::next_audio) until it returns
/// `None`. [`cancel`](Self::cancel) (or dropping the stream) stops all work
/// at once; nothing queued survives.
#[derive(Debug)]
pub struct SpeechStream {
    text: Option<mpsc::Sender<String>>,
    audio: mpsc::Receiver<Result<Spoken, TtsError>>,
    tasks: Vec<JoinHandle<()>>,
}

impl SpeechStream {
    /// Starts a stream speaking through `synth` at `rate`.
    pub fn start(synth: Arc<dyn Synthesizer>, rate: SampleRate, max_wait: Duration) -> Self {
        let (text_tx, mut text_rx) = mpsc::channel::<String>(TEXT_QUEUE);
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<String>(CHUNK_QUEUE);
        let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);

        let split = tokio::spawn(async move {
            let mut splitter = SentenceSplitter::new(max_wait);
            loop {
                let deadline = splitter.deadline().map(Instant::from_std);
                tokio::select! {
                    piece = text_rx.recv() => match piece {
                        Some(t) => splitter.push(std::time::Instant::now(), &t),
                        None => {
                            // End of text: flush what is left.
                            while let Some(c) = splitter.poll_chunk(std::time::Instant::now()) {
                                if chunk_tx.send(c).await.is_err() { return; }
                            }
                            if let Some(c) = splitter.finish() {
                                let _ = chunk_tx.send(c).await;
                            }
                            return;
                        }
                    },
                    () = sleep_until(deadline) => {}
                }
                while let Some(c) = splitter.poll_chunk(std::time::Instant::now()) {
                    if chunk_tx.send(c).await.is_err() {
                        return;
                    }
                }
            }
        });
        let speak = tokio::spawn(async move {
            while let Some(chunk) = chunk_rx.recv().await {
                let audio = synth.synthesize(chunk.clone(), rate).await;
                let spoken = audio.map(|audio| Spoken { text: chunk, audio });
                if audio_tx.send(spoken).await.is_err() {
                    return;
                }
            }
        });
        Self {
            text: Some(text_tx),
            audio: audio_rx,
            tasks: vec![split, speak],
        }
    }

    /// Adds text. Fails only once the stream is finished or cancelled.
    pub async fn push(&self, text: impl Into<String>) -> Result<(), TtsError> {
        match &self.text {
            Some(tx) => tx.send(text.into()).await.map_err(|_| TtsError::Cancelled),
            None => Err(TtsError::Cancelled),
        }
    }

    /// Adds text without waiting; fails when the text queue is full (a
    /// fresh stream always has room) or the stream is finished or cancelled.
    pub fn try_push(&self, text: impl Into<String>) -> Result<(), TtsError> {
        match &self.text {
            Some(tx) => tx.try_send(text.into()).map_err(|_| TtsError::Cancelled),
            None => Err(TtsError::Cancelled),
        }
    }

    /// No more text will come: the rest is spoken.
    pub fn finish(&mut self) {
        self.text = None;
    }

    /// Hands the text input to another task (see [`TextInput`]); `None`
    /// if it was already taken or the stream is finished.
    pub fn take_input(&mut self) -> Option<TextInput> {
        self.text.take().map(TextInput)
    }

    /// The next chunk of audio, in order; `None` when all is spoken (or
    /// after `cancel`).
    pub async fn next_audio(&mut self) -> Option<Result<Spoken, TtsError>> {
        self.audio.recv().await
    }

    /// Stops everything at once: pending text, chunks being synthesized and
    /// audio not yet taken are dropped.
    pub fn cancel(&mut self) {
        self.text = None;
        for t in &self.tasks {
            t.abort();
        }
        self.audio.close();
        while self.audio.try_recv().is_ok() {}
    }
}

impl Drop for SpeechStream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
