//! Speech out: time to first audio for a 10-word sentence through the
//! streaming pipeline (normalize, espeak-ng, Piper, resample), the real-time
//! factor, and the RSS the loaded voice adds. The phonemizer alone (the
//! espeak-ng program) is measured in the same run as the baseline share.
//! Needs models/fetch.py and espeak-ng.
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hark::speech::tts::{PiperSynthesizer, PiperVoice, SpeechStream, Synthesizer};
use hdrhistogram::Histogram;
use media_core::SampleRate;

const RUNS: usize = 20;
const SENTENCE: &str = "Your table for two is booked for tomorrow at eight.";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn main() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let before = rss_kib();
    let voice = PiperVoice::load(
        &models.join("onnxruntime/libonnxruntime.so.1.31.1"),
        &models.join("piper/en_US-joe-medium.onnx"),
        1,
        2,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let voice_rss = rss_kib().saturating_sub(before);
    let synth: Arc<dyn Synthesizer> = Arc::new(PiperSynthesizer::new(voice, None));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(SENTENCE.split_whitespace().count(), 10);

    let mut espeak = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut first = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (mut audio_secs, mut synth_secs) = (0.0f64, 0.0f64);
    for run in 0..=RUNS {
        let t = Instant::now();
        let status = std::process::Command::new("espeak-ng")
            .args(["-q", "--ipa", "-v", "en-us", SENTENCE])
            .output()
            .unwrap();
        assert!(status.status.success());
        let e = t.elapsed();
        let (ttfa, total, samples) = rt.block_on(async {
            let start = Instant::now();
            let mut stream = SpeechStream::start(
                Arc::clone(&synth),
                SampleRate::HZ_8000,
                Duration::from_millis(300),
            );
            stream.push(SENTENCE).await.unwrap();
            stream.finish();
            let mut ttfa = None;
            let mut samples = 0;
            while let Some(chunk) = stream.next_audio().await {
                let chunk = chunk.unwrap().audio;
                ttfa.get_or_insert(start.elapsed());
                samples += chunk.len();
            }
            (ttfa.unwrap(), start.elapsed(), samples)
        });
        if run > 0 {
            espeak.record(e.as_micros() as u64).unwrap();
            first.record(ttfa.as_micros() as u64).unwrap();
            audio_secs += samples as f64 / 8_000.0;
            synth_secs += total.as_secs_f64();
        }
    }
    println!("TTS, 10-word sentence at 8 kHz, {RUNS} runs, Piper on 2 threads:");
    println!(
        "  time to first audio      p50 {:>7.1} ms  p95 {:>7.1} ms",
        pct(&first, 0.5),
        pct(&first, 0.95)
    );
    println!(
        "  espeak-ng alone (base)   p50 {:>7.1} ms  p95 {:>7.1} ms  ({:.0} % of first audio)",
        pct(&espeak, 0.5),
        pct(&espeak, 0.95),
        100.0 * pct(&espeak, 0.5) / pct(&first, 0.5)
    );
    println!(
        "  real-time factor {:.3} ({:.2} s of audio per sentence)",
        synth_secs / audio_secs,
        audio_secs / RUNS as f64
    );
    println!(
        "  RSS of the loaded voice: {:.1} MB",
        voice_rss as f64 / 1024.0
    );
}
