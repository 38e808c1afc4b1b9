//! The line never goes quiet: `AudioSocket()` hangs up after 2000 ms in
//! which neither side sent a frame (`apps/app_audiosocket.c`,
//! `MAX_WAIT_TIMEOUT_MSEC`), and a silent Local channel or DTX phone sends
//! none, so from the UUID to the hangup the call sends one frame per 20 ms:
//! the agent's audio when it has some, silence otherwise.

mod common;

use std::time::Duration;

use common::*;
use media_core::{CallConfig, Echo, Say, Transcribe, UtteranceId};
use uuid::Uuid;

/// Every frame (agent's or keep-alive) is 20 ms after the one before.
fn assert_paced(times: &[media_core::Time], from: media_core::Time, until: media_core::Time) {
    assert_eq!(
        times.first(),
        Some(&from),
        "the first frame goes with the UUID"
    );
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            Duration::from_millis(20),
            "at {:?}",
            pair[0]
        );
    }
    let last = *times.last().expect("frames");
    assert!(until - last < Duration::from_millis(20));
}

#[test]
fn a_silent_caller_gets_a_frame_every_20_ms_for_30_s_on_every_agent() {
    let agents: Vec<(&str, Box<dyn media_core::Agent>)> = vec![
        ("echo", Box::new(Echo::new(Duration::from_millis(200)))),
        ("say, staying up", Box::new(Say::new("Hello.", false))),
        ("transcribe", Box::new(Transcribe)),
    ];
    for (name, agent) in agents {
        let mut sim = Sim::new(CallConfig::default(), agent);
        sim.write(at_ms(100), &uuid_msg(Uuid::new_v4()));
        // The caller sends nothing at all for 30 s.
        sim.run_until(at_ms(30_100));
        assert!(sim.ended().is_none(), "{name}: the call ended");
        let times = sim.frame_times();
        assert_eq!(times.len(), 1_501, "{name}");
        assert_paced(&times, at_ms(100), at_ms(30_100));
    }
}

#[test]
fn speech_and_silence_share_one_grid() {
    let mut sim = Sim::new(
        CallConfig {
            send_ahead: 1,
            ..CallConfig::default()
        },
        Box::new(Say::new("Hello.", false)),
    );
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    // The greeting's audio arrives 300 ms in, 0.5 s of it.
    sim.run_until(at_ms(305));
    let now = sim.now;
    sim.session
        .handle_speech(now, UtteranceId(1), "Hello.", ramp(1, 4_000));
    sim.session.handle_speech_done(now, UtteranceId(1));
    sim.run_until(at_ms(3_000));
    // All of it is played, unchanged, and none of it waited for a slot:
    // the first frame left at once (one frame of send-ahead).
    assert_eq!(sim.sent_samples(), ramp(1, 4_000));
    assert_eq!(sim.sent_audio()[0].0, at_ms(305));
    // Before, between and after: silence, one frame per slot, and never
    // two frames closer than the send-ahead allows.
    let times = sim.frame_times();
    assert!(sim.keepalive.len() > 100);
    for pair in times.windows(3) {
        assert!(pair[2] - pair[0] >= Duration::from_millis(20), "{pair:?}");
    }
    let stats = sim.session.stats().playout;
    assert_eq!(stats.underruns, 0, "the end of a reply is not an underrun");
}

#[test]
fn a_producer_a_little_late_is_not_chopped_by_silence() {
    let mut sim = Sim::new(
        CallConfig {
            send_ahead: 0,
            ..CallConfig::default()
        },
        Box::new(Say::new("Hello.", false)),
    );
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    // TTS delivers 20 ms pieces, each 5 ms after its slot began.
    let mut fed = Vec::new();
    for k in 0..20u64 {
        sim.run_until(at_ms(100 + 20 * k + 5));
        let piece = ramp(fed.len() + 1, 160);
        fed.extend_from_slice(&piece);
        let now = sim.now;
        sim.session
            .handle_speech(now, UtteranceId(1), "Hello.", piece);
    }
    let now = sim.now;
    sim.session.handle_speech_done(now, UtteranceId(1));
    sim.run_until(at_ms(1_000));
    assert_eq!(sim.sent_samples(), fed);
    // No silence was slipped in between the pieces.
    let first = sim.sent_audio()[0].0;
    let last = sim.sent_audio().last().expect("audio").0;
    assert!(
        !sim.keepalive.iter().any(|t| *t > first && *t < last),
        "silence inside the reply"
    );
    assert_eq!(sim.session.stats().playout.underruns, 0);
}
