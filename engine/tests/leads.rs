//! Lead extraction through the router, against a local server speaking the
//! OpenAI-compatible streaming wire format (a cloud model cannot run here).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use hark::config::LeadRules;
use hark::leads::{from_model, score, transcript_text};
use hark::llm::{Message, OpenAiCompatible, Policy, Price, Provider, Role, Router, RouterConfig};

type Seen = Arc<Mutex<(String, Vec<serde_json::Value>)>>;

/// One SSE answer whose text is `reply`, cut into small content deltas.
fn sse(reply: &str) -> String {
    let mut out = String::new();
    for piece in reply.as_bytes().chunks(7) {
        let piece = std::str::from_utf8(piece).unwrap();
        let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": piece}}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":40}}\n\n");
    out.push_str("data: [DONE]\n\n");
    out
}

async fn reply(State(seen): State<Seen>, body: Bytes) -> Response {
    let text = {
        let mut s = seen.lock().unwrap();
        s.1.push(serde_json::from_slice(&body).unwrap());
        s.0.clone()
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(sse(&text)))
        .unwrap()
}

async fn model_server(answer: &str) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::new(Mutex::new((answer.to_string(), Vec::new())));
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(reply))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn router(addr: SocketAddr) -> Arc<Router> {
    let model = OpenAiCompatible::new(
        hark::llm::http_client().unwrap(),
        &format!("http://{addr}/v1"),
        "small",
        None,
    );
    Router::new(
        vec![Provider {
            model: Arc::new(model),
            price: Price::default(),
        }],
        None,
        RouterConfig {
            policy: Policy::Priority,
            ..RouterConfig::default()
        },
        None,
    )
}

fn conversation() -> Vec<Message> {
    let line = |role, content: &str| Message {
        role,
        content: content.into(),
    };
    vec![
        line(Role::Assistant, "Hello, Luigi's, how can I help?"),
        line(
            Role::User,
            "Hi, this is Ana Lopez, I need catering for forty people.",
        ),
        line(
            Role::Assistant,
            "Of course. What number can we call you back on?",
        ),
        line(
            Role::User,
            "Five five five, one two three, four five six seven.",
        ),
    ]
}

#[tokio::test]
async fn the_model_fills_the_lead_from_the_transcript() {
    let (addr, seen) = model_server(
        "Here it is: {\"name\": \"Ana Lopez\", \"phone\": \"555 123 4567\", \"email\": null, \
         \"intent\": \"catering for 40 people\", \"notes\": \"\"}",
    )
    .await;
    let transcript = transcript_text(&conversation());
    let lead = from_model(&router(addr), "acme", "call-1", &transcript)
        .await
        .expect("a lead");
    assert_eq!(lead.name.as_deref(), Some("Ana Lopez"));
    assert_eq!(lead.phone.as_deref(), Some("555 123 4567"));
    assert_eq!(lead.email, None);
    assert_eq!(lead.notes, None, "blank means absent");
    let rules = LeadRules {
        keywords: vec![("catering".into(), 20)],
        ..LeadRules::default()
    };
    // 10 + name 20 + phone 25 + intent 20 + "catering" 20.
    assert_eq!(score(&rules, &lead), 95);
    // The request carried the transcript and asked for JSON only.
    let (_, requests) = &*seen.lock().unwrap();
    let body = &requests[0];
    let user = body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(user.contains("Caller: Hi, this is Ana Lopez"), "{user}");
    assert!(body.to_string().contains("JSON"), "{body}");
}

#[tokio::test]
async fn prose_instead_of_json_gives_no_lead() {
    let (addr, _) = model_server("The caller wanted catering, I think.").await;
    let t = transcript_text(&conversation());
    assert!(from_model(&router(addr), "acme", "c", &t).await.is_none());
    let (addr, _) = model_server("{\"name\": null, \"phone\": null}").await;
    assert!(
        from_model(&router(addr), "acme", "c", &t).await.is_none(),
        "all-empty is no lead"
    );
}
