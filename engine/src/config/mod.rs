//! `hark.toml`: parsed into raw serde types, then validated into [`Config`].
//!
//! # Layout
//! - `raw`: the file as written (serde types, each default with its reason).
//! - this file: [`Config`], `[server]`, `[limits]`, `[[listener]]`, and the
//!   validation that ties the sections together.
//! - `speech`: `[speech]`, `[stt]`, `[tts]`.
//! - `providers`: `[provider.NAME]` and API keys.
//! - `agents`: `[agent.NAME]`: echo, say, transcribe, chat.
//! - `voice`: how a chat agent behaves on a call (turns, barge-in, hand-off).
//! - `control`: `[store]`, `[api]`, `[leads]`.
//! - `sip`, `stasis`: `[sip]`, `[ari]`.
//!
//! Parse, don't validate: the rest of the engine only sees [`Config`], with
//! `SocketAddr`s, `Duration`s and agent references that are known to exist.
//! Every error names the key it is about and why it is wrong. Defaults and the
//! reasons for them are documented on the raw fields and in the README's
//! configuration reference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use media_core::{CallConfig, MAX_SEND_AHEAD, SampleRate, audiosocket};

mod agents;
mod control;
mod providers;
mod raw;
mod sip;
mod speech;
mod stasis;
mod voice;

pub use agents::{AgentSpec, ChatAgent};
pub use control::{ApiConfig, LeadRules, StoreConfig};
pub use providers::{ProviderConfig, ProviderKind};
use raw::{RawAgent, RawConfig, RawListener, host_name};
pub use sip::{AllowList, SipConfig};
pub use speech::{SpeechConfig, SttConfig, TtsConfig, VadKind};
pub use stasis::{StasisConfig, StasisMedia};
pub use voice::{VoiceAgent, smart_endpointing, voice_endpointing};

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
        let (chats, agents) = self.agents(base, &providers, &speech, &call)?;

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

#[cfg(test)]
mod tests;
