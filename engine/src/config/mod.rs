//! `hark.toml`: parsed into raw serde types, then validated into [`Config`].
//!
//! Parse, don't validate: the rest of the engine only sees [`Config`], with
//! `SocketAddr`s, `Duration`s and agent references that are known to exist.
//! Every error names the key it is about and why it is wrong. Defaults and the
//! reasons for them are documented on the raw fields and in the README's
//! configuration reference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use media_core::{CallConfig, Echo, EndpointConfig, MAX_SEND_AHEAD, SampleRate, audiosocket};
use serde::Deserialize;

use crate::llm::{Policy, Price, RouterConfig, Script, ScriptQuestion, TokenBudget};

mod control;
mod sip;
mod stasis;
mod voice;

use crate::stt::{HttpTranscriberConfig, WhisperConfig};
use crate::tts::HttpSynthesizerConfig;
pub use control::{ApiConfig, LeadRules, StoreConfig};
pub use sip::{AllowList, SipConfig};
pub use stasis::{StasisConfig, StasisMedia};
pub use voice::{VoiceAgent, voice_endpointing};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    /// toml's message names the key, the line and the column.
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A value is well-formed but not acceptable.
    #[error("invalid `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the key, e.g. `listener[0].address`.
        key: String,
        /// What is wrong and what would be right.
        reason: String,
    },
}

/// Checks a tenant id given on the command line or in the API.
pub fn check_tenant_id(tenant: &str) -> Result<(), ConfigError> {
    control::check_tenant("tenant", tenant)
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The index of the `[[listener]]` named `name` (the first when `None`):
/// the agent of modes that are not a listener of their own (`[ari]`,
/// `[sip]`). `none` says why a listener is needed.
fn listener_index(
    listeners: &[Listener],
    name: Option<&str>,
    key: &str,
    none: &str,
) -> Result<usize, ConfigError> {
    match name {
        None if listeners.is_empty() => Err(invalid(key, none)),
        None => Ok(0),
        Some(name) => listeners
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| invalid(key, format!("no [[listener]] is named {name:?}"))),
    }
}

/// An RTP port range `[LOW, HIGH]`, or `default`.
fn port_range(
    raw: Option<[u16; 2]>,
    default: (u16, u16),
    key: &str,
) -> Result<(u16, u16), ConfigError> {
    match raw {
        None => Ok(default),
        Some([lo, hi]) if lo >= 1024 && lo <= hi => Ok((lo, hi)),
        Some(_) => Err(invalid(key, "[LOW, HIGH] with 1024 <= LOW <= HIGH")),
    }
}

/// The validated configuration of the daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most calls in progress at once; the next one is refused.
    pub max_calls: usize,
    /// Most connections waiting for their UUID at once (not yet calls).
    pub max_pending: usize,
    /// This node's name in the store: at start-up, calls it left open are
    /// closed as failed.
    pub node: String,
    /// How long shutdown waits for calls to finish before hanging them up.
    pub drain_timeout: Duration,
    /// Largest AudioSocket payload accepted.
    pub max_payload: usize,
    /// Settings every call gets.
    pub call: CallConfig,
    /// The AudioSocket listeners.
    pub listeners: Vec<Listener>,
    /// Models, VAD and speech-to-text settings.
    pub speech: SpeechConfig,
    /// LLM providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Text-chat agents by name (`hark chat --agent NAME`).
    pub chats: BTreeMap<String, ChatAgent>,
    /// Where call records go, if anywhere.
    pub store: Option<StoreConfig>,
    /// The admin REST API, if enabled.
    pub api: Option<ApiConfig>,
    /// How leads are scored.
    pub leads: LeadRules,
    /// Stasis mode, if `[ari]` is configured.
    pub ari: Option<StasisConfig>,
    /// The SIP endpoint, if `[sip]` is configured.
    pub sip: Option<SipConfig>,
}

/// An LLM provider from `[provider.NAME]`.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `openai` (any OpenAI-compatible server), `anthropic` or `gemini`.
    pub kind: ProviderKind,
    /// Base URL (`.../v1` for OpenAI-compatible).
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// The API key, read from the environment or a file. Never logged.
    pub api_key: Option<crate::secret::Secret>,
    /// Price per 1k tokens.
    pub price: Price,
}

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini.
    Gemini,
}

