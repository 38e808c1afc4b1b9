//! The voice agent, end to end over real TCP: `hark serve` (release build)
//! with Silero, Whisper tiny.en, Piper and the scripted agent; callers are
//! `hark dial` clients speaking real recorded human prompts.
//!
//! 1. Voice-to-voice latency (caller's last voiced sample -> first reply
//!    frame received) over 60 turns, with the voice defaults (400 ms
//!    hangover, STT started on a 200 ms preview) and, in the same run, the
//!    transcription defaults (700 ms hangover, no preview) as the baseline.
//!    The daemon's per-turn breakdown (endpointing wait, STT, first token,
//!    first audio, playout) comes from its `turn latency` log lines.
//!    And with `turn = "smart"` (the end-of-turn model and the preview's
//!    words judge each pause), against the voice defaults.
//! 2. Barge-in reaction (caller's onset -> the interrupted reply's last
//!    frame received), with the default 300 ms minimum and with 32 ms;
//!    and when the agent was ducked (hark's `barge-in` log line).
//! 3. Concurrent conversations: frame pacing and voice-to-voice as calls
//!    are added.
//!
//! Run with `benches/run-voice` (builds the release daemon first). Needs
//! models/fetch.py and asterisk-core-sounds-en-wav.
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hark::dial::{DialOptions, DialReport, dial};
use hark::stats::Percentiles;
use media_core::SampleRate;

const RATE: SampleRate = SampleRate::HZ_8000;

/// Real prompts a caller "says", each 1.6 to 3.2 s long.
const PROMPTS: [&str; 10] = [
    "queue-thankyou",
    "all-circuits-busy-now",
    "check-number-dial-again",
    "conf-leaderhasleft",
    "conf-now-recording",
    "conf-getpin",
    "conf-placeintoconf",
    "cannot-complete-as-dialed",
    "conf-waitforleader",
    "conf-onlyperson",
];

use hark_benches::root;

fn prompt(name: &str) -> Vec<i16> {
    let path = PathBuf::from("/usr/share/asterisk/sounds/en").join(format!("{name}.wav"));
    let a = hark::wav::read(&path).unwrap();
    assert_eq!(a.rate, RATE);
    a.samples
}

/// 10 ms blocks of `s` whose RMS is over 300: (first, last + 1), in ms.
fn voiced(s: &[i16]) -> (u64, u64) {
    let loud: Vec<bool> = s
        .chunks(80)
        .map(|b| {
            let e: f64 = b.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            (e / b.len() as f64).sqrt() > 300.0
        })
        .collect();
    let first = loud.iter().position(|&l| l).unwrap() as u64;
    let last = loud.iter().rposition(|&l| l).unwrap() as u64;
    (first * 10, (last + 1) * 10)
}

/// A daemon with one voice listener; its log lines are collected.
struct Daemon {
    child: Child,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: PathBuf,
}

