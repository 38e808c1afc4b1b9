//! SIGTERM: stop accepting, let calls drain, hang up what is left.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hark::dial::{DialEnd, DialOptions, dial};
use media_core::SampleRate;

#[test]
fn sigterm_drains_then_hangs_up_the_remaining_calls() {
    let mut daemon = Daemon::start(&echo_config("drain_timeout_ms = 1000"));
    let address = daemon.address;
    let rt = runtime();
    // A 10 s call: still running when the drain timeout passes.
    let long = rt.spawn(async move {
        let mut opts = DialOptions::new(address, SampleRate::HZ_8000, pattern(80_000));
        opts.tail = Duration::from_secs(1);
        dial(&opts).await
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let status = daemon
        .terminate(Duration::from_secs(8))
        .expect("hark exits");
    assert!(status.success(), "exit status {status}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the drain timeout"
    );
    let report = rt.block_on(long).unwrap().expect("dial");
    assert_eq!(
        report.end,
        DialEnd::ServerHangup,
        "the call gets AudioSocket hangup"
    );
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("drain timeout reached")),
        "{:#?}",
        daemon.log
    );
    // The listener is closed: a new call cannot connect.
    let refused = rt.block_on(dial(&DialOptions::new(
        address,
        SampleRate::HZ_8000,
        pattern(160),
    )));
    assert!(refused.is_err());
}

#[test]
fn sigterm_with_no_calls_exits_at_once() {
    let mut daemon = Daemon::start(&echo_config("drain_timeout_ms = 5000"));
    let t = Instant::now();
    let status = daemon
        .terminate(Duration::from_secs(3))
        .expect("hark exits");
    assert!(status.success());
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_call_that_ends_within_the_drain_timeout_is_not_cut() {
    let mut daemon = Daemon::start(&echo_config("drain_timeout_ms = 5000"));
    let address = daemon.address;
    let rt = runtime();
    let sent = pattern(8_000);
    let sent2 = sent.clone();
    let call = rt.spawn(async move {
        let mut opts = DialOptions::new(address, SampleRate::HZ_8000, sent2);
        opts.tail = Duration::from_millis(ECHO_DELAY_MS + 400);
        dial(&opts).await
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = daemon
        .terminate(Duration::from_secs(6))
        .expect("hark exits");
    assert!(status.success());
    let report = rt.block_on(call).unwrap().expect("dial");
    assert_eq!(report.end, DialEnd::Finished);
    assert_echo(
        &report.received,
        &sent,
        SampleRate::HZ_8000,
        Duration::from_millis(ECHO_DELAY_MS),
    );
}

#[test]
fn while_draining_readyz_counts_the_calls_really_up() {
    // With an API (and so a store) beside the echo listener.
    let dir = tempfile::tempdir().unwrap();
    let config = echo_config("drain_timeout_ms = 5000").replace(
        "[limits]",
        &format!(
            "[store]\nurl = \"sqlite://{}\"\nspool = \"{}\"\n\n[api]\naddress = \"127.0.0.1:0\"\n\n[limits]",
            dir.path().join("hark.db").display(),
            dir.path().join("hark.spool").display()
        ),
    );
    let mut daemon = Daemon::start(&config);
    let api = daemon.api_address().expect("the api listens");
    let address = daemon.address;
    let rt = runtime();
    // Three 4 s calls.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            rt.spawn(async move {
                let mut opts = DialOptions::new(address, SampleRate::HZ_8000, pattern(32_000));
                opts.hangup = true;
                dial(&opts).await
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let http = hark::llm::http_client().unwrap();
    let readyz = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let r = http
                .get(format!("http://{api}/readyz"))
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        })
    };
    // Draining: not ready, and the three calls are what is up (the drain
    // holds the permits that ending calls give back; they are not calls).
    let deadline = Instant::now() + Duration::from_secs(3);
    let body = loop {
        let b = readyz(&rt);
        if b["draining"] == true {
            break b;
        }
        assert!(Instant::now() < deadline, "never draining: {b}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["active_calls"], 3, "{body}");
    assert_eq!(body["spare_calls"], 0, "{body}");
    for c in calls {
        assert_eq!(rt.block_on(c).unwrap().unwrap().end, DialEnd::Finished);
    }
    drop(daemon);
}