/// A chat agent: prompt, providers, routing, the scripted fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAgent {
    /// The system prompt.
    pub system_prompt: String,
    /// Provider names, in priority order.
    pub providers: Vec<String>,
    /// Routing settings.
    pub router: RouterConfig,
    /// Reply length cap.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Tools offered to the model.
    pub tools: Vec<String>,
    /// The offline dialog, used when no provider can answer.
    pub script: Script,
}

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
        /// Sentences synthesized at once.
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

/// One AudioSocket listener and the agent its calls talk to.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Name used in logs.
    pub name: String,
    /// Where to listen.
    pub address: SocketAddr,
    /// The agent for calls on this listener.
    pub agent: AgentSpec,
}

/// An agent definition; builds a fresh agent per call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentSpec {
    /// The echo line test.
    Echo {
        /// Name in `[agent.NAME]`.
        name: String,
        /// How long before the caller hears themselves.
        delay: Duration,
    },
    /// Says a fixed text when the call starts.
    Say {
        /// Name in `[agent.NAME]`.
        name: String,
        /// What to say.
        text: String,
        /// Hang up (AudioSocket 0x00) once it is said.
        hangup: bool,
        /// Speaking rate (Piper's length scale), if not the voice's own.
        length_scale: Option<f32>,
    },
    /// Listens, transcribes and logs every caller turn; never replies.
    Transcribe {
        /// Name in `[agent.NAME]`.
        name: String,
        /// The detector.
        vad: VadKind,
        /// Turn detection settings.
        endpoint: EndpointConfig,
    },
    /// A conversation: listens, asks the model, speaks, hands off.
    Voice(Box<VoiceAgent>),
}

impl AgentSpec {
    /// The agent's name from the config.
    pub fn name(&self) -> &str {
        match self {
            AgentSpec::Echo { name, .. }
            | AgentSpec::Say { name, .. }
            | AgentSpec::Transcribe { name, .. } => name,
            AgentSpec::Voice(v) => &v.name,
        }
    }

    /// A new agent for one call.
    pub fn build(&self) -> Box<dyn media_core::Agent> {
        match self {
            AgentSpec::Echo { delay, .. } => Box::new(Echo::new(*delay)),
            AgentSpec::Transcribe { .. } => Box::new(media_core::Transcribe),
            AgentSpec::Say { text, hangup, .. } => Box::new(media_core::Say::new(text, *hangup)),
            AgentSpec::Voice(v) => Box::new(media_core::Conversation::new(v.conversation.clone())),
        }
    }

    /// True when calls of this agent speak (need TTS).
    pub fn speaks(&self) -> bool {
        matches!(self, AgentSpec::Say { .. } | AgentSpec::Voice(_))
    }

    /// True when calls of this agent need turn detection and STT.
    pub fn listens(&self) -> bool {
        matches!(self, AgentSpec::Transcribe { .. } | AgentSpec::Voice(_))
    }

    /// The detector and endpointing of a listening agent.
    pub fn ears(&self) -> Option<(VadKind, EndpointConfig)> {
        match self {
            AgentSpec::Transcribe { vad, endpoint, .. } => Some((*vad, *endpoint)),
            AgentSpec::Voice(v) => Some((v.vad, v.endpoint)),
            _ => None,
        }
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_in(&text, base)
    }

    /// Parses and validates TOML text; relative paths are from the current directory.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, Path::new("."))
    }

    /// Parses and validates TOML text; relative paths are from `base`.
    fn parse_in(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        raw.validate(base)
    }

    /// Checks what `hark serve` needs beyond a valid file: a listener.
    pub fn check_serveable(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(invalid(
                "listener",
                "no [[listener]] is configured: add one with name, address and agent",
            ));
        }
        Ok(())
    }

    /// A one-listener echo configuration (for `hark serve` without a file and for tests).
    pub fn echo(address: SocketAddr, delay: Duration) -> Config {
        let raw = RawConfig {
            listener: vec![RawListener {
                name: "main".into(),
                address: address.to_string(),
                agent: "echo".into(),
            }],
            agent: BTreeMap::from([(
                "echo".to_string(),
                RawAgent::Echo {
                    delay_ms: Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                },
            )]),
            ..RawConfig::default()
        };
        raw.validate(Path::new("."))
            .expect("the built-in echo configuration is valid")
    }
}

