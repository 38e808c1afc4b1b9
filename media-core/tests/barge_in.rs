//! The caller's voice during the agent's speech, on the simulated clock
//! (see `common/voice.rs`): the agent's audio is ducked within a frame of
//! the first voiced window; a click, a cough or a backchannel brings the
//! level back and the agent goes on; a real interruption stops it.
//!
//! The fake voice's samples are constant markers, so a frame's level is
//! its first sample: a twin call without the caller's overlap gives the
//! full level of the same frame.

mod common;

use std::time::Duration;

use common::at_ms;
use common::voice::{Model, Step, VoiceSim};
use media_core::{ChatLine, ConversationConfig, OverlapKind, Record, Speaker, Time};

fn config() -> ConversationConfig {
    ConversationConfig {
        greeting: None,
        silence_timeout: Duration::from_secs(30),
        duck_db: Some(12.0),
        ..ConversationConfig::default()
    }
}

/// A long reply to every caller line (12 words: 3.6 s of audio).
fn talkative() -> Model {
    Box::new(|history: &[ChatLine]| {
        if history.iter().any(|l| l.speaker == Speaker::Caller) {
            vec![
                Step::Text("Sure, we have tables on Friday and Saturday evening."),
                Step::Text("Which would you like?"),
            ]
        } else {
            vec![Step::Text("Hello.")]
        }
    })
}

/// A call where the caller asks at 1 s, then does `overlap` during the
/// reply; and its twin without the overlap.
fn calls(overlap: impl Fn(&mut VoiceSim)) -> (VoiceSim, VoiceSim) {
    let mut sim = VoiceSim::new(config(), talkative());
    let mut twin = VoiceSim::new(config(), talkative());
    for s in [&mut sim, &mut twin] {
        s.caller_says(1_000, 800, "Do you have a table?");
    }
    overlap(&mut sim);
    sim.run(10_000);
    twin.run(10_000);
    (sim, twin)
}

/// The frames sent at or after `from`, each with its level against the
/// twin's frame at the same time (1.0: full level).
fn levels(sim: &VoiceSim, twin: &VoiceSim, from: Time, to: Time) -> Vec<(Time, f32)> {
    sim.frames
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .filter_map(|(t, s)| {
            let full = twin.frames.iter().find(|(u, _)| u == t)?.1;
            (full != 0).then(|| (*t, f32::from(*s) / f32::from(full)))
        })
        .collect()
}

fn overlaps(sim: &VoiceSim) -> Vec<(Time, Time, OverlapKind)> {
    sim.records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Overlap {
                ducked_at,
                restored_at,
                kind,
            } => Some((ducked_at, restored_at, kind)),
            _ => None,
        })
        .collect()
}

const DUCKED: f32 = 0.251;

#[test]
fn a_click_ducks_the_agent_within_a_frame_and_the_level_comes_back() {
    // A 60 ms click at 3.5 s, during the reply: too short to be a turn.
    let (sim, twin) = calls(|s| s.caller_says(3_500, 60, ""));
    let lv = levels(&sim, &twin, at_ms(3_000), at_ms(5_000));
    let first_ducked = lv
        .iter()
        .find(|(_, l)| (l - DUCKED).abs() < 0.02)
        .map(|(t, _)| *t)
        .expect("the reply was ducked");
    // The click's first frame is at 3.52 s; send-ahead 1 lets one frame
    // already released leave at full level.
    assert!(first_ducked <= at_ms(3_560), "ducked at {first_ducked:?}");
    // Quiet for 300 ms: the level is back, the reply was never cut.
    let o = overlaps(&sim);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].2, OverlapKind::Noise);
    let restored = o[0].1;
    assert!(
        restored >= at_ms(3_860) && restored <= at_ms(3_960),
        "{restored:?}"
    );
    assert_eq!(
        o[0].0,
        first_ducked.min(o[0].0),
        "ducked no later than heard"
    );
    let during = levels(&sim, &twin, first_ducked, restored);
    assert!(
        during.iter().all(|(_, l)| (l - DUCKED).abs() < 0.02),
        "{during:?}"
    );
    let after: Vec<f32> = levels(
        &sim,
        &twin,
        restored + Duration::from_millis(40),
        at_ms(5_000),
    )
    .into_iter()
    .map(|(_, l)| l)
    .collect();
    assert!(
        !after.is_empty() && after.iter().all(|l| *l == 1.0),
        "{after:?}"
    );
    assert!(sim.cancelled().is_empty());
    assert_eq!(
        sim.agent_lines(),
        twin.agent_lines(),
        "the agent said it all"
    );
}

#[test]
fn a_cough_long_enough_to_be_a_turn_but_without_words_restores_the_level() {
    let (sim, twin) = calls(|s| s.caller_says(3_500, 200, ""));
    let o = overlaps(&sim);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].2, OverlapKind::Noise);
    assert!(sim.cancelled().is_empty());
    assert_eq!(sim.agent_lines(), twin.agent_lines());
}

#[test]
fn a_backchannel_during_playout_does_not_stop_the_agent() {
    let (sim, twin) = calls(|s| s.caller_says(3_500, 240, "uh-huh"));
    let o = overlaps(&sim);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].2, OverlapKind::Backchannel);
    assert!(sim.cancelled().is_empty());
    assert_eq!(sim.agent_lines(), twin.agent_lines());
    // Heard, in the transcript, but not a turn for the model.
    assert!(sim.said().iter().any(|s| s.text == "uh-huh"));
    assert_eq!(sim.asked.len(), twin.asked.len());
}

#[test]
fn a_real_interruption_is_ducked_at_once_and_then_stops_the_agent() {
    let (sim, twin) = calls(|s| s.caller_says(3_500, 1_200, "actually make it Sunday"));
    let (onset, ducked, at) = sim
        .records()
        .into_iter()
        .find_map(|r| match r {
            Record::BargeIn {
                onset,
                ducked_at,
                at,
            } => Some((onset, ducked_at, at)),
            _ => None,
        })
        .expect("a barge-in");
    let ducked = ducked.expect("ducked before it stopped");
    assert!(
        ducked.saturating_since(at_ms(3_500)) <= Duration::from_millis(40),
        "ducked at {ducked:?}"
    );
    assert!(ducked <= at);
    assert!(at.saturating_since(onset) >= Duration::from_millis(300));
    assert!(overlaps(&sim).is_empty(), "an interruption, not an overlap");
    // Between the duck and the stop the reply was heard at the ducked
    // level; after the stop nothing of it.
    let lv = levels(&sim, &twin, ducked + Duration::from_millis(40), at);
    assert!(
        !lv.is_empty() && lv.iter().all(|(_, l)| (l - DUCKED).abs() < 0.02),
        "{lv:?}"
    );
    let lines = sim.agent_lines();
    assert!(
        lines.iter().any(|(_, interrupted)| *interrupted),
        "{lines:?}"
    );
}

#[test]
fn with_ducking_off_the_agent_plays_at_full_level_until_it_stops() {
    let mut config = config();
    config.duck_db = None;
    let mut sim = VoiceSim::new(config.clone(), talkative());
    let mut twin = VoiceSim::new(config, talkative());
    for s in [&mut sim, &mut twin] {
        s.caller_says(1_000, 800, "Do you have a table?");
    }
    sim.caller_says(3_500, 60, "");
    sim.run(10_000);
    twin.run(10_000);
    let lv = levels(&sim, &twin, at_ms(3_000), at_ms(5_000));
    assert!(lv.iter().all(|(_, l)| *l == 1.0));
    assert!(overlaps(&sim).is_empty());
}
