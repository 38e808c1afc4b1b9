//! Speech-to-text latency: from turn end to text, for 2 s and 5 s turns,
//! with Whisper tiny.en and base on 2 threads, with the fitted encoder
//! window (the default) and with the full 30 s window (the baseline, in
//! the same run). Prints p50/p95 of the transcription time, the real-time
//! factor, and the process's RSS growth when each model is loaded; then the
//! word error rate of each configuration on the espeak-ng fixtures and on
//! the real recorded Asterisk prompts, since a speed-up that loses accuracy
//! is no gain. Needs models/fetch.py and asterisk-core-sounds-en-wav.
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hark::speech::stt::{SttRequest, Transcriber, WhisperConfig, WhisperTranscriber, word_errors};
use hdrhistogram::Histogram;
use media_core::{CallId, SampleRate, Turn};

const RUNS: usize = 8;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `secs` of speech at 16 kHz, cut from the fixtures.
fn speech(secs: f32) -> Vec<i16> {
    let mut out = Vec::new();
    for name in ["book_table.16k.wav", "weather.16k.wav", "cancel.16k.wav"] {
        out.extend(
            hark::wav::read(&root().join("testdata/speech").join(name))
                .unwrap()
                .samples,
        );
    }
    out.truncate((16_000.0 * secs) as usize);
    out
}

fn transcribe(t: &WhisperTranscriber, rate: SampleRate, samples: Vec<i16>) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel();
    t.submit(SttRequest {
        call: CallId(uuid::Uuid::new_v4()),
        turn: Turn::from_recording(rate, samples),
        reply: tx,
    })
    .unwrap();
    rx.blocking_recv()
        .unwrap()
        .map(|t| t.text)
        .unwrap_or_default()
}

fn espeak() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string(root().join("testdata/speech/manifest.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (root().join("testdata/speech").join(f[0]), f[3].to_string())
        })
        .collect()
}

fn prompts() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string(root().join("testdata/speech/asterisk-prompts.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(|l| {
            let (n, t) = l.split_once('\t').unwrap();
            (
                PathBuf::from(format!("/usr/share/asterisk/sounds/en/{n}.wav")),
                t.to_string(),
            )
        })
        .collect()
}

fn wer(t: &WhisperTranscriber, set: &[(PathBuf, String)]) -> f64 {
    let (mut e, mut w) = (0, 0);
    for (path, reference) in set {
        let a = hark::wav::read(path).unwrap();
        let (de, dw) = word_errors(reference, &transcribe(t, a.rate, a.samples));
        e += de;
        w += dw;
    }
    e as f64 / w as f64
}

fn main() {
    println!("STT: turn end -> text, {RUNS} runs each, 2 threads, one worker");
    let mut wers = Vec::new();
    for model in ["tiny.en", "base"] {
        for fit_window in [true, false] {
            let before = rss_kib();
            let t = WhisperTranscriber::start(WhisperConfig {
                model: root().join(format!("models/whisper/ggml-{model}.bin")),
                name: model.into(),
                language: Some("en".into()),
                threads: 2,
                workers: 1,
                queue: 4,
                fit_window,
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let loaded = rss_kib().saturating_sub(before);
            for secs in [2.0f32, 5.0] {
                let samples = speech(secs);
                let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
                let mut text = String::new();
                for run in 0..=RUNS {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let start = Instant::now();
                    t.submit(SttRequest {
                        call: CallId(uuid::Uuid::new_v4()),
                        turn: Turn::from_recording(SampleRate::HZ_16000, samples.clone()),
                        reply: tx,
                    })
                    .unwrap();
                    let r = rx.blocking_recv().unwrap();
                    let took = start.elapsed();
                    if run > 0 {
                        // The first run warms caches; it is not counted.
                        h.record(took.as_micros() as u64).unwrap();
                    }
                    text = r.map(|t| t.text).unwrap_or_else(|e| format!("<{e}>"));
                }
                let p50 = Duration::from_micros(h.value_at_quantile(0.5));
                println!(
                    "{model:<8} {:<13} {secs:.0} s turn: p50 {:>7.1} ms  p95 {:>7.1} ms  RTF {:.3}  | {:?}",
                    if fit_window {
                        "fitted window"
                    } else {
                        "full window"
                    },
                    p50.as_secs_f64() * 1e3,
                    h.value_at_quantile(0.95) as f64 / 1e3,
                    p50.as_secs_f64() / f64::from(secs),
                    text.chars().take(60).collect::<String>(),
                );
            }
            println!(
                "{model:<8} model + state RSS: {:.1} MB",
                loaded as f64 / 1024.0
            );
            wers.push((model, fit_window, wer(&t, &espeak()), wer(&t, &prompts())));
            drop(t);
        }
    }
    println!("\nword error rate (same decoders):");
    for (model, fit, espeak, prompts) in wers {
        println!(
            "{model:<8} {:<13} espeak-ng fixtures {:>5.1} %   real Asterisk prompts {:>5.1} %",
            if fit { "fitted window" } else { "full window" },
            espeak * 100.0,
            prompts * 100.0
        );
    }
}
