//! The OpenAI-compatible provider transcriber against a local server that
//! speaks `/v1/audio/transcriptions`: multipart in, JSON (verbose_json) out.
// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use hark::speech::stt::{
    HttpTranscriber, HttpTranscriberConfig, SttError, SttRequest, Transcriber,
};
use media_core::{CallId, SampleRate, Turn};
use tokio::sync::oneshot;

/// What the server saw, and what it answers.
#[derive(Default)]
struct Server {
    seen: Mutex<Vec<Seen>>,
    reply: Mutex<(u16, String)>,
    delay: Mutex<Duration>,
}

#[derive(Debug, Clone)]
struct Seen {
    auth: Option<String>,
    model: String,
    language: Option<String>,
    format: String,
    wav_rate: u32,
    wav_samples: usize,
}

async fn transcriptions(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> impl IntoResponse {
    let mut seen = Seen {
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        model: String::new(),
        language: None,
        format: String::new(),
        wav_rate: 0,
        wav_samples: 0,
    };
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.unwrap_or_default();
        match name.as_str() {
            "file" => {
                assert_eq!(file_name.as_deref(), Some("turn.wav"));
                let r = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).expect("a WAV");
                seen.wav_rate = r.spec().sample_rate;
                seen.wav_samples = r.len() as usize;
            }
            "model" => seen.model = String::from_utf8_lossy(&bytes).into(),
            "language" => seen.language = Some(String::from_utf8_lossy(&bytes).into()),
            "response_format" => seen.format = String::from_utf8_lossy(&bytes).into(),
            _ => {}
        }
    }
    s.seen.lock().unwrap().push(seen);
    let delay = *s.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let (status, body) = s.reply.lock().unwrap().clone();
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
}

async fn start(server: Arc<Server>) -> SocketAddr {
    let app = axum::Router::new()
        .route("/v1/audio/transcriptions", post(transcriptions))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn turn() -> Turn {
    Turn::from_recording(SampleRate::HZ_8000, vec![100; 16_000])
}

fn client(addr: SocketAddr, timeout: Duration, max_in_flight: usize) -> HttpTranscriber {
    HttpTranscriber::new(HttpTranscriberConfig {
        base_url: format!("http://{addr}/v1"),
        model: "whisper-1".into(),
        language: Some("en".into()),
        api_key: Some("sk-test-123".into()),
        timeout,
        max_in_flight,
    })
    .unwrap()
}

async fn ask(t: &HttpTranscriber) -> Result<hark::speech::stt::Transcript, SttError> {
    let (tx, rx) = oneshot::channel();
    t.submit(SttRequest {
        call: CallId(uuid::Uuid::new_v4()),
        turn: turn(),
        reply: tx,
    })
    .unwrap();
    rx.await.unwrap()
}

// verbose_json as OpenAI documents it (trimmed to the fields that matter).
const VERBOSE: &str = r#"{"task":"transcribe","language":"english","duration":2.0,
"text":" I would like to book a table.","segments":[{"id":0,"seek":0,"start":0.0,"end":2.0,
"text":" I would like to book a table.","tokens":[50364,286,576,411,281,1446,257,3199,13,50464],
"temperature":0.0,"avg_logprob":-0.105,"compression_ratio":0.9,"no_speech_prob":0.01}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_goes_up_as_a_wav_form_and_comes_back_as_text() {
    let server = Arc::new(Server::default());
    *server.reply.lock().unwrap() = (200, VERBOSE.into());
    let addr = start(server.clone()).await;
    let t = client(addr, Duration::from_secs(5), 2);
    let tr = ask(&t).await.unwrap();
    assert_eq!(tr.text, "I would like to book a table.");
    assert!((tr.confidence - (-0.105f32).exp()).abs() < 1e-3);
    assert_eq!(tr.engine, "http/whisper-1");
    assert_eq!(tr.audio, Duration::from_secs(2));
    let seen = server.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.auth.as_deref(), Some("Bearer sk-test-123"));
    assert_eq!(seen.model, "whisper-1");
    assert_eq!(seen.language.as_deref(), Some("en"));
    assert_eq!(seen.format, "verbose_json");
    assert_eq!((seen.wav_rate, seen.wav_samples), (8_000, 16_000));
    // The key never shows in debug output.
    assert!(!format!("{t:?}").contains("sk-test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_json_and_hallucinations() {
    let server = Arc::new(Server::default());
    let addr = start(server.clone()).await;
    let t = client(addr, Duration::from_secs(5), 2);
    *server.reply.lock().unwrap() = (200, r#"{"text":"Yes please."}"#.into());
    assert_eq!(ask(&t).await.unwrap().text, "Yes please.");
    *server.reply.lock().unwrap() = (200, r#"{"text":" [BLANK_AUDIO]"}"#.into());
    assert_eq!(ask(&t).await, Err(SttError::NoSpeech));
    *server.reply.lock().unwrap() = (
        200,
        r#"{"text":"Thank you.","segments":[{"avg_logprob":-0.4,"no_speech_prob":0.93}]}"#.into(),
    );
    assert_eq!(ask(&t).await, Err(SttError::NoSpeech));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_never_panic() {
    let server = Arc::new(Server::default());
    let addr = start(server.clone()).await;
    let t = client(addr, Duration::from_millis(500), 2);
    let cases = [
        (
            500,
            r#"{"error":{"message":"boom","type":"server_error"}}"#,
            "HTTP 500",
        ),
        (
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
            "HTTP 429",
        ),
        (200, "not json", "invalid response"),
        (200, r#"{"txt":"missing field"}"#, "invalid response"),
    ];
    for (status, body, want) in cases {
        *server.reply.lock().unwrap() = (status, body.into());
        match ask(&t).await {
            Err(SttError::Failed(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{status}: {other:?}"),
        }
    }
    // Larger than 1 MiB: refused, not buffered without bound.
    let huge = format!(r#"{{"text":"{}"}}"#, "a".repeat(2 << 20));
    *server.reply.lock().unwrap() = (200, huge);
    match ask(&t).await {
        Err(SttError::Failed(m)) => assert!(m.contains("larger than"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A slow server: the timeout answers.
    *server.reply.lock().unwrap() = (200, VERBOSE.into());
    *server.delay.lock().unwrap() = Duration::from_secs(2);
    assert!(matches!(ask(&t).await, Err(SttError::Failed(_))));
    // Nobody listening.
    let dead = client("127.0.0.1:1".parse().unwrap(), Duration::from_secs(1), 1);
    assert!(matches!(ask(&dead).await, Err(SttError::Failed(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_are_bounded() {
    let server = Arc::new(Server::default());
    *server.reply.lock().unwrap() = (200, VERBOSE.into());
    *server.delay.lock().unwrap() = Duration::from_millis(300);
    let addr = start(server.clone()).await;
    let t = client(addr, Duration::from_secs(5), 1);
    let (tx, rx) = oneshot::channel();
    t.submit(SttRequest {
        call: CallId(uuid::Uuid::new_v4()),
        turn: turn(),
        reply: tx,
    })
    .unwrap();
    let (tx2, _rx2) = oneshot::channel();
    let second = t.submit(SttRequest {
        call: CallId(uuid::Uuid::new_v4()),
        turn: turn(),
        reply: tx2,
    });
    assert!(
        second.is_err(),
        "the second request must be refused, not queued"
    );
    assert!(rx.await.unwrap().is_ok());
}
