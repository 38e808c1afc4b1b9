//! `hark chat` end to end: the scripted dialog offline, and a provider
//! reached over HTTP after a dead one fails over.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

fn chat(config: &str, agent: &str, input: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hark.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["chat", "--agent", agent, "--config"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SCRIPT: &str = r#"
[agent.desk.script]
greeting = "Hello."
questions = [{ slot = "name", ask = "Your name?" }]
confirm = "So, {name}."
closing = "Goodbye."
"#;

#[test]
fn the_scripted_dialog_runs_offline_to_its_end() {
    let config = format!("[agent.desk]\nkind = \"chat\"\n{SCRIPT}");
    let (ok, out, err) = chat(&config, "desk", "Ana\nyes\n");
    assert!(ok, "{err}");
    assert!(out.contains("agent> Hello. Your name?"), "{out}");
    assert!(out.contains("agent> So, Ana. Is that right?"), "{out}");
    assert!(out.contains("agent> Goodbye."), "{out}");
    assert!(out.contains("[tool end_call {}]"), "{out}");
    assert!(out.contains("(the agent ended the conversation)"), "{out}");
}

#[test]
fn a_dead_provider_fails_over_to_a_live_one_over_http() {
    // A local server speaking OpenAI's streaming format.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = rt.block_on(async {
        let body = include_str!("data/llm/openai_text.sse");
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move || async move { ([("content-type", "text/event-stream")], body) },
            ),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    });
    let config = format!(
        r#"
[provider.dead]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
model = "nobody"

[provider.live]
kind = "openai"
base_url = "http://{addr}/v1"
model = "gpt-4o-mini"
price_in_per_1k = 0.15
price_out_per_1k = 0.6

[agent.desk]
kind = "chat"
providers = ["dead", "live"]
{SCRIPT}"#
    );
    let (ok, out, err) = chat(&config, "desk", "Book a table.\n");
    assert!(ok, "{err}");
    assert!(out.contains("agent> Your table is booked."), "{out}");
    assert!(
        out.contains("openai/nobody:") && out.contains("Failed"),
        "{out}"
    );
    assert!(
        out.contains("openai/gpt-4o-mini: 42 in / 6 out tokens, cost 0.00990"),
        "{out}"
    );
    drop(rt);
}

#[test]
fn unknown_agents_and_providers_are_clear_errors() {
    let config = format!("[agent.desk]\nkind = \"chat\"\n{SCRIPT}");
    let (ok, _, err) = chat(&config, "nobody", "");
    assert!(!ok);
    assert!(
        err.contains("no chat agent named \"nobody\"") && err.contains("desk"),
        "{err}"
    );
    let bad = format!("[agent.desk]\nkind = \"chat\"\nproviders = [\"ghost\"]\n{SCRIPT}");
    let (ok, _, err) = chat(&bad, "desk", "");
    assert!(!ok);
    assert!(
        err.contains("agent.desk.providers") && err.contains("ghost"),
        "{err}"
    );
}
