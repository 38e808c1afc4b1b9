//! Anthropic Messages, streamed.
//!
//! `POST {base}/v1/messages` with `stream: true`, `x-api-key` and
//! `anthropic-version: 2023-06-01`. Events: `message_start` (input tokens),
//! `content_block_start` (a text block, or a `tool_use` block with id and
//! name), `content_block_delta` (`text_delta`, or `input_json_delta` with a
//! fragment of the tool's JSON input), `content_block_stop`,
//! `message_delta` (stop reason, output tokens), `message_stop`, `ping`,
//! and `error` (e.g. `overloaded_error`, also sent as HTTP 529).

use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::Endpoint;
use super::wire::{Decode, json as parse};
use super::{
    ChatEvent, ChatFuture, ChatModel, ChatRequest, FinishReason, LlmError, Role, SseEvent,
};

/// A Claude model.
#[derive(Debug)]
pub struct Anthropic {
    ep: Endpoint,
}

impl Anthropic {
    /// `model` at `base_url` (e.g. `https://api.anthropic.com`).
    pub fn new(client: reqwest::Client, base_url: &str, model: &str, api_key: String) -> Self {
        Self {
            ep: Endpoint::new("anthropic", client, base_url, model, Some(api_key)),
        }
    }

    fn body(&self, r: &ChatRequest) -> Value {
        let messages: Vec<Value> = r
            .messages
            .iter()
            .map(|m| json!({"role": if m.role == Role::User { "user" } else { "assistant" }, "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.ep.model,
            "system": r.system,
            "messages": messages,
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "stream": true,
        });
        if !r.tools.is_empty() {
            body["tools"] = r
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
        }
        body
    }
}

impl ChatModel for Anthropic {
    fn stream(&self, request: ChatRequest) -> ChatFuture {
        let req = self
            .ep
            .client
            .post(format!("{}/v1/messages", self.ep.base_url))
            .header("x-api-key", self.ep.key())
            .header("anthropic-version", "2023-06-01")
            .json(&self.body(&request));
        Box::pin(super::wire::open(req, AnthropicDecoder::default()))
    }

    fn name(&self) -> &str {
        &self.ep.name
    }
}

#[derive(Debug, Default)]
struct ToolBlock {
    id: String,
    name: String,
    json: String,
}

/// Decodes Messages stream events.
#[derive(Debug, Default)]
pub(crate) struct AnthropicDecoder {
    tools: BTreeMap<u64, ToolBlock>,
    input_tokens: u32,
    finish: Option<FinishReason>,
    done: bool,
}

impl Decode for AnthropicDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<ChatEvent>, LlmError> {
        let v = parse("anthropic", &event.data)?;
        let kind = v["type"].as_str().or(event.event.as_deref()).unwrap_or("");
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                self.input_tokens =
                    v["message"]["usage"]["input_tokens"].as_u64().unwrap_or(0) as u32;
            }
            "content_block_start" => {
                let block = &v["content_block"];
                if block["type"] == "tool_use" {
                    let index = v["index"].as_u64().unwrap_or(0);
                    self.tools.insert(
                        index,
                        ToolBlock {
                            id: block["id"].as_str().unwrap_or_default().to_string(),
                            name: block["name"].as_str().unwrap_or_default().to_string(),
                            json: String::new(),
                        },
                    );
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(t) = d["text"].as_str()
                            && !t.is_empty()
                        {
                            out.push(ChatEvent::Text(t.to_string()));
                        }
                    }
                    Some("input_json_delta") => {
                        let index = v["index"].as_u64().unwrap_or(0);
                        if let Some(b) = self.tools.get_mut(&index) {
                            b.json
                                .push_str(d["partial_json"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = v["index"].as_u64().unwrap_or(0);
                if let Some(b) = self.tools.remove(&index) {
                    let arguments = if b.json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&b.json).map_err(|e| {
                            LlmError::Protocol(format!(
                                "anthropic: tool {:?} input is not JSON: {e}",
                                b.name
                            ))
                        })?
                    };
                    out.push(ChatEvent::ToolCall {
                        id: b.id,
                        name: b.name,
                        arguments,
                    });
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.finish = Some(match r {
                        "end_turn" | "stop_sequence" => FinishReason::Stop,
                        "max_tokens" => FinishReason::Length,
                        "tool_use" => FinishReason::ToolCalls,
                        other => FinishReason::Other(other.to_string()),
                    });
                }
                if let Some(o) = v["usage"]["output_tokens"].as_u64() {
                    out.push(ChatEvent::Usage {
                        input: self.input_tokens,
                        output: o as u32,
                    });
                }
            }
            "message_stop" => {
                self.done = true;
                out.push(ChatEvent::Finish(
                    self.finish.take().unwrap_or(FinishReason::Stop),
                ));
            }
            "error" => {
                let e = &v["error"];
                let message = e["message"].as_str().unwrap_or("unknown error").to_string();
                return Err(if e["type"] == "overloaded_error" {
                    LlmError::Overloaded(message)
                } else {
                    LlmError::Provider(message)
                });
            }
            // ping and future event types
            _ => {}
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
