//! Silero VAD through the real ONNX Runtime, on the committed fixtures.
//! Needs `models/fetch.py` to have run (scripts/test does); fails loudly if not.
// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hark::speech::vad::SileroModel;
use media_core::{EndpointConfig, EndpointEvent, Endpointer, Frame, SampleRate, Time, Turn, Vad};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn model() -> Arc<SileroModel> {
    let m = models();
    SileroModel::load(
        &m.join("onnxruntime/libonnxruntime.so.1.31.1"),
        &m.join("silero/silero_vad.onnx"),
        2,
    )
    .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py first"))
}

fn wav(name: &str) -> (SampleRate, Vec<i16>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/speech")
        .join(name);
    let a = hark::wav::read(&path).expect("fixture WAV");
    (a.rate, a.samples)
}

fn turns_of(model: &Arc<SileroModel>, rate: SampleRate, samples: &[i16]) -> Vec<Turn> {
    let mut e = Endpointer::new(EndpointConfig::default(), Box::new(model.detector(rate)));
    let mut turns = Vec::new();
    let mut now = Time::ZERO;
    let mut drain = |e: &mut Endpointer| {
        while let Some(ev) = e.poll_event() {
            if let EndpointEvent::TurnEnded(t) = ev {
                turns.push(t);
            }
        }
    };
    for chunk in samples.chunks(rate.frame_samples()) {
        now = now + rate.duration_of(chunk.len());
        while let Some(d) = e.poll_timeout().filter(|d| *d <= now) {
            e.handle_timeout(d);
        }
        e.handle_audio(now, Frame::new(rate, chunk));
        drain(&mut e);
    }
    let end = now + Duration::from_secs(3);
    while let Some(d) = e.poll_timeout().filter(|d| *d <= end) {
        e.handle_timeout(d);
    }
    drain(&mut e);
    assert_eq!(e.vad_errors(), 0);
    turns
}

#[test]
fn speech_scores_high_and_silence_low_at_8_and_16_khz() {
    let model = model();
    for name in [
        "book_table.8k.wav",
        "book_table.16k.wav",
        "cancel.8k.wav",
        "weather.16k.wav",
    ] {
        let (rate, samples) = wav(name);
        let mut vad = model.detector(rate);
        assert_eq!(
            vad.window_samples(),
            if rate.hz() == 8_000 { 256 } else { 512 }
        );
        let probs: Vec<f32> = samples
            .chunks_exact(vad.window_samples())
            .map(|w| vad.probability(w).unwrap())
            .collect();
        let voiced = probs.iter().filter(|&&p| p > 0.5).count();
        assert!(
            voiced * 10 >= probs.len() * 6,
            "{name}: {voiced} of {} windows voiced",
            probs.len()
        );
        vad.reset();
        let silent = vec![0i16; vad.window_samples()];
        for _ in 0..30 {
            assert!(vad.probability(&silent).unwrap() < 0.1, "{name}: silence");
        }
    }
}

#[test]
fn turn_boundaries_match_the_known_gaps() {
    let model = model();
    let (rate, samples) = wav("turns.8k.wav");
    let truth: Vec<(i64, i64)> = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/speech/turns.tsv"),
    )
    .unwrap()
    .lines()
    .skip(1)
    .map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (f[0].parse().unwrap(), f[1].parse().unwrap())
    })
    .collect();
    let turns = turns_of(&model, rate, &samples);
    assert_eq!(turns.len(), truth.len(), "{turns:#?}");
    for (t, (start, end)) in turns.iter().zip(&truth) {
        let s = (t.speech_start.as_micros() / 1_000) as i64;
        let e = (t.speech_end.as_micros() / 1_000) as i64;
        // Silero needs a window or two to be sure; it also trails a little.
        assert!((s - start).abs() <= 100, "start {s} vs {start}");
        assert!((e - end).abs() <= 200, "end {e} vs {end}");
    }
}

#[test]
fn silence_noise_and_dtmf_are_not_turns() {
    let model = model();
    let rate = SampleRate::HZ_8000;
    let n = |s: f32| (8_000.0 * s) as usize;
    assert!(turns_of(&model, rate, &vec![0; n(5.0)]).is_empty());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<i16> = (0..n(5.0))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 1201) as i32 - 600) as i16
        })
        .collect();
    assert!(turns_of(&model, rate, &noise).is_empty(), "line noise");
    let tone = |lo: f32, hi: f32, len: usize| -> Vec<i16> {
        (0..len)
            .map(|i| {
                let t = i as f32 / 8_000.0;
                let w = 2.0 * std::f32::consts::PI * t;
                (6_000.0 * ((w * lo).sin() + (w * hi).sin())) as i16
            })
            .collect()
    };
    let mut dtmf = Vec::new();
    for (lo, hi) in [
        (697.0, 1209.0),
        (770.0, 1336.0),
        (852.0, 1477.0),
        (941.0, 1336.0),
    ] {
        dtmf.extend(tone(lo, hi, n(0.1)));
        dtmf.extend(vec![0; n(0.1)]);
    }
    dtmf.extend(tone(770.0, 1336.0, n(1.0)));
    assert!(turns_of(&model, rate, &dtmf).is_empty(), "DTMF");
}

#[test]
fn a_missing_library_or_model_is_a_clear_error() {
    let m = models();
    let e = SileroModel::load(
        &m.join("onnxruntime/libonnxruntime.so.1.31.1"),
        &m.join("nope.onnx"),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("nope.onnx") && e.contains("models/fetch.py"),
        "{e}"
    );
}
