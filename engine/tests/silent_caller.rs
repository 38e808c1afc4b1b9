//! A caller who says nothing is never dropped: Asterisk's `AudioSocket()`
//! gives up after 2000 ms in which neither side sent a frame
//! (`apps/app_audiosocket.c`, modelled in `common/asterisk.rs`), and a
//! silent Local channel or DTX phone sends nothing, so hark must send a
//! paced frame every 20 ms on every agent kind, from the UUID to the hangup.
//! And a call hark cannot take ends the Asterisk way: 0x00, so the dialplan
//! goes on to its fallback.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::asterisk::{AppEnd, Caller, audiosocket_app};
use common::*;

/// One listener per agent kind.
fn config() -> String {
    format!(
        r#"
[speech]
models_dir = "{models}"

[stt]
model = "tiny.en"
threads = 1

[[listener]]
name = "echo"
address = "127.0.0.1:0"
agent = "echo"

[[listener]]
name = "say"
address = "127.0.0.1:0"
agent = "hello"

[[listener]]
name = "ears"
address = "127.0.0.1:0"
agent = "listen"

[[listener]]
name = "voice"
address = "127.0.0.1:0"
agent = "desk"

[agent.echo]
kind = "echo"
delay_ms = 200

[agent.hello]
kind = "say"
text = "Hello."
hangup = false

[agent.listen]
kind = "transcribe"

[agent.desk]
kind = "chat"
providers = []

[agent.desk.script]
greeting = "Hello."
questions = [{{ slot = "name", ask = "Your name?" }}]
confirm = "Noted."
closing = "Goodbye."

[agent.desk.voice]
silence_timeout_ms = 60000
"#,
        models = root().join("models").display()
    )
}

/// The address of each listener, by name, from the daemon's log.
fn listeners(daemon: &mut Daemon) -> Vec<(String, std::net::SocketAddr)> {
    assert!(daemon.wait_for_log_count("listening listener=", 4, Duration::from_secs(30)));
    daemon
        .log
        .iter()
        .filter(|l| l.contains("listening listener="))
        .map(|l| {
            let word = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .unwrap()
                    .to_string()
            };
            (word("listener="), word("address=").parse().unwrap())
        })
        .collect()
}

#[test]
fn silent_callers_stay_up_on_every_agent_kind() {
    let mut daemon = Daemon::start(&config());
    let addrs = listeners(&mut daemon);
    assert_eq!(addrs.len(), 4);
    // 20 calls, 5 per agent kind, silent for 6 s (three times the limit).
    let reports = runtime().block_on(async {
        let mut calls = Vec::new();
        for i in 0..20 {
            let (name, addr) = addrs[i % addrs.len()].clone();
            calls.push(tokio::spawn(async move {
                let r = audiosocket_app(addr, uuid::Uuid::new_v4(), &Caller::silent(6)).await;
                (name, r)
            }));
        }
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        out
    });
    for (name, r) in &reports {
        assert_eq!(r.end, AppEnd::CallerHungUp, "{name}: {r:?}");
        // A frame about every 20 ms from the UUID on: nothing close to the
        // 2 s limit, and the first one at once.
        assert!(
            r.max_gap < Duration::from_millis(200),
            "{name}: gap {:?}",
            r.max_gap
        );
        assert!(
            r.first_frame.unwrap() < Duration::from_millis(100),
            "{name}"
        );
        assert!(r.frames >= 250, "{name}: {} frames in 6 s", r.frames);
    }
}

#[test]
fn a_call_over_capacity_goes_back_to_the_dialplan() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hark.db").display());
    let config = echo_config("max_calls = 1").replace(
        "[limits]",
        &format!(
            "[store]\nurl = \"{db}\"\nspool = \"{}\"\n\n[api]\naddress = \"127.0.0.1:0\"\n\n[limits]",
            dir.path().join("hark.spool").display()
        ),
    );
    let mut daemon = Daemon::start(&config);
    let api = daemon.api_address().expect("the api listens");
    let refused_id = uuid::Uuid::new_v4();
    runtime().block_on(async {
        let addr = daemon.address;
        let holder = tokio::spawn(async move {
            audiosocket_app(addr, uuid::Uuid::new_v4(), &Caller::silent(3)).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let refused = audiosocket_app(addr, refused_id, &Caller::silent(3)).await;
        // 0x00 before any audio: AudioSocket() returns 0 and the dialplan
        // reaches its fallback, where an error frame would hang up.
        assert_eq!(refused.end, AppEnd::Continue, "{refused:?}");
        assert_eq!(refused.frames, 0);
        assert!(refused.lasted < Duration::from_millis(500));
        let held = holder.await.unwrap();
        assert_eq!(held.end, AppEnd::CallerHungUp, "{held:?}");
        // The dialplan (section 6) reads why: outcome refused, at capacity.
        let store = hark::store::Store::connect(&db).await.unwrap();
        let token = store
            .create_token("default", hark::store::Role::Viewer, "dialplan")
            .await
            .unwrap()
            .token;
        let http = hark::llm::http_client().unwrap();
        let mut body = serde_json::Value::Null;
        for _ in 0..100 {
            let r = http
                .get(format!("http://{api}/v1/calls/{refused_id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            if r.status().is_success() {
                body = r.json().await.unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(body["outcome"], "refused", "{body}");
        assert_eq!(body["end_reason"], "at capacity", "{body}");
        assert_eq!(body["agent"], "echo", "{body}");
        store.close().await;
    });
    assert!(daemon.wait_for_log("refusing call", Duration::from_secs(2)));
}
