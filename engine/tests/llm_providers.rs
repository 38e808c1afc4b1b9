//! Each provider's streaming client against a local server that replays
//! byte-exact bodies of that provider's wire format (tests/data/llm/), and
//! its HTTP errors, cut streams, slow first tokens and malformed bodies.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use futures_util::StreamExt;
use hark::llm::{
    Anthropic, ChatEvent, ChatModel, ChatRequest, FinishReason, Gemini, LlmError, Message,
    OpenAiCompatible, Role, builtin_tools,
};
use serde_json::json;

/// What the server answers next, and what it saw.
#[derive(Default)]
struct Script {
    status: u16,
    headers: Vec<(&'static str, String)>,
    chunks: Vec<Vec<u8>>,
    first_delay: Duration,
    seen: Vec<(HeaderMap, serde_json::Value)>,
}

type Shared = Arc<Mutex<Script>>;

async fn reply(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (status, extra, chunks, delay) = {
        let mut s = s.lock().unwrap();
        s.seen.push((
            headers,
            serde_json::from_slice(&body).unwrap_or(json!(null)),
        ));
        (s.status, s.headers.clone(), s.chunks.clone(), s.first_delay)
    };
    let stream =
        futures_util::stream::iter(chunks.into_iter().enumerate()).then(move |(i, c)| async move {
            if i == 0 {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, std::io::Error>(c)
        });
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "text/event-stream");
    for (k, v) in extra {
        b = b.header(k, v);
    }
    b.body(Body::from_stream(stream)).unwrap()
}

async fn server() -> (SocketAddr, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Script {
        status: 200,
        ..Script::default()
    }));
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(reply))
        .route("/v1/messages", post(reply))
        .route("/v1beta/models/{model}", post(reply))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

fn set(s: &Shared, status: u16, body: &[u8]) {
    let mut s = s.lock().unwrap();
    s.status = status;
    s.headers.clear();
    s.first_delay = Duration::ZERO;
    // Cut into uneven pieces, as TCP delivers them.
    s.chunks = body.chunks(37).map(<[u8]>::to_vec).collect();
}

fn request() -> ChatRequest {
    ChatRequest {
        system: "You are a helpful receptionist.".into(),
        messages: vec![Message {
            role: Role::User,
            content: "Book a table for two.".into(),
        }],
        tools: builtin_tools(),
        max_tokens: 200,
        temperature: 0.3,
    }
}

async fn collect(model: &dyn ChatModel) -> Result<Vec<ChatEvent>, LlmError> {
    let mut stream = model.stream(request()).await?;
    let mut out = Vec::new();
    while let Some(e) = stream.next().await {
        out.push(e?);
    }
    Ok(out)
}

fn client() -> reqwest::Client {
    hark::llm::http_client().unwrap()
}

fn openai(addr: SocketAddr) -> OpenAiCompatible {
    OpenAiCompatible::new(
        client(),
        &format!("http://{addr}/v1"),
        "gpt-4o-mini",
        Some("sk-test".into()),
    )
}

