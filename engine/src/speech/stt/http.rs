//! A provider transcriber: OpenAI-compatible `POST /v1/audio/transcriptions`.
//!
//! The turn goes up as a 16-bit mono WAV in a multipart form with `model`,
//! `language` and `response_format=verbose_json`. The reply is JSON with
//! `text`; when the server gives `verbose_json` segments, their
//! `avg_logprob` and `no_speech_prob` feed the confidence and the
//! hallucination guard. This covers OpenAI and the self-hosted servers that
//! copy its API (whisper.cpp's server, faster-whisper servers, Groq).
//!
//! # Concurrency
//! `submit` returns at once: each turn runs in its own tokio task, at most
//! `max_in_flight` at a time; a turn over that limit is refused, never queued
//! without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{SttError, SttRequest, SubmitError, Transcriber, Transcript, is_hallucination};

/// Settings for [`HttpTranscriber`].
#[derive(Debug, Clone)]
pub struct HttpTranscriberConfig {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The `model` form field, e.g. `whisper-1`.
    pub model: String,
    /// The `language` form field (ISO 639-1), if any.
    pub language: Option<String>,
    /// Bearer token, if the server wants one. Never logged.
    pub api_key: Option<crate::secret::Secret>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub max_in_flight: usize,
}

/// The OpenAI-compatible transcription client.
pub struct HttpTranscriber {
    config: HttpTranscriberConfig,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
    name: String,
}

impl std::fmt::Debug for HttpTranscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately without the API key.
        f.debug_struct("HttpTranscriber")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .finish_non_exhaustive()
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP transcription client: {0}")]
pub struct HttpStartError(String);

impl HttpTranscriber {
    /// A client for `config`; must be called inside a tokio runtime.
    pub fn new(config: HttpTranscriberConfig) -> Result<Self, HttpStartError> {
        crate::tls::install_crypto_provider();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| HttpStartError(format!("no tokio runtime: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| HttpStartError(e.to_string()))?;
        let name = format!("http/{}", config.model);
        Ok(Self {
            slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            client,
            runtime,
            name,
            config,
        })
    }
}

impl Transcriber for HttpTranscriber {
    fn submit(&self, request: SttRequest) -> Result<(), SubmitError> {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            return Err(SubmitError::QueueFull(self.config.max_in_flight));
        };
        let client = self.client.clone();
        let config = self.config.clone();
        let name = self.name.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            let result = post(&client, &config, &request.turn)
                .await
                .map(|(text, confidence)| Transcript {
                    text,
                    confidence,
                    audio: request.turn.duration(),
                    queued: Duration::ZERO,
                    processing: started.elapsed(),
                    engine: name,
                });
            drop(permit);
            let _ = request.reply.send(result);
        });
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The parts of a transcription response hark reads.
#[derive(Debug, Deserialize)]
struct Response {
    text: String,
    #[serde(default)]
    segments: Vec<Segment>,
}

#[derive(Debug, Deserialize)]
struct Segment {
    #[serde(default)]
    avg_logprob: Option<f32>,
    #[serde(default)]
    no_speech_prob: Option<f32>,
}

/// Bodies larger than this are not a transcript of one turn.
const MAX_BODY: usize = 1 << 20;

async fn post(
    client: &reqwest::Client,
    config: &HttpTranscriberConfig,
    turn: &media_core::Turn,
) -> Result<(String, f32), SttError> {
    let wav = wav_bytes(turn)?;
    let part = reqwest::multipart::Part::bytes(wav)
        .file_name("turn.wav")
        .mime_str("audio/wav")
        .map_err(|e| SttError::Failed(e.to_string()))?;
    let mut form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("model", config.model.clone())
        .text("response_format", "verbose_json");
    if let Some(lang) = &config.language {
        form = form.text("language", lang.clone());
    }
    let url = format!(
        "{}/audio/transcriptions",
        config.base_url.trim_end_matches('/')
    );
    let mut req = client.post(&url).multipart(form);
    if let Some(key) = &config.api_key {
        req = req.bearer_auth(key.expose());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| SttError::Failed(format!("{url}: {}", without_url(e))))?;
    let status = resp.status();
    let body = read_limited(resp).await?;
    if !status.is_success() {
        let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        return Err(SttError::Failed(format!("{url}: HTTP {status}: {snippet}")));
    }
    let parsed: Response = serde_json::from_slice(&body)
        .map_err(|e| SttError::Failed(format!("{url}: invalid response: {e}")))?;
    let logprobs: Vec<f32> = parsed
        .segments
        .iter()
        .filter_map(|s| s.avg_logprob)
        .collect();
    let confidence = if logprobs.is_empty() {
        1.0
    } else {
        (logprobs.iter().sum::<f32>() / logprobs.len() as f32)
            .exp()
            .clamp(0.0, 1.0)
    };
    let no_speech = parsed
        .segments
        .iter()
        .filter_map(|s| s.no_speech_prob)
        .fold(0.0f32, f32::max);
    if is_hallucination(&parsed.text, confidence, no_speech) {
        return Err(SttError::NoSpeech);
    }
    Ok((parsed.text.trim().to_string(), confidence))
}

/// reqwest's error text without the URL repeated.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, SttError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| SttError::Failed(format!("reading the response: {}", without_url(e))))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(SttError::Failed(format!(
                "response larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The turn as a 16-bit mono WAV file in memory.
fn wav_bytes(turn: &media_core::Turn) -> Result<Vec<u8>, SttError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: turn.rate.hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::with_capacity(44 + turn.samples.len() * 2));
    let mut w =
        hound::WavWriter::new(&mut out, spec).map_err(|e| SttError::Failed(e.to_string()))?;
    for &s in &turn.samples {
        w.write_sample(s)
            .map_err(|e| SttError::Failed(e.to_string()))?;
    }
    w.finalize().map_err(|e| SttError::Failed(e.to_string()))?;
    Ok(out.into_inner())
}
