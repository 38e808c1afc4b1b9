//! The peer goes away: mid-frame, mid-playout, with or without hangup.

mod common;

use std::time::Duration;

use common::*;
use media_core::{CallConfig, Echo, EndReason, Event};
use uuid::Uuid;

fn echo_sim() -> Sim {
    Sim::new(
        CallConfig {
            send_ahead: 0,
            ..CallConfig::default()
        },
        Box::new(Echo::new(Duration::from_millis(500))),
    )
}

#[test]
fn closed_mid_frame_ends_the_call_and_stops_transmitting() {
    let mut sim = echo_sim();
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    for k in 0..10u64 {
        sim.write(at_ms(20 * k), &audio_msg(0x10, &ramp(0, 160)));
    }
    // Half a frame, then the socket closes.
    let half = audio_msg(0x10, &ramp(0, 160));
    sim.write(at_ms(200), &half[..100]);
    sim.close(at_ms(210));
    let sent_at_close = sim.sent.len();
    sim.run_until(at_ms(5_000));
    assert_eq!(
        sim.sent.len(),
        sent_at_close,
        "nothing sent after the peer left"
    );
    assert!(sim.session.is_closed());
    assert_eq!(
        sim.ended(),
        Some(&EndReason::PeerClosed { mid_message: true })
    );
    assert_eq!(sim.session.poll_timeout(), None);
    let ended = sim
        .events
        .iter()
        .filter(|e| matches!(e, Event::Ended { .. }))
        .count();
    assert_eq!(ended, 1);
}

#[test]
fn peer_hangup_message_ends_without_a_reply() {
    let mut sim = echo_sim();
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    sim.write(at_ms(20), &audio_msg(0x10, &ramp(0, 160)));
    sim.write(at_ms(40), &[0x00, 0x00, 0x00]);
    sim.run_until(at_ms(1_000));
    assert_eq!(sim.ended(), Some(&EndReason::PeerHangup));
    assert!(!sim.sent_hangup());
}

#[test]
fn garbage_ends_the_call_with_a_protocol_error() {
    let mut sim = echo_sim();
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    sim.write(at_ms(20), &[0x42, 0x00, 0x00]);
    assert!(matches!(sim.ended(), Some(EndReason::Protocol(_))));
    assert!(sim.session.is_closed());
}

#[test]
fn no_uuid_times_out_on_the_clock_not_on_frames() {
    let mut sim = echo_sim();
    // Nothing at all arrives: the timer alone must end the call.
    sim.run_until(at_ms(4_999));
    assert!(!sim.session.is_closed());
    sim.run_until(at_ms(5_000));
    assert_eq!(sim.ended(), Some(&EndReason::UuidTimeout));
}

#[test]
fn media_before_uuid_is_refused() {
    let mut sim = echo_sim();
    sim.write(at_ms(0), &audio_msg(0x10, &ramp(0, 160)));
    assert_eq!(sim.ended(), Some(&EndReason::MissingUuid));
}

#[test]
fn long_silence_without_frames_keeps_the_call_and_its_timers() {
    let mut sim = Sim::new(
        CallConfig {
            send_ahead: 0,
            max_duration: Some(Duration::from_secs(60)),
            ..CallConfig::default()
        },
        Box::new(Echo::new(Duration::from_millis(500))),
    );
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    sim.write(at_ms(0), &audio_msg(0x10, &ramp(0, 160)));
    // Playout finishes the echo although no frame arrives after the first.
    sim.run_until(at_ms(45_000));
    assert_eq!(sim.sent_samples().len(), 4_000 + 160);
    assert!(!sim.session.is_closed());
    // Audio resumes after 45 s of nothing: echo resumes, delay first.
    sim.write(at_ms(45_000), &audio_msg(0x10, &ramp(160, 160)));
    sim.run_until(at_ms(46_000));
    assert_eq!(sim.sent_samples().len(), 2 * (4_000 + 160));
    // The maximum length ends the call with a hangup, on the clock.
    sim.run_until(at_ms(60_000));
    assert_eq!(sim.ended(), Some(&EndReason::MaxDuration));
    assert!(sim.sent_hangup());
}

