//! A provider synthesizer: OpenAI-compatible `POST /v1/audio/speech`.
//!
//! Sends `{"model", "input", "voice", "response_format": "pcm", "speed"}`
//! and reads the streamed body: raw 16-bit little-endian mono PCM at the
//! provider's rate (24 kHz for OpenAI), resampled to the call's rate. The
//! body is read as it streams, with a size limit, so a broken server cannot
//! make hark buffer without bound.

use std::time::Duration;

use media_core::{Resampler, SampleRate};
use serde::Serialize;

use super::{SynthFuture, Synthesizer, TtsError};

/// Settings for [`HttpSynthesizer`].
#[derive(Debug, Clone)]
pub struct HttpSynthesizerConfig {
    /// Base URL up to and including `/v1`.
    pub base_url: String,
    /// The `model` field, e.g. `tts-1`.
    pub model: String,
    /// The `voice` field, e.g. `alloy`.
    pub voice: String,
    /// The `speed` field (1.0 = normal).
    pub speed: f32,
    /// Rate of the PCM the server returns.
    pub pcm_rate: SampleRate,
    /// Bearer token, if any. Never logged.
    pub api_key: Option<crate::secret::Secret>,
    /// Whole-request timeout.
    pub timeout: Duration,
}

/// The OpenAI-compatible speech client.
pub struct HttpSynthesizer {
    config: HttpSynthesizerConfig,
    client: reqwest::Client,
    name: String,
}

impl std::fmt::Debug for HttpSynthesizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately without the API key.
        f.debug_struct("HttpSynthesizer")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .field("voice", &self.config.voice)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    response_format: &'a str,
    speed: f32,
}

/// Ten minutes of 24 kHz PCM: no sentence is longer.
const MAX_BODY: usize = 24_000 * 2 * 600;

impl HttpSynthesizer {
    /// A client for `config`.
    pub fn new(config: HttpSynthesizerConfig) -> Result<Self, TtsError> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TtsError::Voice(e.to_string()))?;
        let name = format!("http/{}/{}", config.model, config.voice);
        Ok(Self {
            config,
            client,
            name,
        })
    }
}

impl Synthesizer for HttpSynthesizer {
    fn synthesize(&self, text: String, rate: SampleRate) -> SynthFuture {
        let client = self.client.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let spoken = super::normalize(&text);
            if spoken.trim().is_empty() {
                return Ok(Vec::new());
            }
            let url = format!("{}/audio/speech", config.base_url.trim_end_matches('/'));
            let fail = |m: String| TtsError::Synthesis(format!("{url}: {m}"));
            let mut req = client.post(&url).json(&Request {
                model: &config.model,
                input: &spoken,
                voice: &config.voice,
                response_format: "pcm",
                speed: config.speed,
            });
            if let Some(key) = &config.api_key {
                req = req.bearer_auth(key.expose());
            }
            let mut resp = req
                .send()
                .await
                .map_err(|e| fail(e.without_url().to_string()))?;
            let status = resp.status();
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| fail(e.without_url().to_string()))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(fail(format!("response larger than {MAX_BODY} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                return Err(fail(format!("HTTP {status}: {snippet}")));
            }
            if body.len() % 2 != 0 {
                return Err(fail(format!(
                    "PCM body of {} bytes is not whole samples",
                    body.len()
                )));
            }
            let pcm: Vec<i16> = body
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            Resampler::convert_all(config.pcm_rate, rate, &pcm).map_err(|e| fail(e.to_string()))
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}
