//! Router scenarios on a simulated clock (tokio's paused time): failover
//! before the first token and not after, circuit breakers, policies,
//! budgets, and the scripted fallback. The providers here are in-process
//! fakes; their wire formats are tested in llm_providers.rs.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hark::llm::{
    ChatEvent, ChatFuture, ChatModel, ChatRequest, ChatStream, FinishReason, LlmError, Message,
    Outcome, Policy, Price, Provider, Role, RouteError, Router, RouterConfig, Script,
    ScriptQuestion, ScriptedModel, TokenBudget, UsageRecord,
};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
enum Mode {
    /// Reply "hello from NAME" after this delay.
    Ok(Duration),
    /// Fail before any token.
    Fail(LlmError),
    /// One token, then an error.
    FailAfterFirst,
}

#[derive(Debug)]
struct Fake {
    name: String,
    mode: Mutex<Mode>,
    calls: AtomicU32,
}

impl Fake {
    fn new(name: &str, mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            mode: Mutex::new(mode),
            calls: AtomicU32::new(0),
        })
    }
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ChatModel for Fake {
    fn stream(&self, _request: ChatRequest) -> ChatFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode.lock().unwrap().clone();
        let name = self.name.clone();
        Box::pin(async move {
            if let Mode::Fail(e) = &mode {
                return Err(e.clone());
            }
            let (tx, rx) = mpsc::channel(8);
            let task = tokio::spawn(async move {
                if let Mode::Ok(delay) = mode {
                    tokio::time::sleep(delay).await;
                }
                let _ = tx
                    .send(Ok(ChatEvent::Text(format!("hello from {name}"))))
                    .await;
                if let Mode::FailAfterFirst = mode {
                    let _ = tx.send(Err(LlmError::Truncated)).await;
                    return;
                }
                let _ = tx
                    .send(Ok(ChatEvent::Usage {
                        input: 1_000,
                        output: 500,
                    }))
                    .await;
                let _ = tx.send(Ok(ChatEvent::Finish(FinishReason::Stop))).await;
            });
            Ok(hark_stream(rx, task))
        })
    }
    fn name(&self) -> &str {
        &self.name
    }
}

fn hark_stream(
    rx: mpsc::Receiver<Result<ChatEvent, LlmError>>,
    task: tokio::task::JoinHandle<()>,
) -> ChatStream {
    ChatStream::from_parts(rx, task)
}

fn request() -> ChatRequest {
    ChatRequest {
        system: "s".into(),
        messages: vec![Message {
            role: Role::User,
            content: "hi".into(),
        }],
        tools: vec![],
        max_tokens: 100,
        temperature: 0.0,
    }
}

fn script() -> Arc<dyn ChatModel> {
    Arc::new(ScriptedModel::new(Script {
        greeting: "Hello.".into(),
        questions: vec![ScriptQuestion {
            slot: "name".into(),
            ask: "What is your name?".into(),
        }],
        confirm: "{name}.".into(),
        closing: "Bye.".into(),
        retry: "Again.".into(),
    }))
}

fn router(
    providers: Vec<(Arc<Fake>, f64)>,
    config: RouterConfig,
) -> (Arc<Router>, mpsc::Receiver<UsageRecord>) {
    let (tx, rx) = mpsc::channel(64);
    let providers = providers
        .into_iter()
        .map(|(m, price)| Provider {
            model: m as Arc<dyn ChatModel>,
            price: Price {
                input_per_1k: price,
                output_per_1k: price,
            },
        })
        .collect();
    (Router::new(providers, Some(script()), config, Some(tx)), rx)
}

async fn text_of(router: &Arc<Router>) -> (String, String, Vec<Result<ChatEvent, LlmError>>) {
    let mut reply = router.reply("acme", request()).await.unwrap();
    let provider = reply.provider().to_string();
    let mut events = Vec::new();
    while let Some(e) = reply.next().await {
        events.push(e);
    }
    let text = events
        .iter()
        .filter_map(|e| match e {
            Ok(ChatEvent::Text(t)) => Some(t.clone()),
            _ => None,
        })
        .collect();
    (provider, text, events)
}

