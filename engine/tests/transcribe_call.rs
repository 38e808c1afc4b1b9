//! End to end: `hark serve` with a transcribe agent, `hark dial` streaming a
//! three-turn fixture over real TCP; the daemon's logged transcripts must
//! match the reference text.
// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use hark::dial::{DialOptions, dial};
use hark::speech::stt::word_errors;

fn config(vad: &str) -> String {
    format!(
        r#"
[speech]
models_dir = "{models}"

[stt]
model = "tiny.en"
threads = 2

[[listener]]
name = "ears"
address = "127.0.0.1:0"
agent = "listen"

[agent.listen]
kind = "transcribe"
vad = "{vad}"
"#,
        models = root().join("models").display()
    )
}

fn run(vad: &str) {
    let mut daemon = Daemon::start(&config(vad));
    let audio = hark::wav::read(&root().join("testdata/speech/turns.8k.wav")).unwrap();
    let truth: Vec<String> = std::fs::read_to_string(root().join("testdata/speech/turns.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.splitn(3, '\t').nth(2).unwrap().to_string())
        .collect();
    let mut opts = DialOptions::new(daemon.address, audio.rate, audio.samples);
    opts.tail = Duration::from_millis(1_500);
    let report = runtime().block_on(dial(&opts)).expect("dial");
    assert!(report.sent_frames > 500);
    // The last turn ends at the hangover after the audio; its text follows.
    for n in 1..=truth.len() {
        let found = daemon.wait_for_log_count("caller turn", n, Duration::from_secs(60));
        assert!(found, "only {} turns logged: {:#?}", n - 1, daemon.log);
    }
    let texts: Vec<String> = daemon
        .log
        .iter()
        .filter(|l| l.contains("caller turn"))
        .map(|l| {
            let a = l.find("text=").expect("text field") + 5;
            let b = l[a..].find(" confidence=").expect("confidence field") + a;
            l[a..b].to_string()
        })
        .collect();
    assert_eq!(texts.len(), truth.len(), "{texts:#?}");
    let (mut errors, mut words) = (0, 0);
    for (got, want) in texts.iter().zip(&truth) {
        let (e, w) = word_errors(want, got);
        println!("{vad}: {e}/{w}: {got:?} (ref {want:?})");
        errors += e;
        words += w;
    }
    let wer = errors as f64 / words as f64;
    // The espeak-ng threshold of tests/stt_whisper.rs.
    assert!(wer <= 0.35, "WER {wer:.3}");
    // Each turn carries its timings.
    let line = daemon
        .log
        .iter()
        .find(|l| l.contains("caller turn"))
        .unwrap();
    for field in [
        "speech_ms=",
        "endpoint_ms=",
        "stt_ms=",
        "turn_end_to_text_ms=",
        "engine=whisper/tiny.en",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[test]
fn three_turns_are_transcribed_with_silero() {
    run("silero");
}

#[test]
fn three_turns_are_transcribed_with_the_energy_vad() {
    run("energy");
}

#[test]
fn a_missing_model_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hark.toml");
    std::fs::write(
        &path,
        config("silero").replace(
            &root().join("models").display().to_string(),
            "/nonexistent/models",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/models") && err.contains("models/fetch.py"),
        "{err}"
    );
}

/// A caller who hangs up the moment they stop speaking: the call's end
/// does not wait for that last turn's transcript. Its slot is free at once
/// (a second call fits a hark of one call), and the transcript is stored
/// as the call's caller segment when it comes.
#[test]
fn the_last_turn_is_stored_after_the_call_and_holds_no_slot() {
    let dir = tempfile::tempdir().unwrap();
    let config = config("silero").replace(
        "[[listener]]",
        &format!(
            "[server]\nmax_calls = 1\n\n[store]\nurl = \"sqlite://{}\"\nspool = \"{}\"\n\n[[listener]]",
            dir.path().join("hark.db").display(),
            dir.path().join("hark.spool").display()
        ),
    );
    let mut daemon = Daemon::start(&config);
    let speech = hark::wav::read(&root().join("testdata/speech/turns.8k.wav")).unwrap();
    // The first turn only, then hang up at once (no silence after it).
    let first = &speech.samples[..speech.rate.samples_in(Duration::from_millis(3_000))];
    let mut opts = DialOptions::new(daemon.address, speech.rate, first.to_vec());
    opts.tail = Duration::ZERO;
    opts.hangup = true;
    let id = opts.uuid.to_string();
    let rt = runtime();
    rt.block_on(dial(&opts)).expect("dial");
    // As soon as hark has ended the call (before, the end waited for the
    // transcript, up to 60 s): the slot is free, a second call is answered.
    assert!(daemon.wait_for_log(
        "call ended reason=peer sent hangup",
        Duration::from_secs(10)
    ));
    daemon.pump_log();
    let early = !daemon.log.iter().any(|l| l.contains("caller turn"));
    let mut next = DialOptions::new(daemon.address, speech.rate, vec![0; 1_600]);
    next.tail = Duration::from_millis(100);
    let report = rt.block_on(dial(&next)).expect("dial");
    assert_ne!(report.end, hark::dial::DialEnd::Refused);
    println!("the second call came before the first call's transcript: {early}");
    // The end was recorded without waiting, and the turn's text follows.
    assert!(daemon.wait_for_log("caller turn", Duration::from_secs(60)));
    let db = format!("sqlite://{}", dir.path().join("hark.db").display());
    let text = rt.block_on(async {
        let store = hark::store::Store::connect(&db).await.unwrap();
        let mut text = None;
        for _ in 0..100 {
            if let Ok(c) = store.call("default", &id).await
                && let Some(s) = c.transcript.iter().find(|s| s.speaker == "caller")
            {
                assert!(c.call.end_ms.is_some());
                text = Some(s.text.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.close().await;
        text
    });
    let text = text.expect("the late turn is stored");
    assert!(!text.is_empty());
}

/// What a caller says is theirs: at the production log level (info) the
/// turns are logged with their timings and size, never their words.
#[test]
fn at_info_level_no_transcript_reaches_the_log() {
    let mut daemon = Daemon::start_logging(&config("silero"), "info");
    let audio = hark::wav::read(&root().join("testdata/speech/turns.8k.wav")).unwrap();
    let truth = std::fs::read_to_string(root().join("testdata/speech/turns.tsv")).unwrap();
    let mut opts = DialOptions::new(daemon.address, audio.rate, audio.samples);
    opts.tail = Duration::from_millis(1_500);
    runtime().block_on(dial(&opts)).expect("dial");
    assert!(daemon.wait_for_log_count("caller turn", 3, Duration::from_secs(60)));
    daemon.pump_log();
    let turns: Vec<&String> = daemon
        .log
        .iter()
        .filter(|l| l.contains("caller turn"))
        .collect();
    assert!(
        turns
            .iter()
            .all(|l| l.contains("chars=") && !l.contains("text=")),
        "{turns:#?}"
    );
    // No word of four letters or more of what was said appears anywhere.
    for line in truth.lines().skip(1) {
        let text = line.splitn(3, '\t').nth(2).unwrap_or("");
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 4)
        {
            let w = word.to_lowercase();
            assert!(
                !daemon.log.iter().any(|l| l.to_lowercase().contains(&w)),
                "{word:?} is in the log: {:#?}",
                daemon.log
            );
        }
    }
}