/// `hark.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    listener: Vec<RawListener>,
    #[serde(default)]
    agent: BTreeMap<String, RawAgent>,
    #[serde(default)]
    speech: RawSpeech,
    #[serde(default)]
    stt: RawStt,
    #[serde(default)]
    tts: RawTts,
    #[serde(default)]
    provider: BTreeMap<String, RawProvider>,
    store: Option<control::RawStore>,
    api: Option<control::RawApi>,
    #[serde(default)]
    leads: control::RawLeads,
    ari: Option<stasis::RawStasis>,
    sip: Option<sip::RawSip>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: String,
    base_url: Option<String>,
    model: String,
    api_key_env: Option<String>,
    api_key_file: Option<String>,
    #[serde(default)]
    price_in_per_1k: f64,
    #[serde(default)]
    price_out_per_1k: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    greeting: String,
    #[serde(default)]
    questions: Vec<RawQuestion>,
    #[serde(default = "default_confirm")]
    confirm: String,
    closing: String,
    #[serde(default = "default_retry")]
    retry: String,
}

fn default_confirm() -> String {
    "Let me confirm.".into()
}

fn default_retry() -> String {
    "Sorry, let's try that again.".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuestion {
    slot: String,
    ask: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTts {
    /// "piper" (default) or "http".
    engine: Option<String>,
    /// piper: the voice's .onnx (default models_dir/piper/en_US-joe-medium.onnx).
    voice: Option<String>,
    /// piper: default 1 sentence at a time.
    sessions: Option<u64>,
    /// piper: default 2 threads: one sentence on both cores starts soonest.
    threads: Option<u64>,
    /// Default 300 ms: a reply without a sentence end yet starts after this.
    max_wait_ms: Option<u64>,
    /// http: base URL up to /v1.
    url: Option<String>,
    /// http: default "tts-1".
    model: Option<String>,
    /// http: default "alloy".
    http_voice: Option<String>,
    /// http: default 1.0.
    speed: Option<f32>,
    /// http: rate of the returned PCM, default 24000.
    pcm_rate: Option<u64>,
    /// http: environment variable holding the API key.
    api_key_env: Option<String>,
    /// http: file holding the API key.
    api_key_file: Option<String>,
    /// http: default 10,000 ms.
    timeout_ms: Option<u64>,
    /// Fixed phrases by name, synthesized once at start-up.
    #[serde(default)]
    prompts: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpeech {
    /// Default "models" (next to hark.toml): where models/fetch.py puts them.
    models_dir: Option<String>,
    /// Default: ORT_DYLIB_PATH, else models_dir/onnxruntime/libonnxruntime.so.1.31.1.
    onnxruntime: Option<String>,
    /// Default 2: one per core on the 2-core target node.
    vad_sessions: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStt {
    /// "whisper" (default) or "http".
    engine: Option<String>,
    /// Whisper model: "tiny.en" (default: fastest, English) or "base".
    model: Option<String>,
    /// Default "en"; "auto" detects per turn (multilingual models only).
    language: Option<String>,
    /// Default 2 threads per worker.
    threads: Option<u64>,
    /// Default 1 worker: on 2 cores, one turn at a time on both cores is
    /// faster per turn than two turns on one core each.
    workers: Option<u64>,
    /// Default 16 waiting turns.
    queue: Option<u64>,
    /// Default true: the fitted encoder window (see stt/whisper.rs).
    fit_window: Option<bool>,
    /// http: base URL up to /v1.
    url: Option<String>,
    /// http: the model name the server expects (default "whisper-1").
    http_model: Option<String>,
    /// http: environment variable holding the API key.
    api_key_env: Option<String>,
    /// http: file holding the API key.
    api_key_file: Option<String>,
    /// http: default 10,000 ms.
    timeout_ms: Option<u64>,
    /// http: default 4 requests at once.
    max_in_flight: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// Default 200: the design target for a 2-core node.
    #[serde(default = "default_max_calls")]
    max_calls: u64,
    /// Default 10 s: long enough for a goodbye, short enough for a restart.
    #[serde(default = "default_drain_timeout_ms")]
    drain_timeout_ms: u64,
    /// Default 64: Asterisk sends the UUID at once, so a few dozen
    /// connections waiting for it cover a burst of call set-ups; more are
    /// idle or hostile, and must not keep real calls out.
    #[serde(default = "default_max_pending")]
    max_pending: u64,
    /// Default: the host name. Must be unique among the nodes that share a
    /// database.
    node: Option<String>,
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
fn host_name() -> String {
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
struct RawLimits {
    /// Default 16,384 bytes (see `audiosocket::DEFAULT_MAX_PAYLOAD`).
    max_payload_bytes: Option<u64>,
    /// Default 5,000 ms.
    uuid_timeout_ms: Option<u64>,
    /// Default: no limit.
    max_call_secs: Option<u64>,
    /// Default 5,000 ms.
    playout_capacity_ms: Option<u64>,
    /// Default 1.
    send_ahead_frames: Option<u64>,
    /// Default 8000: what `AudioSocket()` and `c(slin)` send.
    default_rate_hz: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: String,
    address: String,
    agent: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum RawAgent {
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
        voice: Option<Box<voice::RawVoice>>,
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

impl RawConfig {
    fn validate(self, base: &Path) -> Result<Config, ConfigError> {
        let max_calls = self.server.max_calls;
        if !(1..=100_000).contains(&max_calls) {
            return Err(invalid(
                "server.max_calls",
                format!("{max_calls} is out of range: use 1 to 100000"),
            ));
        }
        let max_pending = self.server.max_pending;
        if !(1..=100_000).contains(&max_pending) {
            return Err(invalid(
                "server.max_pending",
                format!("{max_pending} is out of range: use 1 to 100000"),
            ));
        }
        let node = match &self.server.node {
            None => host_name(),
            Some(n) if (1..=64).contains(&n.len()) && !n.chars().any(char::is_control) => n.clone(),
            Some(_) => {
                return Err(invalid("server.node", "use 1 to 64 printable characters"));
            }
        };
        let drain = self.server.drain_timeout_ms;
        if drain > 3_600_000 {
            return Err(invalid(
                "server.drain_timeout_ms",
                format!("{drain} ms is more than an hour"),
            ));
        }
        let call = self.limits_call_config()?;
        let max_payload = match self.limits.max_payload_bytes {
            None => audiosocket::DEFAULT_MAX_PAYLOAD,
            // Must hold one 20 ms frame at 8 kHz; the wire field caps it at 65,535.
            Some(n @ 320..=65_535) => n as usize,
            Some(n) => {
                return Err(invalid(
                    "limits.max_payload_bytes",
                    format!("{n} is out of range: use 320 (20 ms at 8 kHz) to 65535"),
                ));
            }
        };

        let providers = self.providers(base)?;
        let speech = self.speech_config(base)?;
        let mut chats = BTreeMap::new();
        let mut agents = BTreeMap::new();
        for (name, raw) in &self.agent {
            let key = format!("agent.{name}");
            let spec = match raw {
                RawAgent::Chat { voice: v, .. } => {
                    let chat = chat_agent(&key, raw, &providers)?;
                    let spec = voice::voice_agent(name, &chat, v.as_deref(), &speech, base)?;
                    chats.insert(name.clone(), chat);
                    AgentSpec::Voice(Box::new(spec))
                }
                RawAgent::Echo { delay_ms } => {
                    let delay = Duration::from_millis(delay_ms.unwrap_or(500));
                    if delay + Duration::from_millis(500) > call.playout_capacity {
                        return Err(invalid(
                            format!("{key}.delay_ms"),
                            format!(
                                "{} ms does not fit the playout queue ({} ms, limits.playout_capacity_ms) with 500 ms to spare",
                                delay.as_millis(),
                                call.playout_capacity.as_millis()
                            ),
                        ));
                    }
                    AgentSpec::Echo {
                        name: name.clone(),
                        delay,
                    }
                }
                RawAgent::Say {
                    text,
                    hangup,
                    length_scale,
                } => {
                    if text.trim().is_empty() {
                        return Err(invalid(format!("{key}.text"), "must not be empty"));
                    }
                    if text.len() > 10_000 {
                        return Err(invalid(
                            format!("{key}.text"),
                            "longer than 10,000 characters",
                        ));
                    }
                    if let Some(l) = length_scale
                        && !(0.3..=3.0).contains(l)
                    {
                        return Err(invalid(
                            format!("{key}.length_scale"),
                            format!("{l} is out of range: use 0.3 (fast) to 3.0 (slow)"),
                        ));
                    }
                    AgentSpec::Say {
                        name: name.clone(),
                        text: text.clone(),
                        hangup: hangup.unwrap_or(true),
                        length_scale: *length_scale,
                    }
                }
                RawAgent::Transcribe {
                    vad,
                    min_speech_ms,
                    hangover_ms,
                    pre_roll_ms,
                    max_turn_ms,
                    speech_threshold,
                    silence_threshold,
                    preview_ms,
                } => {
                    let (vad, endpoint) = voice::endpoint(
                        &key,
                        &voice::RawEndpoint {
                            vad: vad.clone(),
                            min_speech_ms: *min_speech_ms,
                            hangover_ms: *hangover_ms,
                            pre_roll_ms: *pre_roll_ms,
                            max_turn_ms: *max_turn_ms,
                            speech_threshold: *speech_threshold,
                            silence_threshold: *silence_threshold,
                            preview_ms: *preview_ms,
                        },
                        EndpointConfig::default(),
                    )?;
                    AgentSpec::Transcribe {
                        name: name.clone(),
                        vad,
                        endpoint,
                    }
                }
            };
            agents.insert(name.clone(), spec);
        }

        let mut listeners: Vec<Listener> = Vec::with_capacity(self.listener.len());
        for (i, l) in self.listener.iter().enumerate() {
            let key = format!("listener[{i}]");
            if l.name.trim().is_empty() {
                return Err(invalid(format!("{key}.name"), "must not be empty"));
            }
            let address: SocketAddr = l.address.parse().map_err(|_| {
                invalid(
                    format!("{key}.address"),
                    format!(
                        "{:?} is not an IP address and port such as \"127.0.0.1:9092\"",
                        l.address
                    ),
                )
            })?;
            let Some(agent) = agents.get(&l.agent) else {
                let known: Vec<&str> = agents.keys().map(String::as_str).collect();
                return Err(invalid(
                    format!("{key}.agent"),
                    format!(
                        "no agent named {:?} (defined: {})",
                        l.agent,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            if let Some(other) = listeners.iter().find(|o| o.name == l.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("{:?} is already used by another listener", other.name),
                ));
            }
            if address.port() != 0 && listeners.iter().any(|o| o.address == address) {
                return Err(invalid(
                    format!("{key}.address"),
                    format!("{address} is already used by another listener"),
                ));
            }
            listeners.push(Listener {
                name: l.name.clone(),
                address,
                agent: agent.clone(),
            });
        }

        if self.api.is_some() && self.store.is_none() {
            return Err(invalid(
                "api",
                "the API serves what the store holds: add [store] (e.g. url = \"sqlite://hark.db\")",
            ));
        }

        Ok(Config {
            max_calls: max_calls as usize,
            max_pending: max_pending as usize,
            node,
            drain_timeout: Duration::from_millis(drain),
            max_payload,
            call,
            speech,
            providers,
            chats,
            store: self.store.map(|s| s.validate(base)).transpose()?,
            api: self.api.map(|a| a.validate()).transpose()?,
            leads: self.leads.validate()?,
            ari: self.ari.map(|a| a.validate(&listeners, base)).transpose()?,
            sip: self.sip.map(|s| s.validate(&listeners)).transpose()?,
            listeners,
        })
    }

    fn providers(&self, base: &Path) -> Result<BTreeMap<String, ProviderConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, p) in &self.provider {
            let key = format!("provider.{name}");
            let kind = match p.kind.as_str() {
                "openai" => ProviderKind::OpenAi,
                "anthropic" => ProviderKind::Anthropic,
                "gemini" => ProviderKind::Gemini,
                other => {
                    return Err(invalid(
                        format!("{key}.kind"),
                        format!(
                            "{other:?} is not a provider kind: use \"openai\" (any OpenAI-compatible server), \"anthropic\" or \"gemini\""
                        ),
                    ));
                }
            };
            let base_url = match (&p.base_url, kind) {
                (Some(u), _) => u.clone(),
                (None, ProviderKind::OpenAi) => "https://api.openai.com/v1".into(),
                (None, ProviderKind::Anthropic) => "https://api.anthropic.com".into(),
                (None, ProviderKind::Gemini) => "https://generativelanguage.googleapis.com".into(),
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(invalid(
                    format!("{key}.base_url"),
                    format!("{base_url:?} is not an http(s) URL"),
                ));
            }
            if p.model.trim().is_empty() {
                return Err(invalid(format!("{key}.model"), "must not be empty"));
            }
            let api_key = read_key(&key, &p.api_key_env, &p.api_key_file, base)?;
            if kind != ProviderKind::OpenAi && api_key.is_none() {
                return Err(invalid(
                    format!("{key}.api_key_env"),
                    format!(
                        "{} needs an API key: set api_key_env or api_key_file",
                        p.kind
                    ),
                ));
            }
            for (field, v) in [
                ("price_in_per_1k", p.price_in_per_1k),
                ("price_out_per_1k", p.price_out_per_1k),
            ] {
                if !(0.0..=1_000.0).contains(&v) {
                    return Err(invalid(
                        format!("{key}.{field}"),
                        format!("{v} is out of range: use 0 to 1000"),
                    ));
                }
            }
            out.insert(
                name.clone(),
                ProviderConfig {
                    kind,
                    base_url,
                    model: p.model.clone(),
                    api_key,
                    price: Price {
                        input_per_1k: p.price_in_per_1k,
                        output_per_1k: p.price_out_per_1k,
                    },
                },
            );
        }
        Ok(out)
    }

    fn speech_config(&self, base: &Path) -> Result<SpeechConfig, ConfigError> {
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

    fn limits_call_config(&self) -> Result<CallConfig, ConfigError> {
        let l = &self.limits;
        let mut call = CallConfig::default();
        if let Some(ms) = l.uuid_timeout_ms {
            if !(100..=60_000).contains(&ms) {
                return Err(invalid(
                    "limits.uuid_timeout_ms",
                    format!("{ms} is out of range: use 100 to 60000"),
                ));
            }
            call.uuid_timeout = Duration::from_millis(ms);
        }
        if let Some(secs) = l.max_call_secs {
            if secs == 0 {
                return Err(invalid(
                    "limits.max_call_secs",
                    "0 would end every call at once: leave the key out for no limit",
                ));
            }
            call.max_duration = Some(Duration::from_secs(secs));
        }
        if let Some(ms) = l.playout_capacity_ms {
            if !(1_000..=60_000).contains(&ms) {
                return Err(invalid(
                    "limits.playout_capacity_ms",
                    format!("{ms} is out of range: use 1000 to 60000"),
                ));
            }
            call.playout_capacity = Duration::from_millis(ms);
        }
        if let Some(n) = l.send_ahead_frames {
            if n > u64::from(MAX_SEND_AHEAD) {
                return Err(invalid(
                    "limits.send_ahead_frames",
                    format!(
                        "{n} is more than {MAX_SEND_AHEAD}: audio sent ahead cannot be taken back, so barge-in would be late"
                    ),
                ));
            }
            call.send_ahead = n as u8;
        }
        if let Some(hz) = l.default_rate_hz {
            let rate = u32::try_from(hz)
                .ok()
                .and_then(SampleRate::new)
                .filter(|r| audiosocket::slin_kind(*r).is_some())
                .ok_or_else(|| {
                    invalid(
                        "limits.default_rate_hz",
                        format!("{hz} Hz has no AudioSocket kind: use 8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000 or 192000"),
                    )
                })?;
            call.default_rate = rate;
        }
        Ok(call)
    }
}

/// An API key from `{prefix}.api_key_env` (a variable name) or
/// `{prefix}.api_key_file` (a path, relative to hark.toml), never both.
fn read_key(
    prefix: &str,
    env: &Option<String>,
    file: &Option<String>,
    base: &Path,
) -> Result<Option<crate::secret::Secret>, ConfigError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{prefix}.api_key_file"),
            "give api_key_env or api_key_file, not both",
        )),
        (Some(var), None) => std::env::var(var)
            .map(|k| Some(crate::secret::Secret::from(k)))
            .map_err(|_| {
                invalid(
                    format!("{prefix}.api_key_env"),
                    format!("the environment variable {var} is not set"),
                )
            }),
        (None, Some(f)) => {
            let path = if Path::new(f).is_absolute() {
                PathBuf::from(f)
            } else {
                base.join(f)
            };
            std::fs::read_to_string(&path)
                .map(|k| Some(crate::secret::Secret::from(k.trim().to_string())))
                .map_err(|e| {
                    invalid(
                        format!("{prefix}.api_key_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })
        }
        (None, None) => Ok(None),
    }
}

/// Validates one `kind = "chat"` agent.
fn chat_agent(
    key: &str,
    raw: &RawAgent,
    providers: &BTreeMap<String, ProviderConfig>,
) -> Result<ChatAgent, ConfigError> {
    let RawAgent::Chat {
        system_prompt,
        providers: names,
        policy,
        first_token_timeout_ms,
        total_timeout_ms,
        breaker_failures,
        breaker_cooldown_ms,
        budget_tokens,
        budget_window_secs,
        requests_per_minute,
        max_tokens,
        temperature,
        tools,
        script,
        ..
    } = raw
    else {
        unreachable!("called for chat agents only")
    };
    for n in names {
        if !providers.contains_key(n) {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            return Err(invalid(
                format!("{key}.providers"),
                format!(
                    "no provider named {n:?} (defined: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let policy = match policy.as_deref() {
        None | Some("priority") => Policy::Priority,
        Some("cheapest") => Policy::Cheapest,
        Some("fastest") => Policy::Fastest,
        Some(other) => {
            return Err(invalid(
                format!("{key}.policy"),
                format!("{other:?} is not a policy: use \"priority\", \"cheapest\" or \"fastest\""),
            ));
        }
    };
    let ms = |v: Option<u64>, field: &str, min: u64, max: u64, default: Duration| match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(Duration::from_millis(v)),
        Some(v) => Err(invalid(
            format!("{key}.{field}"),
            format!("{v} is out of range: use {min} to {max}"),
        )),
    };
    let d = RouterConfig::default();
    let budget = match (budget_tokens, budget_window_secs) {
        (None, _) => None,
        (Some(t), w) => Some(TokenBudget {
            tokens: *t,
            window: Duration::from_secs(w.unwrap_or(3_600).max(1)),
        }),
    };
    let router = RouterConfig {
        policy,
        first_token_timeout: ms(
            *first_token_timeout_ms,
            "first_token_timeout_ms",
            100,
            60_000,
            d.first_token_timeout,
        )?,
        total_timeout: ms(
            *total_timeout_ms,
            "total_timeout_ms",
            1_000,
            600_000,
            d.total_timeout,
        )?,
        breaker_failures: breaker_failures.unwrap_or(d.breaker_failures).max(1),
        breaker_cooldown: ms(
            *breaker_cooldown_ms,
            "breaker_cooldown_ms",
            100,
            3_600_000,
            d.breaker_cooldown,
        )?,
        budget,
        requests_per_minute: *requests_per_minute,
    };
    let known_tools: Vec<String> = crate::llm::builtin_tools()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let tools = tools.clone().unwrap_or_else(|| known_tools.clone());
    for t in &tools {
        if !known_tools.contains(t) {
            return Err(invalid(
                format!("{key}.tools"),
                format!("{t:?} is not a built-in tool: {}", known_tools.join(", ")),
            ));
        }
    }
    if script.greeting.trim().is_empty() || script.closing.trim().is_empty() {
        return Err(invalid(
            format!("{key}.script"),
            "greeting and closing must not be empty",
        ));
    }
    Ok(ChatAgent {
        system_prompt: system_prompt.clone(),
        providers: names.clone(),
        router,
        max_tokens: max_tokens.unwrap_or(300).clamp(16, 8_192),
        temperature: temperature.unwrap_or(0.5).clamp(0.0, 2.0),
        tools,
        script: Script {
            greeting: script.greeting.clone(),
            questions: script
                .questions
                .iter()
                .map(|q| ScriptQuestion {
                    slot: q.slot.clone(),
                    ask: q.ask.clone(),
                })
                .collect(),
            confirm: script.confirm.clone(),
            closing: script.closing.clone(),
            retry: script.retry.clone(),
        },
    })
}

#[cfg(test)]
mod tests;
