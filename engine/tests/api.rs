//! The REST API over real HTTP on loopback, in front of the real MariaDB
//! and a SQLite file: auth and roles, tenant isolation through every
//! endpoint and filter, injection attempts in every filter, pagination
//! while calls are inserted, errors, limits, readiness, pre-registered
//! calls choosing their agent, and the OpenAPI document against the routes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::db::{Backend, TestDb};
use hark::store::testing::{scalar, write};
use hark::store::{Role, Store, StoreEvent};
use hark::{Config, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use common::db::call_events;

struct Api {
    base: String,
    http: reqwest::Client,
    store: Store,
    audiosocket: Vec<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<hark::ServeReport>,
    db: TestDb,
}

impl Api {
    async fn start(b: Backend, extra_api: &str, extra: &str) -> Api {
        let db = TestDb::new(b).await;
        let text = format!(
            r#"
[server]
max_calls = 2

[[listener]]
name = "a"
address = "127.0.0.1:0"
agent = "echo"

[[listener]]
name = "b"
address = "127.0.0.1:0"
agent = "slow"

[agent.echo]
kind = "echo"
delay_ms = 100

[agent.slow]
kind = "echo"
delay_ms = 700

[store]
url = "{}"
spool = "{}"
tenant = "default"

[api]
address = "127.0.0.1:0"
{extra_api}
{extra}
"#,
            db.url,
            db.dir.path().join("hark.spool").display()
        );
        let config = Config::parse(&text).unwrap();
        let server = Server::bind(config).await.unwrap();
        let api = server.api_addr().unwrap();
        let audiosocket = server.local_addrs().into_iter().map(|(_, a)| a).collect();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        let store = db.store().await;
        Api {
            base: format!("http://{api}"),
            http: hark::llm::http_client().unwrap(),
            store,
            audiosocket,
            stop: Some(stop),
            task,
            db,
        }
    }

    async fn token(&self, tenant: &str, role: Role) -> String {
        self.store
            .create_token(tenant, role, "test")
            .await
            .unwrap()
            .token
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: &str,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
        self.store.close().await;
        self.db.cleanup().await;
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Seeds `n` finished calls for `tenant` at `at + i` ms; returns their ids.
async fn seed(store: &Store, tenant: &str, n: usize, at: i64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut events: Vec<StoreEvent> = Vec::new();
    for i in 0..n {
        let id = uuid();
        let outcome = ["completed", "transferred", "abandoned", "failed"][i % 4];
        events.extend(call_events(tenant, &id, at + i as i64, outcome, 2));
        ids.push(id);
    }
    write(store, &events).await.unwrap();
    ids
}

async fn auth_and_roles(b: Backend) {
    let api = Api::start(b, "", "").await;
    let viewer = api.token("acme", Role::Viewer).await;
    let admin = api.token("acme", Role::Admin).await;
    // No token, a wrong one, another scheme.
    let r = api
        .http
        .get(format!("{}/v1/calls", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        api.get("hark_wrong", "/v1/calls").await.0,
        StatusCode::UNAUTHORIZED
    );
    let r = api
        .http
        .get(format!("{}/v1/calls", api.base))
        .basic_auth("admin", Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Viewers read, only admins change.
    assert_eq!(api.get(&viewer, "/v1/calls").await.0, StatusCode::OK);
    let (st, body) = api
        .send("POST", &viewer, "/v1/calls", json!({"agent": "echo"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(
        api.send(
            "PATCH",
            &viewer,
            "/v1/leads/1",
            json!({"status": "qualified"})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (st, body) = api
        .send("POST", &admin, "/v1/calls", json!({"agent": "echo"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    // The token is stored hashed: its text is nowhere in the table.
    let n = scalar(
        &api.store,
        &format!(
            "SELECT COUNT(*) FROM api_tokens WHERE token_hash = '{admin}' OR label = '{admin}'"
        ),
    )
    .await
    .unwrap();
    assert_eq!(n, 0);
    // A revoked token stops working.
    let t = api
        .store
        .create_token("acme", Role::Admin, "old")
        .await
        .unwrap();
    assert_eq!(api.get(&t.token, "/v1/calls").await.0, StatusCode::OK);
    api.store.revoke_token("acme", t.id).await.unwrap();
    assert_eq!(
        api.get(&t.token, "/v1/calls").await.0,
        StatusCode::UNAUTHORIZED
    );
    api.stop().await;
}
both_backends!(auth_and_roles);

fn ids_of(body: &Value, key: &str, field: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
        .iter()
        .map(|c| c[field].to_string().trim_matches('"').to_string())
        .collect()
}

async fn tenants_see_only_their_rows(b: Backend) {
    let api = Api::start(b, "", "").await;
    let a = api.token("tenant-a", Role::Admin).await;
    let a_ids: BTreeSet<String> = seed(&api.store, "tenant-a", 8, 1_000_000)
        .await
        .into_iter()
        .collect();
    let b_ids = seed(&api.store, "tenant-b", 8, 1_000_000).await;
    let queries = [
        "",
        "?outcome=completed",
        "?outcome=failed",
        "?agent=reception",
        "?caller=%2B15550001",
        "?from=0&to=99999999999",
        "?limit=500",
    ];
    for q in queries {
        let (st, body) = api.get(&a, &format!("/v1/calls{q}")).await;
        assert_eq!(st, StatusCode::OK, "{q}: {body}");
        let got = ids_of(&body, "calls", "id");
        assert!(!got.is_empty(), "{q}");
        assert!(
            got.iter().all(|id| a_ids.contains(id)),
            "{q} leaked: {got:?}"
        );
    }
    for id in &b_ids {
        let (st, body) = api.get(&a, &format!("/v1/calls/{id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    }
    // Leads: list with every filter, one, and changes.
    let b_lead: i64 = scalar(
        &api.store,
        "SELECT MIN(id) FROM leads WHERE tenant_id = 'tenant-b'",
    )
    .await
    .unwrap();
    for q in ["", "?status=new", "?min_score=0", "?from=0&to=99999999999"] {
        let (st, body) = api.get(&a, &format!("/v1/leads{q}")).await;
        assert_eq!(st, StatusCode::OK);
        let calls = ids_of(&body, "leads", "call_id");
        assert_eq!(calls.len(), 8, "{q}");
        assert!(calls.iter().all(|c| a_ids.contains(c)), "{q} leaked");
    }
    assert_eq!(
        api.get(&a, &format!("/v1/leads/{b_lead}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (st, _) = api
        .send(
            "PATCH",
            &a,
            &format!("/v1/leads/{b_lead}"),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let still_new: i64 = scalar(
        &api.store,
        &format!("SELECT COUNT(*) FROM leads WHERE id = {b_lead} AND status = 'new'"),
    )
    .await
    .unwrap();
    assert_eq!(still_new, 1, "B's lead untouched");
    // Stats count A's calls only.
    let (_, s) = api.get(&a, "/v1/stats?from=0&to=99999999999").await;
    assert_eq!(s["calls"], 8, "{s}");
    assert_eq!(s["ai_cost"][0]["requests"], 8);
    // A call registered by A is A's.
    let (_, reg) = api
        .send("POST", &a, "/v1/calls", json!({"agent": "echo"}))
        .await;
    let b_tok = api.token("tenant-b", Role::Viewer).await;
    let id = reg["id"].as_str().unwrap();
    assert_eq!(
        api.get(&a, &format!("/v1/calls/{id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&b_tok, &format!("/v1/calls/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    api.stop().await;
}
both_backends!(tenants_see_only_their_rows);

async fn injection_in_any_filter_finds_nothing_and_breaks_nothing(b: Backend) {
    let api = Api::start(b, "rate_per_sec = 10000\nburst = 10000", "").await;
    let a = api.token("tenant-a", Role::Viewer).await;
    let a_ids: BTreeSet<String> = seed(&api.store, "tenant-a", 4, 1_000_000)
        .await
        .into_iter()
        .collect();
    seed(&api.store, "tenant-b", 4, 1_000_000).await;
    let payloads = [
        "' OR '1'='1",
        "1 OR 1=1",
        "x'; DROP TABLE calls; --",
        "\" OR \"\"=\"",
        "tenant-b",
        "%' OR tenant_id LIKE '%",
        "1) UNION SELECT * FROM api_tokens --",
        "0x27",
        "\\' OR 1=1 #",
    ];
    let routes: [(&str, &[&str]); 3] = [
        (
            "/v1/calls",
            &[
                "from", "to", "outcome", "agent", "caller", "cursor", "limit",
            ],
        ),
        (
            "/v1/leads",
            &["status", "min_score", "from", "to", "cursor", "limit"],
        ),
        ("/v1/stats", &["from", "to"]),
    ];
    for (route, params) in routes {
        for p in params {
            for payload in payloads {
                let q: String = url_encode(payload);
                let (st, body) = api.get(&a, &format!("{route}?{p}={q}")).await;
                match st {
                    StatusCode::BAD_REQUEST => assert_eq!(body["error"]["code"], "bad_request"),
                    StatusCode::OK => {
                        for key in ["calls", "leads"] {
                            if let Some(rows) = body[key].as_array() {
                                let field = if key == "calls" { "id" } else { "call_id" };
                                for r in rows {
                                    let id = r[field].as_str().unwrap();
                                    assert!(
                                        a_ids.contains(id),
                                        "{route}?{p}={payload} leaked {id}"
                                    );
                                }
                                assert!(rows.is_empty(), "{route}?{p}={payload} matched rows");
                            }
                        }
                        if route == "/v1/stats" {
                            assert!(body["calls"].as_i64().unwrap() <= 4);
                        }
                    }
                    other => panic!("{route}?{p}={payload}: {other} {body}"),
                }
            }
        }
    }
    // Path ids too.
    for payload in ["1 OR 1=1", "' OR '1'='1", "1;DROP TABLE leads"] {
        let q = url_encode(payload);
        assert_eq!(
            api.get(&a, &format!("/v1/calls/{q}")).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            api.get(&a, &format!("/v1/leads/{q}")).await.0,
            StatusCode::BAD_REQUEST
        );
    }
    // Every table is still there with every row.
    assert_eq!(
        scalar(&api.store, "SELECT COUNT(*) FROM calls")
            .await
            .unwrap(),
        8
    );
    assert_eq!(
        scalar(&api.store, "SELECT COUNT(*) FROM leads")
            .await
            .unwrap(),
        8
    );
    assert!(
        scalar(&api.store, "SELECT COUNT(*) FROM api_tokens")
            .await
            .unwrap()
            >= 1
    );
    api.stop().await;
}
both_backends!(injection_in_any_filter_finds_nothing_and_breaks_nothing);

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn pages_stay_stable_while_calls_arrive(b: Backend) {
    let api = Api::start(b, "rate_per_sec = 10000\nburst = 10000", "").await;
    let a = api.token("tenant-a", Role::Viewer).await;
    let now = hark::store::now_ms();
    let before: BTreeSet<String> = seed(&api.store, "tenant-a", 60, now - 120_000)
        .await
        .into_iter()
        .collect();
    // New calls keep arriving while the client pages.
    let store = api.store.clone();
    let inserting = tokio::spawn(async move {
        let mut n = 0;
        for _ in 0..40 {
            seed(&store, "tenant-a", 1, hark::store::now_ms()).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n
    });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/calls?limit=7&cursor={}", url_encode(c)),
            None => "/v1/calls?limit=7".to_string(),
        };
        let (st, body) = api.get(&a, &q).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        seen.extend(ids_of(&body, "calls", "id"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(inserting.await.unwrap(), 40);
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a call appeared on two pages");
    assert!(
        before.is_subset(&unique),
        "a call present from the start was skipped"
    );
    api.stop().await;
}
both_backends!(pages_stay_stable_while_calls_arrive);

async fn errors_are_json_with_stable_codes(b: Backend) {
    let api = Api::start(b, "max_body_bytes = 1024\nrate_per_sec = 1\nburst = 40", "").await;
    let admin = api.token("acme", Role::Admin).await;
    seed(&api.store, "acme", 1, 1_000).await;
    let lead: i64 = scalar(&api.store, "SELECT MIN(id) FROM leads")
        .await
        .unwrap();
    let cases: Vec<(&str, String, Option<Value>, StatusCode, &str)> = vec![
        (
            "GET",
            "/v1/calls?limit=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/calls?limit=x".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/calls?outcome=won".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/calls?from=1&from=2".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/calls?cursor=abc".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/stats?from=10&to=5".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/leads?min_score=101".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/calls/not-a-uuid".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            format!("/v1/calls/{}", uuid()),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/leads/999999".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/nothing".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/calls".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "POST",
            "/v1/calls".into(),
            Some(json!({"agent": "nobody"})),
            StatusCode::BAD_REQUEST,
            "unknown_agent",
        ),
        (
            "POST",
            "/v1/calls".into(),
            Some(json!({"agent": "echo", "color": 1})),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/calls".into(),
            Some(json!({"agent": "echo", "metadata": [1]})),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/calls".into(),
            Some(json!({"agent": "echo", "metadata": {"x": "y".repeat(2000)}})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "PATCH",
            format!("/v1/leads/{lead}"),
            Some(json!({"status": "converted"})),
            StatusCode::CONFLICT,
            "invalid_transition",
        ),
        (
            "PATCH",
            format!("/v1/leads/{lead}"),
            Some(json!({"status": "won"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "PATCH",
            format!("/v1/leads/{lead}"),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (method, path, body, want, code) in cases {
        let (st, got) = match body {
            Some(b) => api.send(method, &admin, &path, b).await,
            None => {
                let r = api
                    .http
                    .request(method.parse().unwrap(), format!("{}{path}", api.base))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json().await.unwrap_or(Value::Null))
            }
        };
        assert_eq!(st, want, "{method} {path}: {got}");
        assert_eq!(got["error"]["code"], code, "{method} {path}: {got}");
        assert!(
            got["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Not JSON, and malformed JSON.
    let r = api
        .http
        .post(format!("{}/v1/calls", api.base))
        .bearer_auth(&admin)
        .body("agent=echo")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = api
        .http
        .post(format!("{}/v1/calls", api.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"agent\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The valid path still works, then the rate limit (40 burst, 1/s) bites.
    let (st, _) = api
        .send(
            "PATCH",
            &admin,
            &format!("/v1/leads/{lead}"),
            json!({"status": "qualified"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut limited = None;
    for _ in 0..60 {
        let r = api
            .http
            .get(format!("{}/v1/calls", api.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the rate limit answered 429");
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    api.stop().await;
}
both_backends!(errors_are_json_with_stable_codes);

async fn readiness_reports_spare_capacity(b: Backend) {
    let api = Api::start(b, "", "").await;
    let r = api
        .http
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (st, body) = {
        let r = api
            .http
            .get(format!("{}/readyz", api.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["spare_calls"], 2);
    assert_eq!(body["store"]["database_up"], true);
    // Two calls take both slots: not ready. (A connection is a call once
    // it has sent its UUID.)
    let mut socks = Vec::new();
    for _ in 0..2 {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(api.audiosocket[0])
            .await
            .unwrap();
        let mut hello = vec![0x01, 0x00, 0x10];
        hello.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        s.write_all(&hello).await.unwrap();
        socks.push(s);
    }
    let mut full = None;
    for _ in 0..50 {
        let r = api
            .http
            .get(format!("{}/readyz", api.base))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            full = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let full = full.expect("readyz said 503 when full");
    assert_eq!(full["spare_calls"], 0);
    assert_eq!(full["active_calls"], 2);
    drop(socks);
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "hark_calls_active",
        "hark_calls_accepted_total",
        "hark_store_spool_pending",
        "hark_store_database_up 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    api.stop().await;
}
both_backends!(readiness_reports_spare_capacity);

async fn a_registered_call_gets_its_agent_and_its_outcome_is_queryable(b: Backend) {
    let api = Api::start(b, "", "").await;
    let admin = api.token("acme", Role::Admin).await;
    let (st, reg) = api
        .send(
            "POST",
            &admin,
            "/v1/calls",
            json!({"agent": "slow", "caller_id": "+15551234", "dnis": "200", "metadata": {"crm": "x1"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    // No caller id is normal in telephony (an anonymous caller, a Local
    // channel: Asterisk's ${CALLERID(num)} is empty); lengths count
    // characters, as the document's maxLength does.
    for caller in [json!(""), json!(null), json!("é".repeat(64))] {
        let (st, body) = api
            .send(
                "POST",
                &admin,
                "/v1/calls",
                json!({"agent": "slow", "caller_id": caller, "dnis": ""}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{caller}: {body}");
    }
    let id: uuid::Uuid = reg["id"].as_str().unwrap().parse().unwrap();
    // It arrives on listener "a" (agent echo, 100 ms) but was registered
    // for "slow" (700 ms): the echo must come back 700 ms late.
    let rate = media_core::SampleRate::HZ_8000;
    let sent = common::pattern(rate.samples_in(Duration::from_millis(1_500)));
    let mut opts = hark::dial::DialOptions::new(api.audiosocket[0], rate, sent.clone());
    opts.uuid = id;
    opts.tail = Duration::from_millis(1_200);
    opts.hangup = true;
    let report = hark::dial::dial(&opts).await.unwrap();
    common::assert_echo(&report.received, &sent, rate, Duration::from_millis(700));
    // The dialplan's view: poll until the call has its outcome.
    let mut call = Value::Null;
    for _ in 0..100 {
        let (st, body) = api.get(&admin, &format!("/v1/calls/{id}")).await;
        assert_eq!(st, StatusCode::OK);
        if !body["outcome"].is_null() {
            call = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call["outcome"], "completed", "{call}");
    assert_eq!(call["agent"], "slow");
    assert_eq!(call["caller_id"], "+15551234");
    assert_eq!(call["dnis"], "200");
    assert_eq!(call["metadata"]["crm"], "x1");
    assert!(call["start_ms"].as_i64().unwrap() >= call["registered_ms"].as_i64().unwrap());
    assert!(call["duration_ms"].as_i64().unwrap() >= 1_500);
    // An unregistered call on the same listener gets the listener's agent
    // and the default tenant.
    let mut opts = hark::dial::DialOptions::new(api.audiosocket[0], rate, sent.clone());
    opts.tail = Duration::from_millis(600);
    let plain = opts.uuid.to_string();
    let report = hark::dial::dial(&opts).await.unwrap();
    common::assert_echo(&report.received, &sent, rate, Duration::from_millis(100));
    let def = api.token("default", Role::Viewer).await;
    let mut found = false;
    for _ in 0..100 {
        let (st, body) = api.get(&def, &format!("/v1/calls/{plain}")).await;
        if st == StatusCode::OK && !body["outcome"].is_null() {
            assert_eq!(body["agent"], "echo");
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        found,
        "the unregistered call was recorded for the default tenant"
    );
    api.stop().await;
}
both_backends!(a_registered_call_gets_its_agent_and_its_outcome_is_queryable);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_matches_the_routes() {
    let spec = oas3::from_json(hark::OPENAPI).expect("the document parses as OpenAPI 3.1");
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!(version.major, 3);
    assert_eq!(version.minor, 1);
    let documented: BTreeSet<(String, String)> = spec
        .operations()
        .map(|(path, method, _)| (method.as_str().to_lowercase(), path))
        .collect();
    let routes: BTreeSet<(String, String)> = hark::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routes, "document and route table differ");
    // Every `.route("...")` in the API source is in the route table.
    let source = include_str!("../src/api/mod.rs");
    let mut in_source = BTreeSet::new();
    for piece in source.split(".route(\"").skip(1) {
        let path = piece.split('"').next().unwrap();
        in_source.insert(path.to_string());
    }
    let table_paths: BTreeSet<String> = routes.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(
        in_source, table_paths,
        "a route in the source is undocumented (or gone)"
    );
    // Every $ref resolves.
    let text = hark::OPENAPI;
    let doc: Value = serde_json::from_str(text).unwrap();
    for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
    // Every operation names its success and error answers.
    for (path, method, op) in spec.operations() {
        let responses = op.responses.as_ref().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}");
    }

    // And the served routes answer as documented: each documented
    // operation exists, and no other method on those paths does.
    let api = Api::start(Backend::Sqlite, "", "").await;
    let admin = api.token("acme", Role::Admin).await;
    let served = api
        .http
        .get(format!("{}/v1/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, hark::OPENAPI);
    for path in &table_paths {
        let concrete = path.replace("{id}", &uuid());
        for method in ["get", "post", "put", "patch", "delete"] {
            let r = api
                .http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", api.base),
                )
                .bearer_auth(&admin)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let documented = routes.contains(&(method.to_string(), path.clone()));
            if documented {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but undocumented"
                );
            }
        }
    }
    api.stop().await;
}
