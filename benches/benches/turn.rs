//! Smart Turn v3.2 cost per check: features (Rust log-mel) plus the int8
//! model through ONNX Runtime on its inference thread, for a short turn
//! (1.5 s, mostly padding) and a full 8 s window, at 8 kHz (resampled in
//! the job) and 16 kHz. The in-run baseline is Silero VAD on one 20 ms
//! frame's worth of windows, the per-frame model every call already runs:
//! the ratio says how many frames of VAD one turn check costs. A check
//! runs only when a pause begins, never per frame.
//!
//! Prints hdrhistogram p50/p95/p99. Needs models/fetch.py.
//! Usage: cargo bench -p hark-benches --bench turn
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use hark::speech::turn::TurnModel;
use hark::speech::vad::SileroModel;
use hdrhistogram::Histogram;
use media_core::{Resampler, SampleRate, Vad};

const RUNS: usize = 60;

fn prompt() -> (SampleRate, Vec<i16>) {
    let wav = hark::wav::read(&PathBuf::from(
        "/usr/share/asterisk/sounds/en/conf-waitforleader.wav",
    ))
    .unwrap();
    (wav.rate, wav.samples)
}

fn report(label: &str, h: &Histogram<u64>) -> f64 {
    println!(
        "{label:<40} p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  (n={})",
        h.value_at_quantile(0.50) as f64 / 1e6,
        h.value_at_quantile(0.95) as f64 / 1e6,
        h.value_at_quantile(0.99) as f64 / 1e6,
        h.len()
    );
    h.value_at_quantile(0.5) as f64
}

fn main() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let library = models.join("onnxruntime/libonnxruntime.so.1.31.1");
    let turn = TurnModel::load(
        &library,
        &models.join("smart-turn/smart-turn-v3.2-cpu.onnx"),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py"));
    let silero = SileroModel::load(&library, &models.join("silero/silero_vad.onnx"), 1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Baseline: Silero on 20 ms of 16 kHz audio (512-sample windows).
    let (rate, samples) = prompt();
    let at16 = Resampler::convert_all(rate, SampleRate::HZ_16000, &samples).unwrap();
    let mut vad = silero.detector(SampleRate::HZ_16000);
    let w = vad.window_samples();
    let mut base = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    for i in 0..20_000 {
        let start = (i * w) % (at16.len() - w);
        let t = Instant::now();
        vad.probability(&at16[start..start + w]).unwrap();
        // Per 20 ms of audio: a window is 32 ms.
        base.record((t.elapsed().as_nanos() as u64 * 20 / 32).max(1))
            .unwrap();
    }
    println!("Smart Turn v3.2 per check, one inference thread (1 intra-op thread):\n");
    let base_p50 = report("baseline: Silero per 20 ms (16 kHz)", &base);

    let mut long16 = Vec::new();
    while long16.len() < 16_000 * 9 {
        long16.extend_from_slice(&at16);
    }
    let cases: [(&str, SampleRate, Vec<i16>); 3] = [
        (
            "1.5 s turn @ 8 kHz",
            rate,
            samples[..12_000.min(samples.len())].to_vec(),
        ),
        ("3 s turn @ 16 kHz", SampleRate::HZ_16000, at16.clone()),
        (
            "9 s turn @ 16 kHz (8 s window)",
            SampleRate::HZ_16000,
            long16,
        ),
    ];
    for (label, rate, audio) in cases {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
        rt.block_on(async {
            // Warm-up: first runs allocate and page the model in.
            for _ in 0..3 {
                turn.complete(rate, audio.clone()).await.unwrap();
            }
            for _ in 0..RUNS {
                let t = Instant::now();
                turn.complete(rate, audio.clone()).await.unwrap();
                h.record(t.elapsed().as_nanos().max(1) as u64).unwrap();
            }
        });
        let p50 = report(label, &h);
        println!(
            "{:<40} = {:.0}x Silero's cost per 20 ms",
            "",
            p50 / base_p50
        );
    }
}
