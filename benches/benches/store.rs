//! The control plane under load, on this machine's real MariaDB (and the
//! SQLite default for comparison):
//!
//! 1. Sustained transcript-segment writes per second through the writer
//!    (bounded queue -> batched transactions), with batches of 256 and, as
//!    the baseline in the same run, one transaction per event.
//! 2. API latency (p50/p95/p99 from hdrhistogram) for `GET /v1/calls` and
//!    `GET /v1/stats` with 100,000 calls stored, 8 concurrent clients on
//!    loopback; `GET /healthz` (no database) is the baseline.
//!
//! Run: `benches/run-store` (or `cargo bench -p hark-benches --bench store`).
//! Needs MariaDB on 127.0.0.1:3306 (root, no password); HARK_BENCH_CALLS
//! and HARK_BENCH_SECS change the stored calls and the seconds per endpoint,
//! HARK_BENCH_PART=writes|api runs one half.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hark::stats::Percentiles;
use hark::store::testing::{execute, write};
use hark::store::{
    AiRequest, CallEnd, CallStart, Role, Segment, Store, StoreEvent, Turn, spawn_writer,
};
use hark::{Config, Server};

const MYSQL: &str = "mysql://root@127.0.0.1:3306";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh database: (url, cleanup name).
async fn fresh(mysql: bool, dir: &std::path::Path) -> (String, Option<String>) {
    if mysql {
        let name = format!(
            "hark_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let admin = Store::connect(&format!("{MYSQL}/test"))
            .await
            .unwrap_or_else(|e| panic!("MariaDB on 127.0.0.1:3306 is needed for this bench: {e}"));
        execute(&admin, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await;
        (format!("{MYSQL}/{name}"), Some(name))
    } else {
        let file = dir.join(format!("bench-{}.db", uuid::Uuid::new_v4().simple()));
        (format!("sqlite://{}", file.display()), None)
    }
}

async fn drop_db(name: Option<String>) {
    if let Some(name) = name {
        let admin = Store::connect(&format!("{MYSQL}/test")).await.unwrap();
        execute(&admin, &format!("DROP DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await;
    }
}

fn segment(call: &str, seq: i64) -> StoreEvent {
    StoreEvent::Segment(Segment {
        call_id: call.to_string(),
        seq,
        speaker: if seq % 2 == 0 { "caller" } else { "agent" }.into(),
        text: "I would like a table for four people at seven thirty tonight, please.".into(),
        start_ms: seq * 2_000,
        end_ms: seq * 2_000 + 1_800,
        confidence: None,
        interrupted: false,
    })
}

/// Segments per second through the writer with `batch` events per commit.
async fn write_rate(mysql: bool, batch: usize, n: usize, dir: &std::path::Path) -> f64 {
    let (url, name) = fresh(mysql, dir).await;
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let spool = dir.join(format!("{}.spool", uuid::Uuid::new_v4().simple()));
    let w = spawn_writer(store.clone(), spool, 8192, batch, Duration::from_secs(1)).unwrap();
    let stats = w.stats();
    let mut rec = w.recorder();
    let started = Instant::now();
    let mut call = uuid::Uuid::new_v4().to_string();
    for i in 0..n {
        if i % 100 == 0 {
            call = uuid::Uuid::new_v4().to_string();
        }
        rec.record(segment(&call, (i % 100) as i64));
        if rec.held() > 0 {
            // The queue is full: the producer waits, as a call's end does.
            rec.flush().await;
        }
    }
    rec.flush().await;
    while (stats.written.load(Ordering::Relaxed) as usize) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(rec);
    w.finish(Duration::from_secs(5)).await;
    assert_eq!(
        stats.spooled.load(Ordering::Relaxed),
        0,
        "no outage during the bench"
    );
    store.close().await;
    drop_db(name).await;
    n as f64 / secs
}

/// `calls` finished calls over the last 30 days, each with one turn and one
/// model request, written in large batches.
async fn seed(store: &Store, calls: usize) {
    let now = hark::store::now_ms();
    let span = 30 * 24 * 3600 * 1000i64;
    let providers = ["openai", "anthropic", "ollama"];
    let outcomes = [
        "completed",
        "completed",
        "transferred",
        "abandoned",
        "failed",
    ];
    let mut batch = Vec::with_capacity(4_000);
    let started = Instant::now();
    for i in 0..calls {
        let id = uuid::Uuid::new_v4().to_string();
        let at = now - span + (i as i64 * span / calls as i64);
        batch.push(StoreEvent::CallStarted(CallStart {
            call_id: id.clone(),
            tenant: "bench".into(),
            agent: ["reception", "sales"][i % 2].into(),
            caller_id: Some(format!("+1555{:07}", i % 5000)),
            dnis: Some("100".into()),
            direction: "inbound".into(),
            start_ms: at,
            answer_ms: Some(at),
            metadata: None,
            node: None,
        }));
        batch.push(StoreEvent::Turn(Turn {
            call_id: id.clone(),
            seq: 0,
            tenant: "bench".into(),
            at_ms: at + 3_000,
            v2v_ms: 400 + (i as i64 * 7919) % 500,
            endpoint_ms: 400,
            stt_ms: 20,
            first_token_ms: 100,
            first_audio_ms: 60,
            playout_ms: 0,
        }));
        batch.push(StoreEvent::AiRequest(AiRequest {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: "bench".into(),
            call_id: Some(id.clone()),
            provider: providers[i % 3].into(),
            model: "m".into(),
            tokens_in: 500,
            tokens_out: 60,
            cost: 0.001,
            first_token_ms: Some(300),
            total_ms: 900,
            outcome: "ok".into(),
            at_ms: at + 3_000,
        }));
        batch.push(StoreEvent::CallEnded(CallEnd {
            call_id: id,
            tenant: "bench".into(),
            agent: ["reception", "sales"][i % 2].into(),
            end_ms: at + 90_000,
            duration_ms: 90_000,
            outcome: outcomes[i % 5].into(),
            handoff_target: None,
            reason: None,
        }));
        if batch.len() >= 4_000 {
            assert_eq!(write(store, &batch).await.unwrap(), 0);
            batch.clear();
        }
    }
    write(store, &batch).await.unwrap();
    eprintln!(
        "  seeded {calls} calls in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `clients` concurrent loops on `path` for `secs`: latencies and requests/s.
async fn load(
    base: &str,
    token: &str,
    path: &str,
    clients: usize,
    secs: u64,
) -> (Percentiles, f64) {
    let http = hark::llm::http_client().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token, stop) = (
            http.clone(),
            format!("{base}{path}"),
            token.to_string(),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
                assert!(r.status().is_success(), "{url}: {}", r.status());
                let _ = r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (Percentiles::from_durations(all), rate)
}

async fn api_latency(mysql: bool, calls: usize, secs: u64, dir: &std::path::Path) {
    let (url, name) = fresh(mysql, dir).await;
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    seed(&store, calls).await;
    let token = store
        .create_token("bench", Role::Viewer, "bench")
        .await
        .unwrap()
        .token;
    let text = format!(
        "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:0\"\nagent = \"echo\"\n[agent.echo]\nkind = \"echo\"\n\
         [store]\nurl = \"{url}\"\nspool = \"{}\"\n[api]\naddress = \"127.0.0.1:0\"\nrate_per_sec = 1000000\nburst = 1000000\n",
        dir.join(format!("{}.spool", uuid::Uuid::new_v4().simple()))
            .display()
    );
    let server = Server::bind(Config::parse(&text).unwrap()).await.unwrap();
    let base = format!("http://{}", server.api_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let now = hark::store::now_ms();
    let week = now - 7 * 24 * 3600 * 1000;
    let month = now - 30 * 24 * 3600 * 1000;
    let paths = [
        (
            "GET /healthz (baseline, no database)",
            "/healthz".to_string(),
        ),
        ("GET /v1/calls?limit=50", "/v1/calls?limit=50".to_string()),
        (
            "GET /v1/calls?outcome=transferred&agent=sales&limit=50",
            "/v1/calls?outcome=transferred&agent=sales&limit=50".to_string(),
        ),
        ("GET /v1/stats (last 24 h)", "/v1/stats".to_string()),
        (
            "GET /v1/stats (last 7 days)",
            format!("/v1/stats?from={week}"),
        ),
        (
            "GET /v1/stats (30 days: all calls)",
            format!("/v1/stats?from={month}"),
        ),
    ];
    let db = if mysql { "MariaDB" } else { "SQLite" };
    println!("\nAPI latency, {db}, {calls} calls stored, 8 concurrent clients, {secs} s each:");
    let mut base_p50 = None;
    for (label, path) in paths {
        let (p, rate) = load(&base, &token, &path, 8, secs).await;
        let b = *base_p50.get_or_insert(p.p50);
        println!(
            "  {label}: {p}, {rate:.0} req/s; p50 {:.1}x the baseline",
            p.p50.as_secs_f64() / b.as_secs_f64()
        );
    }
    let _ = stop.send(());
    let _ = task.await;
    store.close().await;
    drop_db(name).await;
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then
    // only check that the bench builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile_dir();
    let calls = env_num("HARK_BENCH_CALLS", 100_000) as usize;
    let secs = env_num("HARK_BENCH_SECS", 10);
    // HARK_BENCH_PART=writes or =api runs one half.
    let part = std::env::var("HARK_BENCH_PART").unwrap_or_default();
    rt.block_on(async {
        if part != "api" {
            println!("Transcript-segment writes through the writer:");
        }
        for mysql in [true, false].into_iter().filter(|_| part != "api") {
            let db = if mysql { "MariaDB" } else { "SQLite" };
            let one = write_rate(mysql, 1, 5_000, &dir).await;
            let batched = write_rate(mysql, 256, 200_000, &dir).await;
            println!(
                "  {db}: {batched:.0} segments/s with batches of 256; {one:.0}/s one per transaction (baseline); ratio {:.1}x",
                batched / one
            );
        }
        if part != "writes" {
            api_latency(true, calls, secs, &dir).await;
            api_latency(false, calls, secs, &dir).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hark-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
