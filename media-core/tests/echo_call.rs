//! Echo over a simulated clock: 30 s of call in milliseconds of test time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use media_core::{CallConfig, Echo, EndReason, Event, SampleRate};
use uuid::Uuid;

fn config(send_ahead: u8) -> CallConfig {
    CallConfig {
        send_ahead,
        ..CallConfig::default()
    }
}

#[test]
fn thirty_seconds_of_echo_is_sample_exact_and_paced() {
    let wall = Instant::now();
    let delay = Duration::from_millis(200);
    let mut sim = Sim::new(config(0), Box::new(Echo::new(delay)));
    let id = Uuid::new_v4();
    sim.write(at_ms(0), &uuid_msg(id));
    // 1,500 frames of 20 ms at 8 kHz, each arriving 0-9 ms after its slot.
    let mut input = Vec::new();
    for k in 0..1_500u64 {
        let frame = ramp(input.len(), 160);
        input.extend_from_slice(&frame);
        sim.write(at_ms(5 + 20 * k + (k * 7) % 10), &audio_msg(0x10, &frame));
    }
    sim.run_until(at_ms(31_000));
    sim.close(at_ms(31_000));

    let audio = sim.sent_audio();
    let got: Vec<i16> = audio.iter().flat_map(|(_, s)| s.clone()).collect();
    let silence = SampleRate::HZ_8000.samples_in(delay);
    assert_eq!(got.len(), silence + input.len());
    assert!(got[..silence].iter().all(|&s| s == 0));
    assert_eq!(&got[silence..], &input[..], "echo must be sample-exact");
    // Exactly one frame per 20 ms tick, every frame full.
    for pair in audio.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, Duration::from_millis(20));
        assert_eq!(pair[0].1.len(), 160);
    }
    assert_eq!(sim.events[0], Event::Started(media_core::CallId(id)));
    assert_eq!(
        sim.ended(),
        Some(&EndReason::PeerClosed { mid_message: false })
    );
    assert!(
        wall.elapsed() < Duration::from_millis(900),
        "30 s of call took {:?}",
        wall.elapsed()
    );
}

#[test]
fn send_ahead_starts_with_a_bounded_burst_then_paces() {
    for ahead in 0..=2u8 {
        let mut sim = Sim::new(
            config(ahead),
            Box::new(Echo::new(Duration::from_millis(100))),
        );
        sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
        for k in 0..50u64 {
            sim.write(at_ms(20 * k), &audio_msg(0x10, &ramp(0, 160)));
        }
        sim.run_until(at_ms(2_000));
        let times: Vec<_> = sim.sent_audio().into_iter().map(|(t, _)| t).collect();
        // The UUID's slot went to keep-alive silence; then audio may run
        // `ahead` frames early: never more than 1 + ahead frames at once.
        let burst = sim.frame_times().iter().filter(|&&t| t == at_ms(0)).count();
        assert_eq!(burst, 1 + usize::from(ahead), "send-ahead {ahead}");
        // Never more than `ahead` frames before real time (slot 0 was the
        // keep-alive's).
        for (i, t) in times.iter().enumerate() {
            let slot = at_ms(20 * (i as u64 + 1));
            assert!(*t + Duration::from_millis(20) * u32::from(ahead) >= slot);
        }
        assert_eq!(times.len(), 55);
    }
}

#[test]
fn variable_frame_sizes_are_reframed_to_20_ms() {
    // 240, 320, 480 bytes at 8 kHz and a short last frame; then slin16 640-byte frames.
    let mut sim = Sim::new(config(0), Box::new(Echo::new(Duration::ZERO)));
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    let mut input = Vec::new();
    let mut t = 0u64;
    for (i, bytes) in [480usize, 240, 320, 480, 480, 240, 320, 58]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let frame = ramp(input.len(), bytes / 2);
        input.extend_from_slice(&frame);
        sim.write(at_ms(t), &audio_msg(0x10, &frame));
        t += (bytes / 16) as u64; // bytes -> ms at 8 kHz
        let _ = i;
    }
    sim.run_until(at_ms(t + 200));
    let audio = sim.sent_audio();
    let got: Vec<i16> = audio.iter().flat_map(|(_, s)| s.clone()).collect();
    assert_eq!(got, input);
    // Every frame but a trailing remainder is a whole 20 ms frame.
    let short = audio.iter().filter(|(_, s)| s.len() != 160).count();
    assert!(short <= 3, "{short} short frames");
    // Input arrives in uneven pieces, so frames leave as the audio becomes
    // available, but never ahead of real time: by frame i, at most one frame
    // per 20 ms slot since the first.
    let first = audio[0].0;
    for (i, (t, _)) in audio.iter().enumerate() {
        let slots = (*t - first).as_micros() / 20_000 + 1;
        assert!(
            (i as u128) < slots,
            "frame {i} at {t:?} is ahead of real time"
        );
    }
}

#[test]
fn slin16_answers_in_slin16() {
    let mut sim = Sim::new(config(0), Box::new(Echo::new(Duration::ZERO)));
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    for k in 0..10u64 {
        sim.write(at_ms(20 * k), &audio_msg(0x12, &ramp(0, 320)));
    }
    sim.run_until(at_ms(400));
    assert!(sim.events.contains(&Event::Format(SampleRate::HZ_16000)));
    assert!(
        sim.sent
            .iter()
            .all(|(_, b)| b[0] == 0x12 && b.len() == 3 + 640)
    );
    assert_eq!(sim.sent.len(), 10);
}
