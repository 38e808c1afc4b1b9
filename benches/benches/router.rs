//! Router overhead on time to first token: a direct request to a local
//! OpenAI-compatible server against the same request through the router
//! (plan, breaker, timeouts, accounting), interleaved in the same run.
//! Prints p50/p99 of both and of the difference. Loopback only.
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use hark::llm::{
    ChatModel, ChatRequest, Message, OpenAiCompatible, Price, Provider, Role, Router, RouterConfig,
    http_client,
};
use hdrhistogram::Histogram;

const RUNS: usize = 2_000;
const BODY: &str = include_str!("../../engine/tests/data/llm/openai_text.sse");

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(|| async { ([("content-type", "text/event-stream")], BODY) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let model: Arc<dyn ChatModel> = Arc::new(OpenAiCompatible::new(
            http_client().unwrap(),
            &format!("http://{addr}/v1"),
            "bench",
            None,
        ));
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let router = Router::new(
            vec![Provider {
                model: Arc::clone(&model),
                price: Price::default(),
            }],
            None,
            RouterConfig::default(),
            Some(tx),
        );
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let request = ChatRequest {
            system: "s".into(),
            messages: vec![Message {
                role: Role::User,
                content: "hi".into(),
            }],
            tools: vec![],
            max_tokens: 50,
            temperature: 0.0,
        };
        let mut direct = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
        let mut routed = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
        for i in 0..RUNS + 100 {
            let t = Instant::now();
            let mut s = model.stream(request.clone()).await.unwrap();
            s.next().await.unwrap().unwrap();
            let d = t.elapsed();
            while s.next().await.is_some() {}

            let t = Instant::now();
            let mut r = router.reply("bench", request.clone()).await.unwrap();
            r.next().await.unwrap().unwrap();
            let rd = t.elapsed();
            while r.next().await.is_some() {}
            if i >= 100 {
                direct.record(d.as_micros() as u64).unwrap();
                routed.record(rd.as_micros() as u64).unwrap();
            }
        }
        let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
        println!("time to first token over loopback, {RUNS} requests each, interleaved:");
        println!(
            "  direct       p50 {:>6.0} us  p99 {:>6.0} us",
            q(&direct, 0.5),
            q(&direct, 0.99)
        );
        println!(
            "  via router   p50 {:>6.0} us  p99 {:>6.0} us",
            q(&routed, 0.5),
            q(&routed, 0.99)
        );
        println!(
            "  router overhead: p50 {:+.0} us, p99 {:+.0} us",
            q(&routed, 0.5) - q(&direct, 0.5),
            q(&routed, 0.99) - q(&direct, 0.99)
        );
    });
}
