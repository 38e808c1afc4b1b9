//! Natural turn-taking end to end with real parts: `hark serve` with
//! Silero, the Smart Turn end-of-turn model, local Whisper, Piper and the
//! scripted agent (`turn = "smart"`); `hark dial` plays a caller who stops
//! to think in the middle of a sentence (real recorded prompts with a
//! pause inserted at a word boundary). Each sentence must reach the agent
//! as one turn, whole.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hark::dial::{DialOptions, dial};
use hark::speech::stt::word_errors;
use media_core::SampleRate;

const RATE: SampleRate = SampleRate::HZ_8000;

fn config() -> String {
    format!(
        r#"
[speech]
models_dir = "{models}"

[[listener]]
name = "voice"
address = "127.0.0.1:0"
agent = "desk"

[agent.desk]
kind = "chat"
providers = []

[agent.desk.script]
greeting = "Hello."
questions = [
  {{ slot = "first", ask = "Go on." }},
  {{ slot = "second", ask = "And then?" }},
]
confirm = "Noted."
closing = "Goodbye."

[agent.desk.voice]
turn = "smart"

[store]
url = "sqlite://calls.db"
"#,
        models = root().join("models").display()
    )
}

fn prompt(name: &str) -> Vec<i16> {
    let path = Path::new("/usr/share/asterisk/sounds/en").join(format!("{name}.wav"));
    let audio = hark::wav::read(&path)
        .unwrap_or_else(|e| panic!("{e} (scripts/test installs asterisk-core-sounds-en-wav)"));
    assert_eq!(audio.rate, RATE);
    audio.samples
}

/// `samples` with `pause_ms` of silence inserted at the quietest 10 ms
/// within 120 ms of `near_ms`: between two words, as a caller pauses.
fn with_pause(samples: &[i16], near_ms: usize, pause_ms: usize) -> Vec<i16> {
    let block = 80;
    let energy = |i: usize| -> i64 {
        samples[i * block..(i + 1) * block]
            .iter()
            .map(|&s| i64::from(s) * i64::from(s))
            .sum()
    };
    let centre = near_ms / 10;
    let quietest = (centre - 12..=centre + 12)
        .min_by_key(|&i| energy(i))
        .unwrap();
    let at = quietest * block + block / 2;
    let mut out = samples[..at].to_vec();
    out.extend(std::iter::repeat_n(0i16, pause_ms * 8));
    out.extend_from_slice(&samples[at..]);
    out
}

#[test]
fn a_caller_who_pauses_mid_sentence_is_heard_as_one_turn() {
    let mut daemon = Daemon::start(&config());
    // (prompt, its words, where a pause leaves the sentence open, pause):
    // "The conference will | begin when the leader arrives." and "Please
    // check the number and | dial again." (A pause
    // after a sentence that is whole by itself, "The leader has left |
    // the conference.", is a turn end to both signals, as it would be to
    // a person.)
    let sentences = [
        (
            "conf-waitforleader",
            "The conference will begin when the leader arrives.",
            830,
            700,
        ),
        (
            "check-number-dial-again",
            "Please check the number and dial again.",
            1_675,
            1_000,
        ),
    ];
    // The greeting and the first question are heard out before the caller
    // speaks; each answer waits for the agent's next question.
    let mut audio = vec![0i16; 8 * 4_000];
    for (name, _, near, pause) in &sentences {
        audio.extend(with_pause(&prompt(name), *near, *pause));
        audio.extend(vec![0i16; 8 * 5_000]);
    }
    let mut opts = DialOptions::new(daemon.address, RATE, audio);
    opts.tail = Duration::from_secs(2);
    runtime().block_on(dial(&opts)).unwrap();
    assert!(daemon.wait_for_log_count("caller turn", 2, Duration::from_secs(30)));
    daemon.pump_log();
    // Each mid-sentence pause was judged "not yet".
    let judged: Vec<&String> = daemon
        .log
        .iter()
        .filter(|l| l.contains("pause judged"))
        .collect();
    for l in &judged {
        println!("{l}");
    }
    assert!(
        judged.iter().any(|l| l.contains("complete=false")),
        "{judged:#?}"
    );

    let db = format!("sqlite://{}", daemon.dir().join("calls.db").display());
    let id = opts.uuid.to_string();
    let said: Vec<String> = runtime().block_on(async {
        let store = hark::store::Store::connect(&db).await.unwrap();
        let mut said = Vec::new();
        for _ in 0..100 {
            if let Ok(c) = store.call("default", &id).await
                && c.call.end_ms.is_some()
            {
                said = c
                    .transcript
                    .iter()
                    .filter(|s| s.speaker == "caller")
                    .map(|s| s.text.clone())
                    .collect();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.close().await;
        said
    });
    assert_eq!(said.len(), 2, "one turn per sentence: {said:#?}");
    // Both ends of each sentence are in its one turn (the inserted silence
    // may cost Whisper a word at the cut, never a half of the sentence).
    let words = |t: &str| -> Vec<String> {
        t.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    for ((_, truth, _, _), heard) in sentences.iter().zip(&said) {
        let (t, h) = (words(truth), words(heard));
        assert!(
            h.first() == t.first() && h.last() == t.last(),
            "the whole sentence in one turn: {heard:?} for {truth:?}"
        );
        let (errors, total) = word_errors(truth, heard);
        println!("{errors} of {total} words wrong: {heard:?}");
    }
}
