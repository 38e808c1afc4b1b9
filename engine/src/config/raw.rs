//! `hark.toml` as written: the serde types, before validation. Each
//! default and its reason is documented on its field.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `hark.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) listener: Vec<RawListener>,
    #[serde(default)]
    pub(super) agent: BTreeMap<String, RawAgent>,
    #[serde(default)]
    pub(super) speech: RawSpeech,
    #[serde(default)]
    pub(super) stt: RawStt,
    #[serde(default)]
    pub(super) tts: RawTts,
    #[serde(default)]
    pub(super) provider: BTreeMap<String, RawProvider>,
    pub(super) store: Option<super::control::RawStore>,
    pub(super) api: Option<super::control::RawApi>,
    #[serde(default)]
    pub(super) leads: super::control::RawLeads,
    pub(super) ari: Option<super::stasis::RawStasis>,
    pub(super) sip: Option<super::sip::RawSip>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) kind: String,
    pub(super) base_url: Option<String>,
    pub(super) model: String,
    pub(super) api_key_env: Option<String>,
    pub(super) api_key_file: Option<String>,
    #[serde(default)]
    pub(super) price_in_per_1k: f64,
    #[serde(default)]
    pub(super) price_out_per_1k: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScript {
    pub(super) greeting: String,
    #[serde(default)]
    pub(super) questions: Vec<RawQuestion>,
    #[serde(default = "default_confirm")]
    pub(super) confirm: String,
    pub(super) closing: String,
    #[serde(default = "default_retry")]
    pub(super) retry: String,
}

fn default_confirm() -> String {
    "Let me confirm.".into()
}

