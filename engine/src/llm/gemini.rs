//! Google Gemini, streamed.
//!
//! `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse` with
//! `x-goog-api-key`. Each event is a `GenerateContentResponse`:
//! `candidates[0].content.parts[]` hold `text` or a whole `functionCall`
//! (`name`, `args`); `finishReason` marks the last one; `usageMetadata`
//! carries the token counts. The stream has no end marker: it is complete
//! when a candidate carried a `finishReason`.

use serde_json::{Value, json};

use super::Endpoint;
use super::wire::{Decode, json as parse};
use super::{
    ChatEvent, ChatFuture, ChatModel, ChatRequest, FinishReason, LlmError, Role, SseEvent,
};

/// A Gemini model.
#[derive(Debug)]
pub struct Gemini {
    ep: Endpoint,
}

impl Gemini {
    /// `model` at `base_url` (e.g. `https://generativelanguage.googleapis.com`).
    pub fn new(client: reqwest::Client, base_url: &str, model: &str, api_key: String) -> Self {
        Self {
            ep: Endpoint::new("gemini", client, base_url, model, Some(api_key)),
        }
    }

    fn body(&self, r: &ChatRequest) -> Value {
        let contents: Vec<Value> = r
            .messages
            .iter()
            .map(|m| json!({"role": if m.role == Role::User { "user" } else { "model" }, "parts": [{"text": m.content}]}))
            .collect();
        let mut body = json!({
            "systemInstruction": {"parts": [{"text": r.system}]},
            "contents": contents,
            "generationConfig": {"maxOutputTokens": r.max_tokens, "temperature": r.temperature},
        });
        if !r.tools.is_empty() {
            let decls: Vec<Value> = r
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
                .collect();
            body["tools"] = json!([{"functionDeclarations": decls}]);
        }
        body
    }
}

impl ChatModel for Gemini {
    fn stream(&self, request: ChatRequest) -> ChatFuture {
        let req = self
            .ep
            .client
            .post(format!(
                "{}/v1beta/models/{}:streamGenerateContent?alt=sse",
                self.ep.base_url, self.ep.model
            ))
            .header("x-goog-api-key", self.ep.key())
            .json(&self.body(&request));
        Box::pin(super::wire::open(req, GeminiDecoder::default()))
    }

    fn name(&self) -> &str {
        &self.ep.name
    }
}

/// Decodes `GenerateContentResponse` events.
#[derive(Debug, Default)]
pub(crate) struct GeminiDecoder {
    calls: u32,
    finish: Option<FinishReason>,
}

impl Decode for GeminiDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<ChatEvent>, LlmError> {
        let v = parse("gemini", &event.data)?;
        if let Some(e) = v.get("error") {
            let m = e["message"].as_str().unwrap_or("unknown error").to_string();
            return Err(if e["code"] == 503 || e["status"] == "UNAVAILABLE" {
                LlmError::Overloaded(m)
            } else {
                LlmError::Provider(m)
            });
        }
        let mut out = Vec::new();
        if let Some(c) = v["candidates"].get(0) {
            for part in c["content"]["parts"].as_array().into_iter().flatten() {
                if let Some(t) = part["text"].as_str()
                    && !t.is_empty()
                {
                    out.push(ChatEvent::Text(t.to_string()));
                }
                if let Some(f) = part.get("functionCall") {
                    self.calls += 1;
                    out.push(ChatEvent::ToolCall {
                        id: format!("call_{}", self.calls),
                        name: f["name"].as_str().unwrap_or_default().to_string(),
                        arguments: f.get("args").cloned().unwrap_or_else(|| json!({})),
                    });
                }
            }
            if let Some(r) = c["finishReason"].as_str() {
                self.finish = Some(match r {
                    "STOP" if self.calls > 0 => FinishReason::ToolCalls,
                    "STOP" => FinishReason::Stop,
                    "MAX_TOKENS" => FinishReason::Length,
                    other => FinishReason::Other(other.to_string()),
                });
            }
        }
        if let Some(u) = v.get("usageMetadata") {
            out.push(ChatEvent::Usage {
                input: u["promptTokenCount"].as_u64().unwrap_or(0) as u32,
                output: u["candidatesTokenCount"].as_u64().unwrap_or(0) as u32,
            });
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<ChatEvent>, LlmError> {
        match self.finish.take() {
            Some(f) => Ok(vec![ChatEvent::Finish(f)]),
            None => Err(LlmError::Truncated),
        }
    }
}
