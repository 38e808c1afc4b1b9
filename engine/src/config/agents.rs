//! `[agent.NAME]`: what a call (or `hark chat`) talks to: echo, say,
//! transcribe, or a chat agent with its providers, routing and script.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use media_core::{CallConfig, Echo, EndpointConfig};

use super::raw::{RawAgent, RawConfig};
use super::{ConfigError, ProviderConfig, SpeechConfig, VadKind, VoiceAgent, invalid, voice};
use crate::llm::{Policy, RouterConfig, Script, ScriptQuestion, TokenBudget};

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

    /// How a listening agent's pauses are judged, when by model and words
    /// (`turn = "smart"`); `None`: by silence only.
    pub fn smart_turn(&self) -> Option<media_core::SmartTurn> {
        match self {
            AgentSpec::Voice(v) => v.turn,
            _ => None,
        }
    }
}

/// The validated agents: text-chat agents, and every agent's spec, by name.
type Agents = (BTreeMap<String, ChatAgent>, BTreeMap<String, AgentSpec>);

impl RawConfig {
    /// Validates every `[agent.NAME]`: the text-chat agents, and the
    /// spec of each agent calls can get.
    pub(super) fn agents(
        &self,
        base: &Path,
        providers: &BTreeMap<String, ProviderConfig>,
        speech: &SpeechConfig,
        call: &CallConfig,
    ) -> Result<Agents, ConfigError> {
        let mut chats = BTreeMap::new();
        let mut agents = BTreeMap::new();
        for (name, raw) in &self.agent {
            let key = format!("agent.{name}");
            let spec = match raw {
                RawAgent::Chat { voice: v, .. } => {
                    let chat = chat_agent(&key, raw, providers)?;
                    let spec = voice::voice_agent(name, &chat, v.as_deref(), speech, base)?;
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
        Ok((chats, agents))
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
