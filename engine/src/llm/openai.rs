//! OpenAI-compatible chat completions, streamed.
//!
//! `POST {base}/chat/completions` with `stream: true` and
//! `stream_options.include_usage`. Each event is a `chat.completion.chunk`:
//! `choices[0].delta.content` carries text; `choices[0].delta.tool_calls`
//! carries tool calls in pieces (by `index`: the id and name first, then
//! the arguments as string fragments); `finish_reason` closes the choice;
//! a last chunk with empty `choices` carries `usage`; `data: [DONE]` ends
//! the stream. Ollama, vLLM, llama.cpp's server and Groq speak the same.

use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::Endpoint;
use super::wire::{Decode, json as parse};
use super::{
    ChatEvent, ChatFuture, ChatModel, ChatRequest, FinishReason, LlmError, Role, SseEvent,
};

/// A chat model behind an OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct OpenAiCompatible {
    ep: Endpoint,
}

impl OpenAiCompatible {
    /// `model` at `base_url` (up to and including `/v1`).
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        model: &str,
        api_key: Option<String>,
    ) -> Self {
        Self {
            ep: Endpoint::new("openai", client, base_url, model, api_key),
        }
    }

    fn body(&self, r: &ChatRequest) -> Value {
        let mut messages = vec![json!({"role": "system", "content": r.system})];
        messages.extend(r.messages.iter().map(|m| {
            json!({"role": if m.role == Role::User { "user" } else { "assistant" }, "content": m.content})
        }));
        let mut body = json!({
            "model": self.ep.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
        });
        if !r.tools.is_empty() {
            body["tools"] = r
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        body
    }
}

impl ChatModel for OpenAiCompatible {
    fn stream(&self, request: ChatRequest) -> ChatFuture {
        let mut req = self
            .ep
            .client
            .post(format!("{}/chat/completions", self.ep.base_url))
            .json(&self.body(&request));
        if let Some(key) = &self.ep.api_key {
            req = req.bearer_auth(key);
        }
        Box::pin(super::wire::open(req, OpenAiDecoder::default()))
    }

    fn name(&self) -> &str {
        &self.ep.name
    }
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Decodes `chat.completion.chunk` events.
#[derive(Debug, Default)]
pub(crate) struct OpenAiDecoder {
    calls: BTreeMap<u64, PartialCall>,
    finish: Option<FinishReason>,
    done: bool,
}

impl Decode for OpenAiDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<ChatEvent>, LlmError> {
        if event.data.trim() == "[DONE]" {
            self.done = true;
            return self.complete();
        }
        let v = parse("openai", &event.data)?;
        if let Some(e) = v.get("error") {
            let m = e["message"].as_str().unwrap_or("unknown error").to_string();
            return Err(LlmError::Provider(m));
        }
        let mut out = Vec::new();
        if let Some(choice) = v["choices"].get(0) {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str()
                && !text.is_empty()
            {
                out.push(ChatEvent::Text(text.to_string()));
            }
            if let Some(calls) = delta["tool_calls"].as_array() {
                for c in calls {
                    let index = c["index"].as_u64().unwrap_or(0);
                    let p = self.calls.entry(index).or_default();
                    if let Some(id) = c["id"].as_str() {
                        p.id = id.to_string();
                    }
                    if let Some(name) = c["function"]["name"].as_str() {
                        p.name.push_str(name);
                    }
                    if let Some(args) = c["function"]["arguments"].as_str() {
                        p.arguments.push_str(args);
                    }
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish = Some(match reason {
                    "stop" => FinishReason::Stop,
                    "length" => FinishReason::Length,
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    other => FinishReason::Other(other.to_string()),
                });
            }
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            out.push(ChatEvent::Usage {
                input: u["prompt_tokens"].as_u64().unwrap_or(0) as u32,
                output: u["completion_tokens"].as_u64().unwrap_or(0) as u32,
            });
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<ChatEvent>, LlmError> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(LlmError::Truncated)
        }
    }
}

impl OpenAiDecoder {
    /// At `[DONE]`: the assembled tool calls, then the finish.
    fn complete(&mut self) -> Result<Vec<ChatEvent>, LlmError> {
        let mut out = Vec::new();
        for (i, c) in std::mem::take(&mut self.calls) {
            let arguments = if c.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&c.arguments).map_err(|e| {
                    LlmError::Protocol(format!(
                        "openai: tool call {:?} arguments are not JSON: {e}",
                        c.name
                    ))
                })?
            };
            out.push(ChatEvent::ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    c.id
                },
                name: c.name,
                arguments,
            });
        }
        out.push(ChatEvent::Finish(
            self.finish.take().unwrap_or(FinishReason::Stop),
        ));
        Ok(out)
    }
}
