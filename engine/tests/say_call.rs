//! End to end: `hark serve` with a say agent; `hark dial` hears the
//! announcement (from the start-up prompt cache), paced in real time, then
//! gets AudioSocket hangup; hark's own Whisper checks what was said.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use hark::dial::{DialEnd, DialOptions, dial};
use hark::speech::stt::word_errors;
use media_core::SampleRate;

const TEXT: &str = "Thank you for calling. Our offices are closed today.";

#[test]
fn the_caller_hears_the_announcement_then_the_dialplan_continues() {
    let config = format!(
        r#"
[speech]
models_dir = "{models}"

[[listener]]
name = "hello"
address = "127.0.0.1:0"
agent = "hello"

[agent.hello]
kind = "say"
text = "{TEXT}"
"#,
        models = root().join("models").display()
    );
    let mut daemon = Daemon::start(&config);
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("speech loaded") && l.contains("prompts=2")),
        "{:#?}",
        daemon.log
    );
    // The caller sends 6 s of silence while listening, as a phone would.
    let mut opts = DialOptions::new(daemon.address, SampleRate::HZ_8000, vec![0; 48_000]);
    opts.tail = Duration::from_secs(2);
    let report = runtime().block_on(dial(&opts)).unwrap();
    assert_eq!(
        report.end,
        DialEnd::ServerHangup,
        "hark hangs up after speaking"
    );
    let secs = report.received.len() as f64 / 8_000.0;
    println!("received {secs:.2} s");
    assert!((2.0..8.0).contains(&secs), "{secs} s of speech");
    // Paced: the gaps between frames are 20 ms (loose bound: a loaded CI box).
    let i = report.intervals();
    assert!(
        i.p50 >= Duration::from_millis(19) && i.p50 <= Duration::from_millis(21),
        "{i}"
    );
    // What the caller heard, through Whisper.
    let heard = hear(
        &whisper_tiny(),
        SampleRate::HZ_8000,
        report.received.clone(),
    );
    let (e, w) = word_errors(TEXT, &heard);
    // Piper varies a little from run to run; allow a word or two misheard.
    assert!(e * 3 <= w, "heard {heard:?}");
    assert!(daemon.wait_for_log("reason=agent hung up", Duration::from_secs(5)));
}
