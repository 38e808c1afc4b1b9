//! Runs a streaming HTTP request: status check, then server-sent events
//! through a provider's [`Decode`] into a bounded channel.

use std::time::Duration;

use tokio::sync::mpsc;

use super::sse::SseParser;
use super::{ChatEvent, ChatStream, LlmError, SseEvent};

/// Largest single server-sent event accepted.
const MAX_EVENT: usize = 1 << 20;
/// Largest whole reply body (text plus framing) accepted.
const MAX_BODY: usize = 8 << 20;
/// Events waiting for the consumer.
const QUEUE: usize = 64;

/// A provider's stream format: events in, chat events out.
pub(crate) trait Decode: Send + 'static {
    /// One server-sent event.
    fn event(&mut self, event: SseEvent) -> Result<Vec<ChatEvent>, LlmError>;
    /// The body ended; `Err(Truncated)` if the reply was not complete.
    fn end(&mut self) -> Result<Vec<ChatEvent>, LlmError>;
}

/// Sends `request`, checks the status, and streams the decoded body.
pub(crate) async fn open(
    request: reqwest::RequestBuilder,
    mut decoder: impl Decode,
) -> Result<ChatStream, LlmError> {
    let mut resp = request
        .send()
        .await
        .map_err(|e| LlmError::Connect(e.without_url().to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            if body.len() + chunk.len() > 64 * 1024 {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        return Err(http_error(status.as_u16(), &body, retry_after));
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        let mut parser = SseParser::new(MAX_EVENT);
        let mut total = 0usize;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx
                        .send(Err(LlmError::Connect(e.without_url().to_string())))
                        .await;
                    return;
                }
            };
            total += chunk.len();
            if total > MAX_BODY {
                let _ = tx
                    .send(Err(LlmError::Protocol(format!(
                        "reply larger than {MAX_BODY} bytes"
                    ))))
                    .await;
                return;
            }
            let events = match parser.feed(&chunk) {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx.send(Err(LlmError::Protocol(e.to_string()))).await;
                    return;
                }
            };
            for ev in events {
                if !forward(&tx, decoder.event(ev)).await {
                    return;
                }
            }
        }
        // A stream cut inside an event is cut, whatever the decoder thinks.
        let tail = if parser.finish() {
            Err(LlmError::Truncated)
        } else {
            decoder.end()
        };
        forward(&tx, tail).await;
    });
    Ok(ChatStream::new(rx, task))
}

/// Sends decoded events (or the error) on; false when the stream should
/// stop (an error was sent, or nobody listens any more).
async fn forward(
    tx: &mpsc::Sender<Result<ChatEvent, LlmError>>,
    decoded: Result<Vec<ChatEvent>, LlmError>,
) -> bool {
    match decoded {
        Ok(events) => {
            for e in events {
                if tx.send(Ok(e)).await.is_err() {
                    return false;
                }
            }
            true
        }
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            false
        }
    }
}

/// Maps an HTTP error status and body to an [`LlmError`].
pub(crate) fn http_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> LlmError {
    let message = error_message(body);
    match status {
        429 => LlmError::RateLimited { retry_after },
        529 | 503 => LlmError::Overloaded(message),
        401 | 403 => LlmError::Auth(message),
        _ => LlmError::Http { status, message },
    }
}

/// The provider's error message: `error.message` in JSON (all three
/// providers), else the start of the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let e = &v["error"];
        if let Some(m) = e["message"].as_str() {
            return m.to_string();
        }
        if let Some(m) = e.as_str() {
            return m.to_string();
        }
    }
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// Parses one event's JSON, naming the provider on failure.
pub(crate) fn json(provider: &str, data: &str) -> Result<serde_json::Value, LlmError> {
    serde_json::from_str(data)
        .map_err(|e| LlmError::Protocol(format!("{provider}: invalid JSON in event: {e}")))
}