#[test]
fn dtmf_is_reported_and_bad_bytes_ignored() {
    let mut sim = echo_sim();
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    sim.write(at_ms(10), &dtmf_msg(b'7'));
    sim.write(at_ms(20), &dtmf_msg(b'#'));
    sim.write(at_ms(30), &dtmf_msg(b'x'));
    let digits: Vec<char> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Dtmf(d) => Some(d.as_char()),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ['7', '#']);
    assert!(sim.events.contains(&Event::BadDtmf(b'x')));
    assert!(!sim.session.is_closed());
}

#[test]
fn shutdown_sends_hangup_then_closes() {
    let mut sim = echo_sim();
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    sim.write(at_ms(0), &audio_msg(0x10, &ramp(0, 160)));
    sim.run_until(at_ms(100));
    let now = sim.now;
    sim.session.close(now, EndReason::Shutdown);
    sim.run_until(at_ms(200));
    assert!(sim.sent_hangup());
    assert_eq!(sim.sent.last().map(|(_, b)| b.clone()), Some(vec![0, 0, 0]));
    assert_eq!(sim.ended(), Some(&EndReason::Shutdown));
}

#[test]
fn abort_ends_at_once_without_transmitting() {
    let mut sim = echo_sim();
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    sim.write(at_ms(0), &audio_msg(0x10, &ramp(0, 1600)));
    let sent = sim.sent.len();
    let now = sim.now;
    sim.session
        .abort(now, EndReason::Internal("peer stopped reading".into()));
    sim.run_until(at_ms(2_000));
    assert_eq!(sim.sent.len(), sent);
    assert!(!sim.sent_hangup());
    assert_eq!(
        sim.ended(),
        Some(&EndReason::Internal("peer stopped reading".into()))
    );
}

#[test]
fn a_turn_in_progress_is_kept_when_the_peer_hangs_up() {
    use media_core::{
        EndpointConfig, Endpointer, EnergyVad, EnergyVadConfig, SampleRate, Transcribe,
    };
    let vad = EnergyVad::new(SampleRate::HZ_8000, EnergyVadConfig::default());
    let session = media_core::Session::new(
        media_core::Time::ZERO,
        CallConfig::default(),
        Box::new(Transcribe),
    )
    .with_endpointer(Endpointer::new(EndpointConfig::default(), Box::new(vad)));
    let mut sim = echo_sim();
    sim.session = session;
    sim.write(at_ms(0), &uuid_msg(Uuid::new_v4()));
    // 200 ms of silence then 1 s of loud noise-like "speech", then hang up mid-turn.
    for k in 0..10u64 {
        sim.write(at_ms(20 * k), &audio_msg(0x10, &[0; 160]));
    }
    let mut x: u64 = 99;
    for k in 10..60u64 {
        let frame: Vec<i16> = (0..160)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 16_001) as i32 - 8_000) as i16
            })
            .collect();
        sim.write(at_ms(20 * k), &audio_msg(0x10, &frame));
    }
    let started = sim
        .events
        .iter()
        .any(|e| matches!(e, Event::SpeechStarted(_)));
    assert!(started, "{:?}", sim.events);
    sim.close(at_ms(1_210));
    let turn = sim.events.iter().find_map(|e| match e {
        Event::Transcribe { audio, .. } => Some(audio.clone()),
        _ => None,
    });
    let turn = turn.expect("the unfinished turn is not lost");
    assert_eq!(turn.reason, media_core::TurnEnd::Finished);
    // The turn comes before the end of the call.
    let turn_at = sim
        .events
        .iter()
        .position(|e| matches!(e, Event::Transcribe { .. }))
        .unwrap();
    let end_at = sim
        .events
        .iter()
        .position(|e| matches!(e, Event::Ended { .. }))
        .unwrap();
    assert!(turn_at < end_at);
}
