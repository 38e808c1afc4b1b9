//! The OpenAPI document is the API's contract: schemathesis (pinned in
//! scripts/lib.sh) generates requests from it, valid and invalid, against
//! the live daemon, and checks every answer: no 5xx, status codes and
//! bodies as the document says, what the document declares invalid is
//! refused. A fixed seed keeps the run reproducible.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Daemon;

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
[[listener]]
name = "main"
address = "127.0.0.1:0"
agent = "echo"

[agent.echo]
kind = "echo"

[store]
url = "sqlite://{db}"
spool = "{spool}"

[api]
address = "127.0.0.1:0"
rate_per_sec = 100000
burst = 100000
"#,
        db = dir.join("hark.db").display(),
        spool = dir.join("hark.spool").display()
    )
}

#[test]
fn schemathesis_finds_no_request_the_api_answers_against_its_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&config(dir.path()));
    let api = daemon.api_address().expect("the api listens");
    let token = common::runtime().block_on(async {
        let db = format!("sqlite://{}", dir.path().join("hark.db").display());
        let store = hark::store::Store::connect(&db).await.unwrap();
        let t = store
            .create_token("default", hark::store::Role::Admin, "fuzzer")
            .await
            .unwrap()
            .token;
        store.close().await;
        t
    });
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, hark::OPENAPI).unwrap();
    // Through python3, so no console script on PATH is needed.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
        ])
        .arg("--config-file")
        .arg(common::root().join("engine/tests/data/schemathesis.toml"))
        .arg("run")
        .arg(&schema)
        .args(["--url", &format!("http://{api}")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // All checks (the default; `--checks all` would override the
        // config file's exceptions). One worker: hypothesis on Python 3.11
        // trips over its own recursion check with two.
        .args(["--max-examples", "30", "--seed", "7", "--workers", "1"])
        .args(["--request-timeout", "10"])
        .env("NO_COLOR", "1")
        // Its cache of crashes goes with the temp dir, not into the tree.
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run schemathesis ({e}): scripts/test installs it"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("passed") || l.contains("failed") || l.contains("cases"))
        .collect();
    println!("{}", summary.join("\n"));
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    daemon.pump_log();
    assert!(
        !daemon.log.iter().any(|l| l.contains("panicked")),
        "{:#?}",
        daemon.log
    );
}
