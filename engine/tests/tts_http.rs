//! The OpenAI-compatible speech client against a local server speaking
//! `POST /v1/audio/speech` with `response_format: "pcm"` (raw 24 kHz s16le),
//! streamed in chunks as providers do.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hark::speech::tts::{HttpSynthesizer, HttpSynthesizerConfig, Synthesizer, TtsError};
use media_core::SampleRate;

#[derive(Default)]
struct Server {
    seen: Mutex<Vec<(Option<String>, serde_json::Value)>>,
    mode: Mutex<&'static str>,
}

async fn speech(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.seen.lock().unwrap().push((auth, body));
    let mode = *s.mode.lock().unwrap();
    match mode {
        "ok" => {
            // 0.5 s of a 24 kHz ramp, streamed in 3 uneven chunks.
            let pcm: Vec<u8> = (0..12_000i16)
                .flat_map(|i| (i % 1000).to_le_bytes())
                .collect();
            let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![
                Ok(pcm[..1001 * 2].to_vec()),
                Ok(pcm[2002..15_000].to_vec()),
                Ok(pcm[15_000..].to_vec()),
            ];
            let stream = futures_util::stream::iter(parts);
            Response::builder()
                .header("content-type", "audio/pcm")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        "odd" => (StatusCode::OK, vec![1u8, 2, 3]).into_response(),
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":{"message":"Rate limit reached"}}"#,
        )
            .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
    }
}

async fn start(server: Arc<Server>) -> SocketAddr {
    let app = axum::Router::new()
        .route("/v1/audio/speech", post(speech))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client(addr: SocketAddr) -> HttpSynthesizer {
    HttpSynthesizer::new(HttpSynthesizerConfig {
        base_url: format!("http://{addr}/v1"),
        model: "tts-1".into(),
        voice: "alloy".into(),
        speed: 1.1,
        pcm_rate: SampleRate::new(24_000).unwrap(),
        api_key: Some("sk-tts-secret".into()),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_pcm_is_collected_and_resampled() {
    let server = Arc::new(Server::default());
    *server.mode.lock().unwrap() = "ok";
    let addr = start(server.clone()).await;
    let c = client(addr);
    let audio = c
        .synthesize("It costs $5.".into(), SampleRate::HZ_8000)
        .await
        .unwrap();
    // 12,000 samples at 24 kHz = 0.5 s = 4,000 at 8 kHz.
    assert_eq!(audio.len(), 4_000);
    let (auth, body) = server.seen.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer sk-tts-secret"));
    assert_eq!(body["model"], "tts-1");
    assert_eq!(body["voice"], "alloy");
    assert_eq!(body["response_format"], "pcm");
    assert_eq!(body["input"], "It costs five dollars.");
    assert!((body["speed"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    assert!(!format!("{c:?}").contains("sk-tts"));
    assert_eq!(c.name(), "http/tts-1/alloy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear() {
    let server = Arc::new(Server::default());
    let addr = start(server.clone()).await;
    let c = client(addr);
    for (mode, want) in [
        ("429", "HTTP 429"),
        ("500", "HTTP 500"),
        ("odd", "not whole samples"),
    ] {
        *server.mode.lock().unwrap() = mode;
        match c.synthesize("Hello.".into(), SampleRate::HZ_8000).await {
            Err(TtsError::Synthesis(m)) => assert!(m.contains(want), "{mode}: {m}"),
            other => panic!("{mode}: {other:?}"),
        }
    }
    // Empty text never reaches the server.
    let before = server.seen.lock().unwrap().len();
    assert!(
        c.synthesize("  ".into(), SampleRate::HZ_8000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(server.seen.lock().unwrap().len(), before);
}