fn text(e: &[ChatEvent]) -> String {
    e.iter()
        .filter_map(|e| match e {
            ChatEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn openai_text_usage_and_request_shape() {
    let (addr, s) = server().await;
    set(&s, 200, include_bytes!("data/llm/openai_text.sse"));
    let events = collect(&openai(addr)).await.unwrap();
    assert_eq!(text(&events), "Your table is booked.");
    assert!(events.contains(&ChatEvent::Usage {
        input: 42,
        output: 6
    }));
    assert_eq!(events.last(), Some(&ChatEvent::Finish(FinishReason::Stop)));
    let (headers, body) = s.lock().unwrap().seen[0].clone();
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "Book a table for two.");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "transfer_to_human");
}

#[tokio::test]
async fn openai_tool_call_deltas_are_assembled() {
    let (addr, s) = server().await;
    set(&s, 200, include_bytes!("data/llm/openai_tool.sse"));
    let events = collect(&openai(addr)).await.unwrap();
    assert!(events.contains(&ChatEvent::ToolCall {
        id: "call_abc123".into(),
        name: "transfer_to_human".into(),
        arguments: json!({"reason": "caller asked for a person"}),
    }));
    assert_eq!(
        events.last(),
        Some(&ChatEvent::Finish(FinishReason::ToolCalls))
    );
    assert!(events.contains(&ChatEvent::Usage {
        input: 120,
        output: 18
    }));
}

#[tokio::test]
async fn anthropic_text_tool_use_usage_and_overload() {
    let (addr, s) = server().await;
    set(&s, 200, include_bytes!("data/llm/anthropic_tool.sse"));
    let m = Anthropic::new(
        client(),
        &format!("http://{addr}"),
        "claude-3-5-haiku-20241022",
        "ak-test".into(),
    );
    let events = collect(&m).await.unwrap();
    assert_eq!(text(&events), "Let me transfer you.");
    assert!(events.contains(&ChatEvent::ToolCall {
        id: "toolu_01A".into(),
        name: "transfer_to_human".into(),
        arguments: json!({"reason": "billing question"}),
    }));
    assert!(events.contains(&ChatEvent::Usage {
        input: 37,
        output: 41
    }));
    assert_eq!(
        events.last(),
        Some(&ChatEvent::Finish(FinishReason::ToolCalls))
    );
    let (headers, body) = s.lock().unwrap().seen[0].clone();
    assert_eq!(headers["x-api-key"], "ak-test");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(body["system"], "You are a helpful receptionist.");
    assert_eq!(body["tools"][2]["input_schema"]["required"][0], "intent");
    // An overloaded error event mid-stream.
    set(&s, 200, include_bytes!("data/llm/anthropic_overloaded.sse"));
    assert_eq!(
        collect(&m).await,
        Err(LlmError::Overloaded("Overloaded".into()))
    );
    // And as HTTP 529.
    set(
        &s,
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert_eq!(
        collect(&m).await,
        Err(LlmError::Overloaded("Overloaded".into()))
    );
}

#[tokio::test]
async fn gemini_text_function_call_and_usage() {
    let (addr, s) = server().await;
    let m = Gemini::new(
        client(),
        &format!("http://{addr}"),
        "gemini-2.0-flash",
        "gk-test".into(),
    );
    set(&s, 200, include_bytes!("data/llm/gemini_text.sse"));
    let events = collect(&m).await.unwrap();
    assert_eq!(text(&events), "Your table is booked.");
    assert!(events.contains(&ChatEvent::Usage {
        input: 30,
        output: 7
    }));
    assert_eq!(events.last(), Some(&ChatEvent::Finish(FinishReason::Stop)));
    set(&s, 200, include_bytes!("data/llm/gemini_tool.sse"));
    let events = collect(&m).await.unwrap();
    assert!(events.contains(&ChatEvent::ToolCall {
        id: "call_1".into(),
        name: "record_lead".into(),
        arguments: json!({"intent": "book a table", "name": "Ana"}),
    }));
    assert_eq!(
        events.last(),
        Some(&ChatEvent::Finish(FinishReason::ToolCalls))
    );
    let (headers, body) = s.lock().unwrap().seen[0].clone();
    assert_eq!(headers["x-goog-api-key"], "gk-test");
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(
        body["systemInstruction"]["parts"][0]["text"],
        "You are a helpful receptionist."
    );
    assert!(body["tools"][0]["functionDeclarations"].is_array());
}

#[tokio::test]
async fn http_errors_map_to_typed_errors() {
    let (addr, s) = server().await;
    let m = openai(addr);
    set(&s, 429, br#"{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","code":"rate_limit_exceeded"}}"#);
    s.lock().unwrap().headers.push(("retry-after", "7".into()));
    assert_eq!(
        collect(&m).await,
        Err(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        })
    );
    set(&s, 500, br#"{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}"#);
    assert_eq!(
        collect(&m).await,
        Err(LlmError::Http {
            status: 500,
            message: "The server had an error while processing your request.".into()
        })
    );
    set(
        &s,
        401,
        br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#,
    );
    assert_eq!(
        collect(&m).await,
        Err(LlmError::Auth("Incorrect API key provided".into()))
    );
    let dead = OpenAiCompatible::new(client(), "http://127.0.0.1:1/v1", "x", None);
    assert!(matches!(collect(&dead).await, Err(LlmError::Connect(_))));
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_truncated_after_what_arrived() {
    let (addr, s) = server().await;
    let full = include_str!("data/llm/openai_text.sse");
    let cut = &full[..full.find(" is booked").unwrap() + 20];
    set(&s, 200, cut.as_bytes());
    let mut stream = openai(addr).stream(request()).await.unwrap();
    assert_eq!(
        stream.next().await,
        Some(Ok(ChatEvent::Text("Your table".into())))
    );
    assert_eq!(stream.next().await, Some(Err(LlmError::Truncated)));
    assert_eq!(stream.next().await, None);
}

#[tokio::test]
async fn a_slow_first_token_arrives_late_but_whole() {
    let (addr, s) = server().await;
    set(&s, 200, include_bytes!("data/llm/openai_text.sse"));
    s.lock().unwrap().first_delay = Duration::from_millis(400);
    let t = Instant::now();
    let mut stream = openai(addr).stream(request()).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(390));
    assert_eq!(first, ChatEvent::Text("Your table".into()));
}

#[tokio::test]
async fn malformed_and_enormous_bodies_are_clear_errors() {
    let (addr, s) = server().await;
    let m = openai(addr);
    set(&s, 200, b"data: {not json}\n\n");
    assert!(matches!(collect(&m).await, Err(LlmError::Protocol(e)) if e.contains("invalid JSON")));
    set(&s, 200, b"data: \xff\xfe\n\n");
    assert!(matches!(collect(&m).await, Err(LlmError::Protocol(_))));
    // One 2 MiB event: refused at the 1 MiB event limit, not buffered whole.
    let mut huge = b"data: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 << 20));
    set(&s, 200, &huge);
    assert!(matches!(collect(&m).await, Err(LlmError::Protocol(e)) if e.contains("larger than")));
    // Many small events past the 8 MiB reply limit.
    let one = br#"data: {"choices":[{"index":0,"delta":{"content":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}]}

"#;
    let many: Vec<u8> = one.repeat((9 << 20) / one.len());
    set(&s, 200, &many);
    let r = collect(&m).await;
    assert!(
        matches!(&r, Err(LlmError::Protocol(e)) if e.contains("larger than")),
        "{r:?}"
    );
    // A stream with no [DONE] and nothing in it.
    set(&s, 200, b": keep-alive\n\n");
    assert_eq!(collect(&m).await, Err(LlmError::Truncated));
}
