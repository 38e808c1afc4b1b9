//! The database goes away and comes back: every event is there exactly
//! once. MariaDB is cut off by a loopback proxy that drops every
//! connection (as a crashed server or a broken link looks); SQLite is
//! locked by another connection (as another writer holding it looks).
//! Also: the daemon is killed with events in its spool and restarted.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::db::{Backend, Proxy, TestDb, call_events, mariadb_addr};
use common::{Daemon, pattern};
use hark::store::testing::{SqliteLock, scalar};
use hark::store::{Store, spawn_writer};
use media_core::SampleRate;

/// Makes the database unreachable for the writer, and back.
enum Outage {
    Proxy(Proxy),
    Lock(String, Option<SqliteLock>),
}

impl Outage {
    async fn new(db: &TestDb) -> (Outage, String) {
        match db.backend {
            Backend::MariaDb => {
                let p = Proxy::start(mariadb_addr()).await;
                let url = db.url_via(p.addr);
                (Outage::Proxy(p), url)
            }
            Backend::Sqlite => (Outage::Lock(db.url.clone(), None), db.url.clone()),
        }
    }

    async fn down(&mut self) {
        match self {
            Outage::Proxy(p) => p.set_down(),
            Outage::Lock(url, lock) => *lock = Some(SqliteLock::take(url).await.unwrap()),
        }
    }

    async fn up(&mut self) {
        match self {
            Outage::Proxy(p) => p.set_up(),
            Outage::Lock(_, lock) => {
                if let Some(l) = lock.take() {
                    l.release().await.unwrap();
                }
            }
        }
    }
}

async fn wait_until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_writer_spools_through_an_outage_and_replays_once(b: Backend) {
    let db = TestDb::new(b).await;
    let direct = db.store().await;
    let (mut outage, url) = Outage::new(&db).await;
    let store = Store::connect(&url).await.unwrap();
    let spool = db.dir.path().join("hark.spool");
    let w = spawn_writer(
        store.clone(),
        spool.clone(),
        1024,
        16,
        Duration::from_millis(100),
    )
    .unwrap();
    let stats = w.stats();
    let mut rec = w.recorder();
    let mut ids = Vec::new();
    let mut record_call = |n: i64| {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        for e in call_events("t1", &id, 1_000_000 + n, "completed", 6) {
            rec.record(e);
        }
        ids.push(id);
    };
    for n in 0..5 {
        record_call(n);
    }
    wait_until(
        "the first calls to be written",
        Duration::from_secs(10),
        async || scalar(&direct, "SELECT COUNT(*) FROM calls").await.unwrap() == 5,
    )
    .await;
    outage.down().await;
    for n in 5..15 {
        record_call(n);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_until(
        "events to be spooled",
        Duration::from_secs(20),
        async || stats.spool_pending.load(Ordering::Relaxed) > 0,
    )
    .await;
    assert!(!stats.db_up.load(Ordering::Relaxed));
    // More arrive while spooling: they queue behind the spool, in order.
    for n in 15..20 {
        record_call(n);
    }
    outage.up().await;
    wait_until("the spool to drain", Duration::from_secs(30), async || {
        stats.spool_pending.load(Ordering::Relaxed) == 0
    })
    .await;
    drop(rec);
    w.finish(Duration::from_secs(5)).await;
    assert!(
        stats.spooled.load(Ordering::Relaxed) > 0,
        "the outage was real"
    );
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);
    for (table, per_call) in [
        ("calls", 1),
        ("segments", 6),
        ("turns", 3),
        ("ai_requests", 1),
        ("leads", 1),
    ] {
        assert_eq!(
            scalar(&direct, &format!("SELECT COUNT(*) FROM {table}"))
                .await
                .unwrap(),
            20 * per_call,
            "{table}: every event exactly once"
        );
    }
    assert_eq!(
        scalar(
            &direct,
            "SELECT COUNT(*) FROM calls WHERE outcome = 'completed' AND start_ms IS NOT NULL"
        )
        .await
        .unwrap(),
        20
    );
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0);
    store.close().await;
    direct.close().await;
    db.cleanup().await;
}
both_backends!(the_writer_spools_through_an_outage_and_replays_once);

fn daemon_config(url: &str, spool: &std::path::Path) -> String {
    format!(
        r#"
[[listener]]
name = "main"
address = "127.0.0.1:0"
agent = "echo"

[agent.echo]
kind = "echo"
delay_ms = 100

[store]
url = "{url}"
spool = "{}"
retry_ms = 100

[api]
address = "127.0.0.1:0"
"#,
        spool.display()
    )
}