fn drain(rx: &mut mpsc::Receiver<UsageRecord>) -> Vec<UsageRecord> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::test(start_paused = true)]
async fn fails_over_before_the_first_token_and_accounts_for_both() {
    let a = Fake::new("a", Mode::Fail(LlmError::RateLimited { retry_after: None }));
    let b = Fake::new("b", Mode::Ok(Duration::from_millis(200)));
    let (r, mut records) = router(
        vec![(a.clone(), 1.0), (b.clone(), 2.0)],
        RouterConfig::default(),
    );
    let (provider, text, _) = text_of(&r).await;
    assert_eq!((provider.as_str(), text.as_str()), ("b", "hello from b"));
    let recs = drain(&mut records);
    assert_eq!(recs.len(), 2);
    assert!(matches!(&recs[0].outcome, Outcome::Failed(m) if m.contains("rate limited")));
    assert_eq!(recs[1].outcome, Outcome::Ok);
    assert_eq!((recs[1].input_tokens, recs[1].output_tokens), (1_000, 500));
    assert!(
        (recs[1].cost - 3.0).abs() < 1e-9,
        "1k in + 0.5k out at 2.0 per 1k"
    );
    assert_eq!(
        recs[1].time_to_first_token,
        Some(Duration::from_millis(200))
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_token_times_out_and_fails_over() {
    let a = Fake::new("a", Mode::Ok(Duration::from_secs(10)));
    let b = Fake::new("b", Mode::Ok(Duration::from_millis(100)));
    let config = RouterConfig {
        first_token_timeout: Duration::from_secs(1),
        ..RouterConfig::default()
    };
    let (r, _rec) = router(vec![(a, 1.0), (b, 1.0)], config);
    let t = tokio::time::Instant::now();
    let (provider, _, _) = text_of(&r).await;
    assert_eq!(provider, "b");
    // One second waiting for a, then b's 100 ms.
    assert_eq!(t.elapsed(), Duration::from_millis(1_100));
}

#[tokio::test(start_paused = true)]
async fn no_failover_after_the_first_token() {
    let a = Fake::new("a", Mode::FailAfterFirst);
    let b = Fake::new("b", Mode::Ok(Duration::ZERO));
    let (r, mut records) = router(vec![(a, 1.0), (b.clone(), 1.0)], RouterConfig::default());
    let (provider, text, events) = text_of(&r).await;
    assert_eq!((provider.as_str(), text.as_str()), ("a", "hello from a"));
    assert_eq!(events.last(), Some(&Err(LlmError::Truncated)));
    assert_eq!(b.calls(), 0, "the caller already heard a: no second voice");
    assert!(matches!(drain(&mut records)[0].outcome, Outcome::Failed(_)));
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_then_a_probe_closes_it() {
    let a = Fake::new(
        "a",
        Mode::Fail(LlmError::Http {
            status: 500,
            message: "boom".into(),
        }),
    );
    let b = Fake::new("b", Mode::Ok(Duration::ZERO));
    let config = RouterConfig {
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(30),
        ..RouterConfig::default()
    };
    let (r, _rec) = router(vec![(a.clone(), 1.0), (b, 1.0)], config);
    for _ in 0..3 {
        assert_eq!(text_of(&r).await.0, "b");
    }
    assert_eq!(a.calls(), 3);
    // Open: a is skipped.
    assert_eq!(text_of(&r).await.0, "b");
    assert_eq!(a.calls(), 3);
    // After the cool-down, one probe; a has recovered.
    tokio::time::advance(Duration::from_secs(31)).await;
    a.set(Mode::Ok(Duration::ZERO));
    assert_eq!(text_of(&r).await.0, "a");
    assert_eq!(a.calls(), 4);
    assert_eq!(text_of(&r).await.0, "a");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_breaker_again() {
    let a = Fake::new("a", Mode::Fail(LlmError::Overloaded("busy".into())));
    let b = Fake::new("b", Mode::Ok(Duration::ZERO));
    let config = RouterConfig {
        breaker_failures: 1,
        ..RouterConfig::default()
    };
    let (r, _rec) = router(vec![(a.clone(), 1.0), (b, 1.0)], config);
    text_of(&r).await;
    tokio::time::advance(Duration::from_secs(31)).await;
    text_of(&r).await; // the probe fails
    assert_eq!(a.calls(), 2);
    text_of(&r).await; // open again: skipped
    assert_eq!(a.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn cheapest_and_fastest_pick_as_specified() {
    let a = Fake::new("a", Mode::Ok(Duration::from_millis(300)));
    let b = Fake::new("b", Mode::Ok(Duration::from_millis(50)));
    let c = Fake::new("c", Mode::Ok(Duration::from_millis(120)));
    let cheap = RouterConfig {
        policy: Policy::Cheapest,
        ..RouterConfig::default()
    };
    let (r, _rec) = router(
        vec![(a.clone(), 3.0), (b.clone(), 2.0), (c.clone(), 0.5)],
        cheap,
    );
    assert_eq!(text_of(&r).await.0, "c");

    let fast = RouterConfig {
        policy: Policy::Fastest,
        ..RouterConfig::default()
    };
    let (r, _rec) = router(
        vec![(a.clone(), 1.0), (b.clone(), 1.0), (c.clone(), 1.0)],
        fast,
    );
    // Untried providers go first (so each gets measured)...
    let first: Vec<String> = [
        text_of(&r).await.0,
        text_of(&r).await.0,
        text_of(&r).await.0,
    ]
    .into();
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "b", "c"]);
    // ...then the fastest by its moving time to first token.
    for _ in 0..3 {
        assert_eq!(text_of(&r).await.0, "b");
    }
    // b slows down: the average moves, and c takes over.
    b.set(Mode::Ok(Duration::from_millis(1_000)));
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(text_of(&r).await.0);
    }
    assert_eq!(seen.last().map(String::as_str), Some("c"), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_and_total_outage_fall_back_to_the_scripted_agent() {
    let a = Fake::new("a", Mode::Ok(Duration::ZERO));
    let config = RouterConfig {
        budget: Some(TokenBudget {
            tokens: 2_000,
            window: Duration::from_secs(3_600),
        }),
        ..RouterConfig::default()
    };
    let (r, _rec) = router(vec![(a.clone(), 1.0)], config);
    assert_eq!(text_of(&r).await.0, "a"); // 1,500 tokens
    assert_eq!(text_of(&r).await.0, "a"); // 3,000: over from now on
    let (provider, text, _) = text_of(&r).await;
    // The script takes over mid-conversation: the caller's "hi" answered its question.
    assert_eq!(
        (provider.as_str(), text.as_str()),
        ("scripted", "hi. Is that right?")
    );
    assert_eq!(a.calls(), 2);
    // A new window restores the tenant.
    tokio::time::advance(Duration::from_secs(3_601)).await;
    assert_eq!(text_of(&r).await.0, "a");

    let down = Fake::new("down", Mode::Fail(LlmError::Connect("refused".into())));
    let (r, _rec) = router(vec![(down, 1.0)], RouterConfig::default());
    assert_eq!(text_of(&r).await.0, "scripted");
}

#[tokio::test(start_paused = true)]
async fn the_request_rate_limit_applies_per_tenant() {
    let a = Fake::new("a", Mode::Ok(Duration::ZERO));
    let config = RouterConfig {
        requests_per_minute: Some(2),
        ..RouterConfig::default()
    };
    let (r, _rec) = router(vec![(a, 1.0)], config);
    assert_eq!(text_of(&r).await.0, "a");
    assert_eq!(text_of(&r).await.0, "a");
    assert_eq!(text_of(&r).await.0, "scripted");
    // Another tenant is not affected.
    let reply = r.reply("other", request()).await.unwrap();
    assert_eq!(reply.provider(), "a");
    drop(reply);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(text_of(&r).await.0, "a");
}

#[tokio::test(start_paused = true)]
async fn without_a_fallback_the_error_says_why() {
    let a = Fake::new("a", Mode::Fail(LlmError::Auth("bad key".into())));
    let router = Router::new(
        vec![Provider {
            model: a as Arc<dyn ChatModel>,
            price: Price::default(),
        }],
        None,
        RouterConfig::default(),
        None,
    );
    match router.reply("t", request()).await {
        Err(RouteError::AllFailed(m)) => assert!(m.contains("bad key"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_reply_dropped_mid_way_is_recorded_as_cancelled() {
    let a = Fake::new("a", Mode::Ok(Duration::ZERO));
    let (r, mut records) = router(vec![(a, 1.0)], RouterConfig::default());
    let mut reply = r.reply("acme", request()).await.unwrap();
    assert!(matches!(reply.next().await, Some(Ok(ChatEvent::Text(_)))));
    drop(reply); // barge-in
    assert_eq!(drain(&mut records)[0].outcome, Outcome::Cancelled);
}
