//! The say agent: asks for speech at start, plays what the driver feeds
//! back at one frame per tick, then hangs up after the last frame.

mod common;

use std::time::Duration;

use common::*;
use media_core::{CallConfig, EndReason, Event, Say, UtteranceId};
use uuid::Uuid;

#[test]
fn speaks_at_start_then_hangs_up_after_the_last_frame() {
    let mut sim = Sim::new(
        CallConfig {
            send_ahead: 0,
            ..CallConfig::default()
        },
        Box::new(Say::new("Our offices are closed.", true)),
    );
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    assert!(sim.events.contains(&Event::Speak {
        id: UtteranceId(1),
        text: "Our offices are closed.".into()
    }));
    // The driver synthesizes 1 s of audio and feeds it back in two pieces.
    let now = sim.now;
    sim.session
        .handle_speech(now, UtteranceId(1), "Our offices", ramp(0, 4_000));
    sim.session
        .handle_speech(now, UtteranceId(1), "are closed.", ramp(4_000, 4_000));
    assert_eq!(sim.session.queued_audio(), Duration::from_secs(1));
    let now = sim.now;
    sim.session.handle_speech_done(now, UtteranceId(1));
    sim.run_until(at_ms(2_000));
    let audio = sim.sent_audio();
    assert_eq!(audio.len(), 50);
    assert_eq!(sim.sent_samples(), ramp(0, 8_000));
    for pair in audio.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, Duration::from_millis(20));
    }
    // Hangup (0x00) goes out right after the last frame, so the dialplan continues.
    assert_eq!(sim.sent.last().map(|(_, b)| b.clone()), Some(vec![0, 0, 0]));
    assert_eq!(sim.ended(), Some(&EndReason::AgentHangup));
}

#[test]
fn without_hangup_the_call_stays_up() {
    let mut sim = Sim::new(CallConfig::default(), Box::new(Say::new("Hello.", false)));
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    let now = sim.now;
    sim.session
        .handle_speech(now, UtteranceId(1), "Hi.", ramp(0, 1_600));
    sim.session.handle_speech_done(now, UtteranceId(1));
    sim.run_until(at_ms(5_000));
    assert!(!sim.session.is_closed());
    assert!(!sim.sent_hangup());
}

#[test]
fn a_short_last_frame_keeps_the_pace() {
    let mut sim = Sim::new(
        CallConfig {
            send_ahead: 1,
            ..CallConfig::default()
        },
        Box::new(Say::new("Hi.", true)),
    );
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    let now = sim.now;
    // 10 frames and 45 samples: the synthesized audio rarely ends on a frame.
    sim.session
        .handle_speech(now, UtteranceId(1), "Hi.", ramp(0, 1_645));
    sim.session.handle_speech_done(now, UtteranceId(1));
    sim.run_until(at_ms(1_000));
    let audio = sim.sent_audio();
    assert_eq!(audio.len(), 11);
    assert_eq!(audio.last().unwrap().1.len(), 45);
    let last_gap = audio[10].0 - audio[9].0;
    assert_eq!(
        last_gap,
        Duration::from_millis(20),
        "the short frame waits for nothing"
    );
    assert!(sim.sent_hangup());
}