impl Daemon {
    fn start(voice: &str, questions: usize, greeting: &str) -> Daemon {
        let questions: Vec<String> = (1..=questions)
            .map(|i| format!("{{ slot = \"q{i}\", ask = \"Thanks. And the next one, please?\" }}"))
            .collect();
        let config = format!(
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
greeting = "{greeting}"
questions = [{questions}]
closing = "Goodbye."
[agent.desk.voice]
silence_timeout_ms = 60000
{voice}
"#,
            models = root().join("models").display(),
            questions = questions.join(", ")
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let (child, address, dir) =
            hark_benches::serve_release("voice", "benches/run-voice", &config, move |line| {
                sink.lock().unwrap().push(line.to_string())
            });
        Daemon {
            child,
            address,
            log,
            _dir: dir,
        }
    }

    /// Values of `field` (ms) on log lines containing `needle`, then clears the log.
    fn take(&self, needle: &str, fields: &[&str]) -> Vec<Vec<u64>> {
        let mut log = self.log.lock().unwrap();
        let out = log
            .iter()
            .filter(|l| l.contains(needle))
            .map(|l| {
                fields
                    .iter()
                    .map(|f| {
                        l.split(&format!(" {f}="))
                            .nth(1)
                            .and_then(|v| v.split_whitespace().next())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0)
                    })
                    .collect()
            })
            .collect();
        log.clear();
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A caller: `lead` ms of listening, then each prompt followed by `gap` ms.
/// Returns the audio and each turn's voiced end (ms from the call's start).
fn caller(lead: u64, prompts: &[&str], gap: u64) -> (Vec<i16>, Vec<u64>) {
    let mut audio = vec![0; (lead * 8) as usize];
    let mut ends = Vec::new();
    for p in prompts {
        let words = prompt(p);
        let at = audio.len() as u64 / 8;
        ends.push(at + voiced(&words).1);
        audio.extend(words);
        audio.extend(vec![0; (gap * 8) as usize]);
    }
    (audio, ends)
}

/// When frames with sound arrived: hark sends a frame every 20 ms from
/// the UUID to the hangup, silence (all zeros) when the agent is quiet.
fn voiced_arrivals(report: &DialReport) -> Vec<Duration> {
    report
        .arrivals
        .iter()
        .filter(|a| {
            report.received[a.offset..a.offset + a.len]
                .iter()
                .any(|&s| s != 0)
        })
        .map(|a| a.at)
        .collect()
}

/// Voice-to-voice per turn: the first frame with sound received after each
/// turn's end.
fn voice_to_voice(report: &DialReport, ends: &[u64]) -> Vec<Duration> {
    let voiced = voiced_arrivals(report);
    ends.iter()
        .filter_map(|&end| {
            let end = Duration::from_millis(end);
            voiced.iter().find(|&&at| at > end).map(|&at| at - end)
        })
        .filter(|d| *d < Duration::from_secs(3))
        .collect()
}

/// Receive intervals inside utterances (gaps over 100 ms are pauses).
fn intervals(report: &DialReport) -> Vec<Duration> {
    report
        .arrivals
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .filter(|d| *d < Duration::from_millis(100))
        .collect()
}

fn ms(values: &[Vec<u64>], i: usize) -> Percentiles {
    Percentiles::from_durations(values.iter().map(|v| Duration::from_millis(v[i])))
}

fn latency(rt: &tokio::runtime::Runtime, label: &str, voice: &str) -> Percentiles {
    let turns_per_call = 10;
    let calls = 6;
    let daemon = Daemon::start(voice, turns_per_call + 1, "Hello.");
    let mut all = Vec::new();
    let started = Instant::now();
    for c in 0..calls {
        let prompts: Vec<&str> = (0..turns_per_call)
            .map(|i| PROMPTS[(i + c) % PROMPTS.len()])
            .collect();
        let (audio, ends) = caller(3_000, &prompts, 3_500);
        let mut opts = DialOptions::new(daemon.address, RATE, audio);
        opts.tail = Duration::from_secs(1);
        let report = rt.block_on(dial(&opts)).unwrap();
        all.extend(voice_to_voice(&report, &ends));
        eprint!("\r  {label}: call {}/{calls}", c + 1);
    }
    eprintln!(" ({:.0} s)", started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_millis(300));
    let stages = daemon.take(
        "turn latency",
        &[
            "voice_to_voice_ms",
            "endpoint_ms",
            "stt_ms",
            "first_token_ms",
            "first_audio_ms",
            "playout_ms",
        ],
    );
    let v2v = Percentiles::from_durations(all.iter().copied());
    println!("{label}");
    println!("  voice-to-voice at the caller: {v2v}");
    println!("  daemon's breakdown over {} turns:", stages.len());
    for (i, name) in [
        "voice-to-voice (daemon)",
        "endpointing wait",
        "STT after the turn end",
        "first token",
        "first audio (TTS)",
        "playout",
    ]
    .iter()
    .enumerate()
    {
        println!("    {name:<24} {}", ms(&stages, i));
    }
    v2v
}

fn barge_in(rt: &tokio::runtime::Runtime, label: &str, voice: &str) -> Percentiles {
    let greeting = "Hello, thank you for calling the test line. This greeting is long on purpose, so that you can talk over it whenever you like.";
    let daemon = Daemon::start(voice, 2, greeting);
    let mut reactions = Vec::new();
    for i in 0..12u64 {
        let lead = 1_500 + i * 250;
        let words = prompt(PROMPTS[(i as usize) % PROMPTS.len()]);
        let onset = Duration::from_millis(lead + voiced(&words).0);
        let mut audio = vec![0; (lead * 8) as usize];
        audio.extend(words);
        audio.extend(vec![0; 8 * 1_000]);
        let mut opts = DialOptions::new(daemon.address, RATE, audio);
        opts.tail = Duration::from_millis(200);
        let report = rt.block_on(dial(&opts)).unwrap();
        // The greeting's last frame: the end of the first run of frames
        // with sound.
        let mut last = None;
        for w in voiced_arrivals(&report).windows(2) {
            if w[1] - w[0] > Duration::from_millis(200) {
                last = Some(w[0]);
                break;
            }
        }
        if let Some(stop) = last.filter(|&s| s > onset) {
            reactions.push(stop - onset);
        }
        eprint!("\r  {label}: call {}/12", i + 1);
    }
    eprintln!();
    let p = Percentiles::from_durations(reactions);
    println!("{label}: barge-in reaction (onset -> last frame) {p}");
    // The duck, from hark's own log: its onset (the endpointer's) to the
    // ducked frame, and what the calls that were not cut off turned into.
    std::thread::sleep(Duration::from_millis(200));
    let ducked: Vec<Duration> = daemon
        .take("barge-in", &["ducked_ms"])
        .into_iter()
        .map(|v| Duration::from_millis(v[0]))
        .collect();
    if !ducked.is_empty() {
        println!(
            "{label}: ducked (hark's log: onset -> duck) {}",
            Percentiles::from_durations(ducked)
        );
    }
    p
}

fn concurrency(rt: &tokio::runtime::Runtime, calls: usize) {
    let daemon = Daemon::start("", 6, "Hello.");
    let mut tasks = Vec::new();
    for c in 0..calls {
        let prompts: Vec<&str> = (0..5).map(|i| PROMPTS[(i + c) % PROMPTS.len()]).collect();
        // Stagger the callers so their turns do not all end at once.
        let (audio, ends) = caller(3_000 + (c as u64 * 397) % 3_000, &prompts, 4_000);
        let mut opts = DialOptions::new(daemon.address, RATE, audio);
        opts.tail = Duration::from_secs(1);
        tasks.push(rt.spawn(async move { (dial(&opts).await.unwrap(), ends) }));
    }
    let mut v2v = Vec::new();
    let mut gaps = Vec::new();
    for t in tasks {
        let (report, ends) = rt.block_on(t).unwrap();
        v2v.extend(voice_to_voice(&report, &ends));
        gaps.extend(intervals(&report));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ended = daemon.take("call ended", &["late_slots", "underruns"]);
    let late: u64 = ended.iter().map(|v| v[0]).sum();
    let underruns: u64 = ended.iter().map(|v| v[1]).sum();
    println!(
        "{calls:>3} concurrent conversations: frame interval {}; voice-to-voice {}; late slots {late}, underruns {underruns}",
        Percentiles::from_durations(gaps),
        Percentiles::from_durations(v2v)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // HARK_VOICE_PART=latency,barge-in,concurrency (any of them) runs only
    // those parts; unset runs all three.
    let part = std::env::var("HARK_VOICE_PART").unwrap_or_default();
    let runs = |name: &str| part.is_empty() || part.split(',').any(|p| p.trim() == name);
    // HARK_VOICE_TRY="hangover_ms = 300\npreview_ms = 150" measures one more
    // setting first, to tune the defaults.
    if let Ok(extra) = std::env::var("HARK_VOICE_TRY") {
        let extra = extra.replace("\\n", "\n");
        latency(
            &rt,
            &format!("trying: {}", extra.replace('\n', ", ")),
            &extra,
        );
        if std::env::var("HARK_VOICE_ONLY_TRY").is_ok() {
            return;
        }
    }
    if runs("latency") {
        println!("== voice-to-voice (60 turns each; local Whisper tiny.en, Piper, scripted agent)");
        let fast = latency(&rt, "voice defaults (hangover 400 ms, preview 200 ms)", "");
        let smart = latency(
            &rt,
            "smart turn-taking (turn = \"smart\": preview 200 ms, hangover 2 s)",
            "turn = \"smart\"",
        );
        let base = latency(
            &rt,
            "baseline: transcription defaults (hangover 700 ms, no preview)",
            "hangover_ms = 700\npreview_ms = 0",
        );
        println!(
            "  ratio voice/baseline: p50 {:.2}, p95 {:.2}",
            fast.p50.as_secs_f64() / base.p50.as_secs_f64(),
            fast.p95.as_secs_f64() / base.p95.as_secs_f64()
        );
        println!(
            "  ratio smart/voice defaults: p50 {:.2}, p95 {:.2}",
            smart.p50.as_secs_f64() / fast.p50.as_secs_f64(),
            smart.p95.as_secs_f64() / fast.p95.as_secs_f64()
        );
    }
    if runs("barge-in") {
        println!("\n== barge-in");
        barge_in(&rt, "default (barge_in_min_ms 300)", "");
        barge_in(
            &rt,
            "fast (barge_in_min_ms 32, min_speech_ms 32)",
            "barge_in_min_ms = 32\nmin_speech_ms = 32",
        );
    }
    if runs("concurrency") {
        println!("\n== concurrent full-pipeline calls (5 turns each)");
        for calls in [1, 4, 8, 16] {
            concurrency(&rt, calls);
        }
    }
}
