//! LLM providers behind one streaming interface.
//!
//! A [`ChatModel`] takes a [`ChatRequest`] and returns a [`ChatStream`] of
//! normalized [`ChatEvent`]s: text deltas, complete tool calls, token usage
//! and the finish reason, whatever the provider's wire format. Each
//! provider is one file with a pure decoder (server-sent events in, chat
//! events out) that is tested on byte-exact bodies, plus the request it
//! sends.
//!
//! # Layout
//! - `sse`: incremental server-sent events parsing with size limits.
//! - `wire`: runs a streaming HTTP request through a decoder into a bounded
//!   channel; maps HTTP errors (429, 5xx, 529) to [`LlmError`].
//! - `openai`: OpenAI-compatible chat completions (OpenAI, Ollama, vLLM,
//!   llama.cpp server, Groq, ... by base URL).
//! - `anthropic`: Anthropic Messages.
//! - `gemini`: Google Gemini `streamGenerateContent`.
//! - `tools`: the built-in tools a voice agent needs.
//! - `router`: priority/cheapest/fastest routing, failover before the first
//!   token, circuit breakers, tenant budgets, usage records.
//! - `scripted`: the offline scripted dialog, the last fallback.
//!
//! # Concurrency
//! Each stream is one tokio task reading the HTTP body into a bounded
//! channel; dropping the [`ChatStream`] aborts it.

mod anthropic;
mod gemini;
mod openai;
mod router;
mod scripted;
mod sse;
mod tools;
mod wire;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use anthropic::Anthropic;
pub use gemini::Gemini;
pub use openai::OpenAiCompatible;
pub use router::{
    Outcome, Policy, Price, Provider, Reply, RouteError, Router, RouterConfig, TokenBudget,
    UsageRecord,
};
pub use scripted::{Script, ScriptQuestion, ScriptedModel};
pub use sse::{SseError, SseEvent, SseParser};
pub use tools::{ToolSpec, builtin_tools};

/// An HTTP client for the providers: rustls with ring, a 5 s connect
/// timeout, and no overall timeout (the router bounds each phase).
pub fn http_client() -> Result<reqwest::Client, LlmError> {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| LlmError::Connect(e.to_string()))
}

/// What every HTTP provider client holds: the client, where, which model,
/// and the key (left out of `Debug`, so it never reaches a log).
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) client: reqwest::Client,
    pub(crate) base_url: String,
    pub(crate) model: String,
    pub(crate) api_key: Option<std::sync::Arc<str>>,
    /// `provider/model`.
    pub(crate) name: String,
}

impl Endpoint {
    pub(crate) fn new(
        provider: &str,
        client: reqwest::Client,
        base_url: &str,
        model: &str,
        api_key: Option<String>,
    ) -> Self {
        crate::tls::install_crypto_provider();
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key: api_key.map(std::sync::Arc::from),
            name: format!("{provider}/{model}"),
        }
    }

    /// The key, or an empty one (the provider then answers 401).
    pub(crate) fn key(&self) -> &str {
        self.api_key.as_deref().unwrap_or_default()
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The caller (as transcribed).
    User,
    /// The agent.
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who.
    pub role: Role,
    /// What.
    pub content: String,
}

/// A request for one reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Reply length cap.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
}

/// Why a reply stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished.
    Stop,
    /// It hit `max_tokens`.
    Length,
    /// It called tools.
    ToolCalls,
    /// Anything else the provider said.
    Other(String),
}

/// One normalized piece of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// More reply text.
    Text(String),
    /// A complete tool call (arguments are a JSON object).
    ToolCall {
        /// The provider's call id (generated when it gives none).
        id: String,
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: serde_json::Value,
    },
    /// Tokens used (may come more than once; the last one counts).
    Usage {
        /// Prompt tokens.
        input: u32,
        /// Reply tokens.
        output: u32,
    },
    /// The reply is complete.
    Finish(FinishReason),
}

/// Why a request or a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// Could not connect or send.
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    /// HTTP 429.
    #[error("rate limited{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// From `retry-after`, if given.
        retry_after: Option<Duration>,
    },
    /// HTTP 529/503 or an "overloaded" error event.
    #[error("provider overloaded: {0}")]
    Overloaded(String),
    /// HTTP 401/403.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Any other HTTP error, with the provider's message.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The provider's error message (or the start of the body).
        message: String,
    },
    /// An error reported inside the stream.
    #[error("provider error: {0}")]
    Provider(String),
    /// The body is not the provider's format.
    #[error("malformed stream: {0}")]
    Protocol(String),
    /// The stream ended before the reply was complete.
    #[error("stream cut before the end of the reply")]
    Truncated,
    /// A timeout (the router sets them).
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

/// The streamed reply: events in order, then the channel closes.
#[derive(Debug)]
pub struct ChatStream {
    rx: mpsc::Receiver<Result<ChatEvent, LlmError>>,
    task: Option<JoinHandle<()>>,
}

impl ChatStream {
    /// A stream fed by `task` through `rx`.
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<ChatEvent, LlmError>>,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            rx,
            task: Some(task),
        }
    }

    /// A stream from its parts, for other [`ChatModel`] implementations.
    pub fn from_parts(
        rx: mpsc::Receiver<Result<ChatEvent, LlmError>>,
        task: JoinHandle<()>,
    ) -> Self {
        Self::new(rx, task)
    }

    /// The next event; `None` once the reply is over.
    pub async fn next(&mut self) -> Option<Result<ChatEvent, LlmError>> {
        self.rx.recv().await
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The future [`ChatModel::stream`] returns: resolved once the provider
/// accepted the request (HTTP status known).
pub type ChatFuture = Pin<Box<dyn Future<Output = Result<ChatStream, LlmError>> + Send>>;

/// One provider and model.
pub trait ChatModel: Send + Sync + fmt::Debug {
    /// Starts a streamed reply.
    fn stream(&self, request: ChatRequest) -> ChatFuture;

    /// `provider/model`, for logs and usage records.
    fn name(&self) -> &str;
}
