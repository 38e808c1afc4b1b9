//! VAD cost per window: Silero through ONNX Runtime (shared session pool,
//! per-call state) against the energy VAD as the in-run baseline.
//!
//! Prints hdrhistogram p50/p95/p99 per window at 8 kHz (256 samples) and
//! 16 kHz (512), the cost per 20 ms of audio, the calls one core could
//! carry on VAD alone, and the per-window cost with 1, 2 and 4 concurrent
//! callers sharing a 2-session pool (the cost must not grow with calls
//! until the cores are busy). Needs models/fetch.py.
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hark::speech::vad::SileroModel;
use hdrhistogram::Histogram;
use media_core::{EnergyVad, EnergyVadConfig, SampleRate, Vad};

fn speech(rate: SampleRate) -> Vec<i16> {
    let name = if rate.hz() == 8_000 {
        "book_table.8k.wav"
    } else {
        "book_table.16k.wav"
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/speech")
        .join(name);
    hark::wav::read(&path).unwrap().samples
}

fn measure(vad: &mut dyn Vad, audio: &[i16], n: usize) -> Histogram<u64> {
    let w = vad.window_samples();
    let windows: Vec<&[i16]> = audio.chunks_exact(w).collect();
    let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).unwrap();
    for i in 0..n {
        let win = windows[i % windows.len()];
        let t = Instant::now();
        black_box(vad.probability(win).unwrap());
        h.record(t.elapsed().as_nanos().max(1) as u64).unwrap();
    }
    h
}

fn report(label: &str, h: &Histogram<u64>, window: Duration) -> f64 {
    let per_20ms = h.value_at_quantile(0.5) as f64 * (20.0 / (window.as_secs_f64() * 1e3));
    println!(
        "{label:<38} p50 {:>7.1} us  p95 {:>7.1} us  p99 {:>7.1} us  | {:>6.1} us per 20 ms audio, {:>6.0} calls/core",
        h.value_at_quantile(0.50) as f64 / 1e3,
        h.value_at_quantile(0.95) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        per_20ms / 1e3,
        20e6 / per_20ms,
    );
    h.value_at_quantile(0.5) as f64
}

fn main() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let model = SileroModel::load(
        &models.join("onnxruntime/libonnxruntime.so.1.31.1"),
        &models.join("silero/silero_vad.onnx"),
        2,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!("VAD per window (hdrhistogram, 5000 windows each, one caller):");
    for rate in [SampleRate::HZ_8000, SampleRate::HZ_16000] {
        let audio = speech(rate);
        let mut energy = EnergyVad::new(rate, EnergyVadConfig::default());
        let mut silero = model.detector(rate);
        let window = rate.duration_of(silero.window_samples());
        measure(&mut silero, &audio, 500);
        let base = report(
            &format!("energy (baseline) @ {} Hz", rate.hz()),
            &measure(&mut energy, &audio, 5_000),
            window,
        );
        let s = report(
            &format!("silero @ {} Hz", rate.hz()),
            &measure(&mut silero, &audio, 5_000),
            window,
        );
        println!("  silero / energy at p50: {:.1}x", s / base);
    }

    println!(
        "\nsilero @ 8000 Hz, callers sharing a 2-session pool (one thread each, 2000 windows per caller):"
    );
    let audio = Arc::new(speech(SampleRate::HZ_8000));
    for callers in [1usize, 2, 4] {
        let handles: Vec<_> = (0..callers)
            .map(|_| {
                let model = Arc::clone(&model);
                let audio = Arc::clone(&audio);
                std::thread::spawn(move || {
                    let mut vad = model.detector(SampleRate::HZ_8000);
                    measure(&mut vad, &audio, 2_000)
                })
            })
            .collect();
        let mut all = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).unwrap();
        for h in handles {
            all.add(h.join().unwrap()).unwrap();
        }
        report(
            &format!("{callers} concurrent caller(s)"),
            &all,
            Duration::from_millis(32),
        );
    }
}
