//! The daemon dies with `kill -9`: calls that ended just before keep their
//! real end (it is journaled before the caller sees the socket close), and
//! calls it left open are closed at the next start as failed, "node
//! restarted", instead of staying open forever.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::db::{Backend, TestDb};
use hark::store::testing::scalar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(url: &str, spool: &std::path::Path) -> String {
    format!(
        r#"
[server]
node = "node-a"

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
"#,
        spool.display()
    )
}

fn hello(id: &uuid::Uuid) -> Vec<u8> {
    let mut b = vec![0x01, 0x00, 0x10];
    b.extend_from_slice(id.as_bytes());
    b
}

/// A call that sends a few frames, hangs up (0x00) and waits for hark to
/// close the connection: then hark is done with it.
async fn short_call(addr: std::net::SocketAddr, id: uuid::Uuid) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello(&id)).await.unwrap();
    let frame: Vec<u8> = [vec![0x10, 0x01, 0x40], vec![7u8; 320]].concat();
    for _ in 0..10 {
        s.write_all(&frame).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.write_all(&[0x00, 0x00, 0x00]).await.unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

async fn count(store: &hark::store::Store, sql: &str) -> i64 {
    scalar(store, sql).await.unwrap_or(-1)
}

async fn a_crash_loses_no_call_end_and_leaves_no_call_open(b: Backend) {
    let db = TestDb::new(b).await;
    let direct = db.store().await;
    let spool = db.dir.path().join("daemon.spool");
    let cfg = config(&db.url, &spool);
    let daemon = Daemon::start(&cfg);
    let addr = daemon.address;
    // 20 calls stay up through the crash.
    let mut open = Vec::new();
    let mut open_ids = Vec::new();
    for _ in 0..20 {
        let id = uuid::Uuid::new_v4();
        open_ids.push(id.to_string());
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello(&id)).await.unwrap();
        open.push(s);
    }
    // Their starts reach the database.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&direct, "SELECT COUNT(*) FROM calls").await < 20 {
        assert!(
            Instant::now() < deadline,
            "the open calls' starts were not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 20 calls end, and the daemon is killed the moment the last is over.
    let ended: Vec<uuid::Uuid> = (0..20).map(|_| uuid::Uuid::new_v4()).collect();
    let calls: Vec<_> = ended
        .iter()
        .map(|&id| tokio::spawn(short_call(addr, id)))
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    let mut daemon = daemon;
    daemon.kill();
    drop(open);

    let mut daemon = Daemon::start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_list = |ids: &[String]| {
        ids.iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let ended_ids: Vec<String> = ended.iter().map(ToString::to_string).collect();
    loop {
        let closed = count(
            &direct,
            &format!(
                "SELECT COUNT(*) FROM calls WHERE id IN ({}) AND outcome = 'failed' AND end_reason = 'node restarted' AND end_ms IS NOT NULL",
                in_list(&open_ids)
            ),
        )
        .await;
        let real = count(
            &direct,
            &format!(
                "SELECT COUNT(*) FROM calls WHERE id IN ({}) AND outcome = 'completed' AND end_ms IS NOT NULL",
                in_list(&ended_ids)
            ),
        )
        .await;
        if closed == 20 && real == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart: {closed} of 20 open calls closed, {real} of 20 ended calls with their end; log {:#?}",
            daemon.log
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(&direct, "SELECT COUNT(*) FROM calls WHERE end_ms IS NULL").await,
        0
    );
    assert!(daemon.wait_for_log("node restarted", Duration::from_secs(2)));
    daemon.terminate(Duration::from_secs(10));
    direct.close().await;
    db.cleanup().await;
}
both_backends!(a_crash_loses_no_call_end_and_leaves_no_call_open);