async fn metric(http: &reqwest::Client, api: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

async fn a_daemon_killed_with_a_full_spool_replays_it_at_restart(b: Backend) {
    let db = TestDb::new(b).await;
    let direct = db.store().await;
    let (mut outage, url) = Outage::new(&db).await;
    let spool = db.dir.path().join("daemon.spool");
    let config = daemon_config(&url, &spool);
    let http = hark::llm::http_client().unwrap();

    let mut daemon = Daemon::start(&config);
    let api = daemon.api_address().expect("api address");
    outage.down().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut opts =
            hark::dial::DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(4_000));
        opts.tail = Duration::from_millis(200);
        opts.hangup = true;
        ids.push(opts.uuid.to_string());
        hark::dial::dial(&opts).await.unwrap();
    }
    // 4 calls: a start and an end each, all in the spool.
    wait_until(
        "the spool to hold every event",
        Duration::from_secs(30),
        async || metric(&http, api, "hark_store_spool_pending").await == Some(8.0),
    )
    .await;
    daemon.kill();
    assert!(
        std::fs::metadata(&spool).unwrap().len() > 0,
        "the spool outlived the daemon"
    );
    assert_eq!(
        scalar(&direct, "SELECT COUNT(*) FROM calls")
            .await
            .unwrap_or(0),
        0
    );

    outage.up().await;
    let mut daemon = Daemon::start(&config);
    let api = daemon.api_address().expect("api address");
    wait_until("the replay", Duration::from_secs(30), async || {
        metric(&http, api, "hark_store_spool_pending").await == Some(0.0)
            && scalar(
                &direct,
                "SELECT COUNT(*) FROM calls WHERE end_ms IS NOT NULL",
            )
            .await
            .unwrap_or(0)
                == 4
    })
    .await;
    assert!(
        daemon.wait_for_log(
            "spool holds events from an earlier run",
            Duration::from_secs(1)
        ),
        "{:#?}",
        daemon.log
    );
    for id in &ids {
        let n = scalar(
            &direct,
            &format!("SELECT COUNT(*) FROM calls WHERE id = '{id}' AND outcome = 'completed' AND start_ms IS NOT NULL"),
        )
        .await
        .unwrap();
        assert_eq!(n, 1, "call {id}");
    }
    assert_eq!(
        scalar(&direct, "SELECT COUNT(*) FROM calls").await.unwrap(),
        4,
        "exactly once"
    );
    daemon.terminate(Duration::from_secs(10));
    direct.close().await;
    db.cleanup().await;
}
both_backends!(a_daemon_killed_with_a_full_spool_replays_it_at_restart);

async fn a_daemon_started_while_the_database_is_away_answers_and_catches_up(b: Backend) {
    // A database that has never been migrated, unreachable at start-up.
    let db = TestDb::new(b).await;
    let (mut outage, url) = Outage::new(&db).await;
    outage.down().await;
    let spool = db.dir.path().join("daemon.spool");
    let http = hark::llm::http_client().unwrap();
    let mut daemon = Daemon::start(&daemon_config(&url, &spool));
    let api = daemon.api_address().expect("api address");
    let mut opts =
        hark::dial::DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(4_000));
    opts.tail = Duration::from_millis(300);
    opts.hangup = true;
    let id = opts.uuid.to_string();
    let report = hark::dial::dial(&opts).await.unwrap();
    assert!(!report.received.is_empty(), "the call was answered");
    // The call did not wait on the database: hark knew it was away.
    assert!(
        daemon.wait_for_log(
            "database away: no registration lookup",
            Duration::from_secs(2)
        ),
        "{:#?}",
        daemon.log
    );
    let ready: serde_json::Value = http
        .get(format!("http://{api}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"]["database_up"], false, "{ready}");
    wait_until(
        "the call's events in the spool",
        Duration::from_secs(30),
        async || metric(&http, api, "hark_store_spool_pending").await == Some(2.0),
    )
    .await;
    outage.up().await;
    wait_until("the replay", Duration::from_secs(30), async || {
        metric(&http, api, "hark_store_spool_pending").await == Some(0.0)
    })
    .await;
    // And /readyz says it is back.
    wait_until("database_up", Duration::from_secs(10), async || {
        let r: Option<serde_json::Value> = async {
            http.get(format!("http://{api}/readyz"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        r.is_some_and(|r| r["store"]["database_up"] == true)
    })
    .await;
    let direct = Store::connect(&db.url).await.unwrap();
    let n = scalar(
        &direct,
        &format!("SELECT COUNT(*) FROM calls WHERE id = '{id}' AND end_ms IS NOT NULL AND tenant_id = 'default'"),
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        scalar(&direct, "SELECT COUNT(*) FROM tenants WHERE id = 'default'")
            .await
            .unwrap(),
        1
    );
    daemon.terminate(Duration::from_secs(10));
    direct.close().await;
    db.cleanup().await;
}
both_backends!(a_daemon_started_while_the_database_is_away_answers_and_catches_up);