fn default_retry() -> String {
    "Sorry, let's try that again.".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuestion {
    pub(super) slot: String,
    pub(super) ask: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTts {
    /// "piper" (default) or "http".
    pub(super) engine: Option<String>,
    /// piper: the voice's .onnx (default models_dir/piper/en_US-joe-medium.onnx).
    pub(super) voice: Option<String>,
    /// piper: default 1 sentence at a time.
    pub(super) sessions: Option<u64>,
    /// piper: default 2 threads: one sentence on both cores starts soonest.
    pub(super) threads: Option<u64>,
    /// Default 300 ms: a reply without a sentence end yet starts after this.
    pub(super) max_wait_ms: Option<u64>,
    /// http: base URL up to /v1.
    pub(super) url: Option<String>,
    /// http: default "tts-1".
    pub(super) model: Option<String>,
    /// http: default "alloy".
    pub(super) http_voice: Option<String>,
    /// http: default 1.0.
    pub(super) speed: Option<f32>,
    /// http: rate of the returned PCM, default 24000.
    pub(super) pcm_rate: Option<u64>,
    /// http: environment variable holding the API key.
    pub(super) api_key_env: Option<String>,
    /// http: file holding the API key.
    pub(super) api_key_file: Option<String>,
    /// http: default 10,000 ms.
    pub(super) timeout_ms: Option<u64>,
    /// Fixed phrases by name, synthesized once at start-up.
    #[serde(default)]
    pub(super) prompts: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpeech {
    /// Default "models" (next to hark.toml): where models/fetch.py puts them.
    pub(super) models_dir: Option<String>,
    /// Default: ORT_DYLIB_PATH, else models_dir/onnxruntime/libonnxruntime.so.1.31.1.
    pub(super) onnxruntime: Option<String>,
    /// Default 2: one per core on the 2-core target node.
    pub(super) vad_sessions: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStt {
    /// "whisper" (default) or "http".
    pub(super) engine: Option<String>,
    /// Whisper model: "tiny.en" (default: fastest, English) or "base".
    pub(super) model: Option<String>,
    /// Default "en"; "auto" detects per turn (multilingual models only).
    pub(super) language: Option<String>,
    /// Default 2 threads per worker.
    pub(super) threads: Option<u64>,
    /// Default 1 worker: on 2 cores, one turn at a time on both cores is
    /// faster per turn than two turns on one core each.
    pub(super) workers: Option<u64>,
    /// Default 16 waiting turns.
    pub(super) queue: Option<u64>,
    /// Default true: the fitted encoder window (see stt/whisper.rs).
    pub(super) fit_window: Option<bool>,
    /// http: base URL up to /v1.
    pub(super) url: Option<String>,
    /// http: the model name the server expects (default "whisper-1").
    pub(super) http_model: Option<String>,
    /// http: environment variable holding the API key.
    pub(super) api_key_env: Option<String>,
    /// http: file holding the API key.
    pub(super) api_key_file: Option<String>,
    /// http: default 10,000 ms.
    pub(super) timeout_ms: Option<u64>,
    /// http: default 4 requests at once.
    pub(super) max_in_flight: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    /// Default 200: the design target for a 2-core node.
    #[serde(default = "default_max_calls")]
    pub(super) max_calls: u64,
    /// Default 10 s: long enough for a goodbye, short enough for a restart.
    #[serde(default = "default_drain_timeout_ms")]
    pub(super) drain_timeout_ms: u64,
    /// Default 64: Asterisk sends the UUID at once, so a few dozen
    /// connections waiting for it cover a burst of call set-ups; more are
    /// idle or hostile, and must not keep real calls out.
    #[serde(default = "default_max_pending")]
    pub(super) max_pending: u64,
    /// Default: the host name. Must be unique among the nodes that share a
    /// database.
    pub(super) node: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            max_calls: default_max_calls(),
            drain_timeout_ms: default_drain_timeout_ms(),
            max_pending: default_max_pending(),
            node: None,
        }
    }
}

fn default_max_pending() -> u64 {
    64
}

/// The host name, from the kernel (no call into libc needed).
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hark".into())
}

fn default_max_calls() -> u64 {
    200
}

fn default_drain_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    /// Default 16,384 bytes (see `audiosocket::DEFAULT_MAX_PAYLOAD`).
    pub(super) max_payload_bytes: Option<u64>,
    /// Default 5,000 ms.
    pub(super) uuid_timeout_ms: Option<u64>,
    /// Default: no limit.
    pub(super) max_call_secs: Option<u64>,
    /// Default 5,000 ms.
    pub(super) playout_capacity_ms: Option<u64>,
    /// Default 1.
    pub(super) send_ahead_frames: Option<u64>,
    /// Default 8000: what `AudioSocket()` and `c(slin)` send.
    pub(super) default_rate_hz: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) agent: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawAgent {
    Echo {
        /// Default 500 ms: long enough to hear yourself as an echo, short
        /// enough to talk over.
        delay_ms: Option<u64>,
    },
    Chat {
        #[serde(default)]
        system_prompt: String,
        #[serde(default)]
        providers: Vec<String>,
        /// "priority" (default), "cheapest" or "fastest".
        policy: Option<String>,
        first_token_timeout_ms: Option<u64>,
        total_timeout_ms: Option<u64>,
        breaker_failures: Option<u32>,
        breaker_cooldown_ms: Option<u64>,
        budget_tokens: Option<u64>,
        budget_window_secs: Option<u64>,
        requests_per_minute: Option<u32>,
        max_tokens: Option<u32>,
        temperature: Option<f32>,
        tools: Option<Vec<String>>,
        script: Box<RawScript>,
        /// How it behaves on a call (when a listener uses it).
        voice: Option<Box<super::voice::RawVoice>>,
    },
    Say {
        text: String,
        /// Default true: an announcement line hangs up when done.
        hangup: Option<bool>,
        /// Default: the voice's own (1.0).
        length_scale: Option<f32>,
    },
    Transcribe {
        /// "silero" (default) or "energy".
        vad: Option<String>,
        min_speech_ms: Option<u64>,
        hangover_ms: Option<u64>,
        pre_roll_ms: Option<u64>,
        max_turn_ms: Option<u64>,
        speech_threshold: Option<f32>,
        silence_threshold: Option<f32>,
        /// Default: none (a transcript log needs no head start).
        preview_ms: Option<u64>,
    },
}
