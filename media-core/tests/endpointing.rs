//! Endpointing with the energy VAD on committed speech fixtures: turn
//! boundaries against known silence gaps, and no turn from silence, line
//! noise or DTMF.

mod common;

use std::time::Duration;

use common::wav;
use media_core::{
    EndpointConfig, EndpointEvent, Endpointer, EnergyVad, EnergyVadConfig, Frame, SampleRate, Time,
    Turn,
};

/// Feeds `samples` in 20 ms frames on a simulated clock starting at 0, then
/// lets 3 s pass with no frames. Returns the turns.
fn turns_of(rate: SampleRate, samples: &[i16]) -> Vec<Turn> {
    let mut e = Endpointer::new(
        EndpointConfig::default(),
        Box::new(EnergyVad::new(rate, EnergyVadConfig::default())),
    );
    let frame = rate.frame_samples();
    let mut turns = Vec::new();
    let mut now = Time::ZERO;
    let collect = |e: &mut Endpointer, turns: &mut Vec<Turn>| {
        while let Some(ev) = e.poll_event() {
            if let EndpointEvent::TurnEnded(t) = ev {
                turns.push(t);
            }
        }
    };
    for chunk in samples.chunks(frame) {
        now = now + rate.duration_of(chunk.len());
        while let Some(d) = e.poll_timeout().filter(|d| *d <= now) {
            e.handle_timeout(d);
        }
        e.handle_audio(now, Frame::new(rate, chunk));
        collect(&mut e, &mut turns);
    }
    let end = now + Duration::from_secs(3);
    while let Some(d) = e.poll_timeout().filter(|d| *d <= end) {
        e.handle_timeout(d);
    }
    collect(&mut e, &mut turns);
    turns
}

fn ms(t: Time) -> i64 {
    (t.as_micros() / 1_000) as i64
}

#[test]
fn turn_boundaries_match_the_known_gaps() {
    let (rate, samples) = wav(include_bytes!("../../testdata/speech/turns.8k.wav"));
    let truth: Vec<(i64, i64)> = include_str!("../../testdata/speech/turns.tsv")
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split('\t');
            let a = f.next().unwrap().parse().unwrap();
            let b = f.next().unwrap().parse().unwrap();
            (a, b)
        })
        .collect();
    let turns = turns_of(rate, &samples);
    assert_eq!(turns.len(), truth.len(), "{turns:#?}");
    // Tolerance: one 32 ms VAD window plus one 20 ms frame of arrival
    // granularity at the start; the end may also fall one window early on a
    // trailing consonant below the energy threshold.
    for (turn, (start, end)) in turns.iter().zip(&truth) {
        let (s, e) = (ms(turn.speech_start), ms(turn.speech_end));
        assert!((s - start).abs() <= 60, "start {s} vs {start}");
        assert!((e - end).abs() <= 100, "end {e} vs {end}");
        // The turn's audio covers the speech plus pre-roll.
        assert!(turn.duration() >= Duration::from_millis((end - start) as u64));
    }
}

#[test]
fn every_sentence_fixture_is_one_turn() {
    for (name, bytes) in [
        (
            "book_table.8k",
            &include_bytes!("../../testdata/speech/book_table.8k.wav")[..],
        ),
        (
            "weather.16k",
            &include_bytes!("../../testdata/speech/weather.16k.wav")[..],
        ),
        (
            "cancel.8k",
            &include_bytes!("../../testdata/speech/cancel.8k.wav")[..],
        ),
        (
            "callback.16k",
            &include_bytes!("../../testdata/speech/callback.16k.wav")[..],
        ),
    ] {
        let (rate, speech) = wav(bytes);
        let mut samples = vec![0i16; rate.samples_in(Duration::from_millis(500))];
        samples.extend_from_slice(&speech);
        assert_eq!(turns_of(rate, &samples).len(), 1, "{name}");
    }
}

#[test]
fn silence_noise_and_dtmf_are_not_turns() {
    let rate = SampleRate::HZ_8000;
    let secs = |s: f32| (rate.hz() as f32 * s) as usize;
    // 10 s of digital silence.
    assert!(turns_of(rate, &vec![0; secs(10.0)]).is_empty());
    // 10 s of line noise at about -40 dBFS.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<i16> = (0..secs(10.0))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 1201) as i32 - 600) as i16
        })
        .collect();
    assert!(turns_of(rate, &noise).is_empty());
    // DTMF: "1234567890*#" at 100 ms on / 100 ms off, then a held "5" (1 s).
    let pairs = [
        (697.0, 1209.0),
        (697.0, 1336.0),
        (697.0, 1477.0),
        (770.0, 1209.0),
        (770.0, 1336.0),
        (770.0, 1477.0),
        (852.0, 1209.0),
        (852.0, 1336.0),
        (852.0, 1477.0),
        (941.0, 1336.0),
        (941.0, 1209.0),
        (941.0, 1477.0),
    ];
    let tone = |(lo, hi): (f32, f32), n: usize| -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / rate.hz() as f32;
                (6_000.0
                    * ((2.0 * std::f32::consts::PI * lo * t).sin()
                        + (2.0 * std::f32::consts::PI * hi * t).sin())) as i16
            })
            .collect()
    };
    let mut dtmf = Vec::new();
    for p in pairs {
        dtmf.extend(tone(p, secs(0.1)));
        dtmf.extend(vec![0; secs(0.1)]);
    }
    dtmf.extend(tone((770.0, 1336.0), secs(1.0)));
    dtmf.extend(vec![0; secs(1.0)]);
    assert!(turns_of(rate, &dtmf).is_empty());
}
