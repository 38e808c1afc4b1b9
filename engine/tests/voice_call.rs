//! End to end with real parts: `hark serve` with Silero, local Whisper,
//! Piper and the scripted agent; `hark dial` plays a caller who talks in
//! turns (real recorded human prompts with pauses), and hark's own Whisper
//! checks what the agent said back.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hark::dial::{DialEnd, DialOptions, DialReport, dial};
use hark::speech::stt::word_errors;
use media_core::SampleRate;

const RATE: SampleRate = SampleRate::HZ_8000;

/// A voice agent on a scripted dialog of two questions.
fn config(voice: &str) -> String {
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
greeting = "Hello, this is the test line."
questions = [
  {{ slot = "problem", ask = "What can I do for you?" }},
  {{ slot = "conference", ask = "Which conference is it about?" }},
]
confirm = "I have noted that."
closing = "Thank you. Goodbye."

[agent.desk.voice]
{voice}

[store]
url = "sqlite://calls.db"

[api]
address = "127.0.0.1:0"
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

fn fixture(name: &str) -> Vec<i16> {
    hark::wav::read(&root().join("testdata/speech").join(name))
        .unwrap()
        .samples
}

fn silence(ms: usize) -> Vec<i16> {
    vec![0; ms * 8]
}

/// Where speech starts in `samples` (8 kHz): the first 10 ms whose RMS
/// level is over 300.
fn speech_onset(samples: &[i16]) -> Duration {
    let block = samples
        .chunks(80)
        .position(|b| {
            let energy: f64 = b.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            (energy / b.len() as f64).sqrt() > 300.0
        })
        .expect("the recording has speech");
    Duration::from_millis(block as u64 * 10)
}

/// The agent's utterances as heard by the caller: runs of received frames
/// split where only silence (frames of zeros: hark keeps the line alive
/// with them) arrived for more than 300 ms.
fn utterances(report: &DialReport) -> Vec<(Duration, Duration, Vec<i16>)> {
    let mut out: Vec<(Duration, Duration, Vec<i16>)> = Vec::new();
    for a in &report.arrivals {
        let samples = &report.received[a.offset..a.offset + a.len];
        if samples.iter().all(|&s| s == 0) {
            continue;
        }
        match out.last_mut() {
            Some((_, end, s)) if a.at <= *end + Duration::from_millis(300) => {
                *end = a.at;
                s.extend_from_slice(samples);
            }
            _ => out.push((a.at, a.at, samples.to_vec())),
        }
    }
    out
}

#[test]
fn a_caller_talks_with_the_agent_in_turns() {
    let mut daemon = Daemon::start(&config(""));
    let turns = [
        (
            "check-number-dial-again",
            "Please check the number and dial again.",
        ),
        (
            "conf-waitforleader",
            "The conference will begin when the leader arrives.",
        ),
    ];
    let mut audio = silence(5_500);
    for (name, _) in &turns {
        audio.extend(prompt(name));
        audio.extend(silence(5_000));
    }
    audio.extend(fixture("yes_please.8k.wav"));
    audio.extend(silence(500));
    let mut opts = DialOptions::new(daemon.address, RATE, audio);
    opts.tail = Duration::from_secs(8);
    let report = runtime().block_on(dial(&opts)).unwrap();
    assert_eq!(report.end, DialEnd::ServerHangup, "the agent ends the call");
    // What the dialplan does as soon as AudioSocket() returns: ask the API
    // for the outcome.
    let api = daemon.api_address().expect("the api listens");
    let db = format!("sqlite://{}", daemon.dir().join("calls.db").display());
    let outcome = runtime().block_on(async {
        let store = hark::store::Store::connect(&db).await.unwrap();
        let token = store
            .create_token("default", hark::store::Role::Viewer, "dialplan")
            .await
            .unwrap()
            .token;
        let http = hark::llm::http_client().unwrap();
        let mut outcome = serde_json::Value::Null;
        // The call's start may still be on its way to the database.
        for _ in 0..50 {
            let r = http
                .get(format!("http://{api}/v1/calls/{}", opts.uuid))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            if r.status().is_success() {
                let body: serde_json::Value = r.json().await.unwrap();
                outcome = body["outcome"].clone();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.close().await;
        outcome
    });
    assert_eq!(
        outcome, "completed",
        "the dialplan reads the outcome at once"
    );

    // The caller's side, as hark transcribed it.
    daemon.pump_log();
    let caller: Vec<String> = daemon
        .log
        .iter()
        .filter(|l| l.contains("said speaker=Caller"))
        .map(|l| {
            let text = l.split(" text=").nth(1).unwrap_or("");
            text.split(" start_ms=").next().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(caller.len(), 3, "{:#?}", daemon.log);
    for ((_, reference), heard) in turns.iter().zip(&caller) {
        let (e, w) = word_errors(reference, heard);
        assert!(
            e * 4 <= w,
            "caller said {reference:?}, hark heard {heard:?}"
        );
    }
    assert!(caller[2].to_lowercase().starts_with("yes"), "{caller:?}");

    // The agent's side, as the caller heard it.
    let expected = [
        "Hello, this is the test line. What can I do for you?",
        "Which conference is it about?",
        "I have noted that. Is that right?",
        "Thank you. Goodbye.",
    ];
    let said = utterances(&report);
    assert_eq!(
        said.len(),
        expected.len(),
        "{:?}",
        said.iter().map(|u| (u.0, u.1)).collect::<Vec<_>>()
    );
    let stt = whisper_tiny();
    let (mut errors, mut words) = (0, 0);
    for ((_, _, samples), text) in said.iter().zip(expected) {
        let heard = hear(&stt, RATE, samples.clone());
        let (e, w) = word_errors(text, &heard);
        println!("agent: {text:?} -> heard {heard:?} ({e}/{w})");
        errors += e;
        words += w;
    }
    // Piper varies from run to run and tiny.en mishears a short phrase now
    // and then ("Goodbye" as "Bye bye"): allow 3 words in 10.
    assert!(
        errors * 10 <= words * 3,
        "{errors} of {words} words misheard"
    );

    // Each reply came back in about a second, and the outcome is recorded.
    assert!(daemon.wait_for_log_count("turn latency", 3, Duration::from_secs(2)));
    assert!(
        daemon.wait_for_log("outcome=completed", Duration::from_secs(2)),
        "{:#?}",
        daemon
            .log
            .iter()
            .filter(|l| l.contains("outcome"))
            .collect::<Vec<_>>()
    );
    let gaps: Vec<Duration> = said.windows(2).map(|w| w[1].0 - w[0].1).collect();
    println!("gaps between agent utterances: {gaps:?}");

    // The store has the call: both sides' segments, the turns' latency,
    // the outcome, and a lead from the script's slots.
    let id = opts.uuid.to_string();
    runtime().block_on(async {
        let store = hark::store::Store::connect(&db).await.unwrap();
        let mut call = None;
        for _ in 0..100 {
            if let Ok(c) = store.call("default", &id).await {
                let leads = hark::store::testing::scalar(&store, "SELECT COUNT(*) FROM leads")
                    .await
                    .unwrap();
                if c.call.outcome.is_some() && leads == 1 {
                    call = Some(c);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let call = call.expect("the call and its lead were stored");
        assert_eq!(call.call.outcome.as_deref(), Some("completed"));
        assert_eq!(call.call.agent, "desk");
        let speakers: Vec<&str> = call.transcript.iter().map(|s| s.speaker.as_str()).collect();
        assert_eq!(
            speakers.iter().filter(|s| **s == "caller").count(),
            3,
            "{speakers:?}"
        );
        // The agent's segments are its sentences, as the caller heard them.
        let agent: Vec<&str> = call
            .transcript
            .iter()
            .filter(|s| s.speaker == "agent")
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(agent.join(" "), expected.join(" "));
        assert!(
            call.transcript
                .windows(2)
                .all(|w| w[0].start_ms <= w[1].start_ms)
        );
        assert!(call.turns.len() >= 3, "{:?}", call.turns);
        assert!(call.turns.iter().all(|t| t.v2v_ms > 0 && t.v2v_ms < 5_000));
        assert!(
            call.ai_usage.iter().all(|u| u.provider == "scripted") && !call.ai_usage.is_empty(),
            "{:?}",
            call.ai_usage
        );
        let (leads, _) = store
            .list_leads(
                "default",
                &hark::store::LeadFilter {
                    limit: 5,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let notes = leads[0].notes.clone().unwrap_or_default();
        assert!(notes.contains("conference: "), "{notes}");
        assert!(notes.contains("problem: "), "{notes}");
        assert_eq!(leads[0].call_id, id);
        store.close().await;
    });
}

#[test]
fn talking_over_the_agent_stops_it_within_100_ms() {
    let voice = r#"
greeting = "Hello, thank you for calling the test line. This greeting is long on purpose, so that you can talk over it whenever you like."
barge_in_min_ms = 32
min_speech_ms = 32
stt_model = "base"
"#;
    let mut daemon = Daemon::start(&config(voice));
    // The caller listens for 2 s, then talks over the greeting. The
    // recording starts with a little silence: the onset is where the voice
    // starts (first 10 ms with an RMS level over 300).
    let words = prompt("conf-waitforleader");
    let onset = Duration::from_millis(2_000) + speech_onset(&words);
    let mut audio = silence(2_000);
    audio.extend(words);
    audio.extend(silence(4_000));
    let mut opts = DialOptions::new(daemon.address, RATE, audio);
    opts.tail = Duration::from_secs(1);
    let report = runtime().block_on(dial(&opts)).unwrap();
    let said = utterances(&report);
    assert!(said.len() >= 2, "the greeting, then a reply");
    let greeting_stop = said[0].1;
    assert!(
        greeting_stop > onset,
        "the greeting was still playing at the onset"
    );
    let reaction = greeting_stop - onset;
    println!("barge-in: the greeting's last frame arrived {reaction:?} after the caller's onset");
    assert!(reaction <= Duration::from_millis(100), "{reaction:?}");
    // The agent answered what the caller said after cutting in.
    daemon.pump_log();
    assert!(daemon.wait_for_log("barge-in", Duration::from_secs(2)));
    assert!(daemon.log.iter().any(|l| l.contains("interrupted=true")));
    // This agent transcribes with its own model.
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("caller turn") && l.contains("engine=whisper/base")),
        "{:#?}",
        daemon.log
    );
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("said speaker=Caller") && l.contains("conference")),
        "{:#?}",
        daemon.log
    );
}
