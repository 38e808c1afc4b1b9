//! Databases for store tests: a fresh database on the real MariaDB at
//! 127.0.0.1:3306 (scripts/test starts it; a test fails, never skips, when
//! it is unreachable), or a fresh SQLite file. Plus a loopback TCP proxy
//! that can cut MariaDB off, for outage tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hark::store::{AiRequest, CallEnd, CallStart, Lead, Segment, Store, StoreEvent, Turn};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Where the MariaDB server is (override with HARK_TEST_MYSQL).
pub fn mariadb_server() -> String {
    std::env::var("HARK_TEST_MYSQL").unwrap_or_else(|_| "root@127.0.0.1:3306".into())
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    MariaDb,
    Sqlite,
}

/// A fresh, empty database; dropped by [`TestDb::cleanup`].
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// MariaDB: the database's name.
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = format!(
            "hark_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("hark.db").display()),
            Backend::MariaDb => {
                let admin = Store::connect(&format!("mysql://{}/test", mariadb_server()))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "MariaDB at {} is not reachable ({e}); scripts/test starts it, or run \
                             start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
                            mariadb_server()
                        )
                    });
                hark::store::testing::execute(&admin, &format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create a test database");
                admin.close().await;
                format!("mysql://{}/{name}", mariadb_server())
            }
        };
        TestDb {
            backend,
            url,
            name,
            dir,
        }
    }

    /// A migrated store.
    pub async fn store(&self) -> Store {
        let s = Store::connect(&self.url).await.expect("connect");
        s.migrate().await.expect("migrate");
        s
    }

    /// The same database through another address (a proxy) for MariaDB.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        match self.backend {
            Backend::MariaDb => {
                let user = mariadb_server()
                    .split('@')
                    .next()
                    .unwrap_or("root")
                    .to_string();
                format!("mysql://{user}@{addr}/{}", self.name)
            }
            Backend::Sqlite => self.url.clone(),
        }
    }

    /// Drops the MariaDB database.
    pub async fn cleanup(self) {
        if self.backend != Backend::MariaDb {
            return;
        }
        if let Ok(admin) = Store::connect(&format!("mysql://{}/test", mariadb_server())).await {
            let drop = format!("DROP DATABASE {}", self.name);
            let _ = hark::store::testing::execute(&admin, &drop).await;
            admin.close().await;
        }
    }
}

/// Runs `$body(backend)` as two tests: `mariadb` and `sqlite`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                super::$name(super::common::db::Backend::MariaDb).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::common::db::Backend::Sqlite).await
            }
        }
    };
}

/// A loopback TCP proxy to MariaDB that can be cut: while down, it closes
/// every open connection and every new one at once, as a crashed or
/// unreachable server looks to a client.
pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (d, c) = (Arc::clone(&down), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().expect("proxy lock").push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            down,
            conns,
            accept,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn set_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().expect("proxy lock").drain(..) {
            c.abort();
        }
    }

    /// Lets connections through again.
    pub fn set_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().expect("proxy lock").drain(..) {
            c.abort();
        }
    }
}

/// MariaDB's address.
pub fn mariadb_addr() -> SocketAddr {
    let server = mariadb_server();
    let host = server.rsplit('@').next().unwrap_or("127.0.0.1:3306");
    host.parse().expect("HARK_TEST_MYSQL host:port")
}

/// A finished call's events: start, `segments` lines, turns, usage, end, lead.
pub fn call_events(
    tenant: &str,
    id: &str,
    at: i64,
    outcome: &str,
    segments: i64,
) -> Vec<StoreEvent> {
    let mut ev = vec![StoreEvent::CallStarted(CallStart {
        call_id: id.into(),
        tenant: tenant.into(),
        agent: "reception".into(),
        caller_id: Some("+15550001".into()),
        dnis: Some("100".into()),
        direction: "inbound".into(),
        start_ms: at,
        answer_ms: Some(at + 5),
        metadata: None,
        node: None,
    })];
    for seq in 0..segments {
        ev.push(StoreEvent::Segment(Segment {
            call_id: id.into(),
            seq,
            speaker: if seq % 2 == 0 { "agent" } else { "caller" }.into(),
            text: format!("line {seq} it's \"quoted\" ; DROP TABLE calls; --"),
            start_ms: seq * 1000,
            end_ms: seq * 1000 + 800,
            confidence: None,
            interrupted: seq == 2,
        }));
        if seq % 2 == 1 {
            ev.push(StoreEvent::Turn(Turn {
                call_id: id.into(),
                seq: seq / 2,
                tenant: tenant.into(),
                at_ms: at + seq * 1000,
                v2v_ms: 400 + seq * 10,
                endpoint_ms: 300,
                stt_ms: 20,
                first_token_ms: 10,
                first_audio_ms: 50,
                playout_ms: 0,
            }));
        }
    }
    ev.push(StoreEvent::AiRequest(AiRequest {
        id: uuid::Uuid::new_v4().hyphenated().to_string(),
        tenant: tenant.into(),
        call_id: Some(id.into()),
        provider: "openai".into(),
        model: "gpt".into(),
        tokens_in: 100,
        tokens_out: 20,
        cost: 0.25,
        first_token_ms: Some(300),
        total_ms: 900,
        outcome: "ok".into(),
        at_ms: at + 10,
    }));
    ev.push(StoreEvent::CallEnded(CallEnd {
        call_id: id.into(),
        tenant: tenant.into(),
        agent: "reception".into(),
        end_ms: at + 60_000,
        duration_ms: 60_000,
        outcome: outcome.into(),
        handoff_target: (outcome == "transferred").then(|| "desk".into()),
        reason: None,
    }));
    ev.push(StoreEvent::Lead(Lead {
        call_id: id.into(),
        tenant: tenant.into(),
        name: Some("Ana".into()),
        phone: None,
        email: None,
        intent: Some("table".into()),
        score: 50,
        notes: None,
        at_ms: at + 60_000,
    }));
    ev
}
