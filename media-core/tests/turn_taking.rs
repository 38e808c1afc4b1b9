//! How a caller's turn ends, on the simulated clock (see `common/voice.rs`):
//! with [`SmartTurn`], a short pause is judged by the end-of-turn model
//! (scripted here: its answers in order) and the preview's words; with
//! silence only (the baseline), a fixed hangover decides.

mod common;

use std::time::Duration;

use common::at_ms;
use common::voice::{Model, Step, VoiceSim};
use media_core::{
    ChatLine, ConversationConfig, EndpointConfig, Event, SmartTurn, Speaker, Time, TurnEnd,
};

/// Natural turn-taking: a short pause (the preview) asks both signals, a
/// long one ends the turn whatever they say.
fn smart_endpoint() -> EndpointConfig {
    EndpointConfig {
        min_speech: Duration::from_millis(100),
        pre_roll: Duration::from_millis(100),
        preview: Some(Duration::from_millis(200)),
        hangover: Duration::from_millis(2_000),
        ..EndpointConfig::default()
    }
}

/// The baseline: silence only, as before.
fn silence_endpoint() -> EndpointConfig {
    EndpointConfig {
        hangover: Duration::from_millis(400),
        ..smart_endpoint()
    }
}

fn quiet() -> ConversationConfig {
    ConversationConfig {
        greeting: None,
        silence_timeout: Duration::from_secs(30),
        ..ConversationConfig::default()
    }
}

fn echo_model() -> Model {
    Box::new(|_: &[ChatLine]| vec![Step::Text("Certainly.")])
}

fn smart() -> VoiceSim {
    VoiceSim::with_turns(
        quiet(),
        echo_model(),
        smart_endpoint(),
        Some(SmartTurn::default()),
    )
}

/// What the model was asked to answer, in order: the caller's last line.
fn caller_lines(sim: &VoiceSim) -> Vec<String> {
    sim.asked
        .iter()
        .filter_map(|h| {
            h.iter()
                .rev()
                .find(|l| l.speaker == Speaker::Caller)
                .map(|l| l.text.clone())
        })
        .collect()
}

/// When the model was asked to answer a caller line.
fn answered_at(sim: &VoiceSim) -> Vec<Time> {
    sim.asked
        .iter()
        .zip(&sim.asked_at)
        .filter(|(h, _)| h.iter().any(|l| l.speaker == Speaker::Caller))
        .map(|(_, at)| *at)
        .collect()
}

fn turn_ends(sim: &VoiceSim) -> Vec<TurnEnd> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            Event::Transcribe { audio, .. } => Some(audio.reason),
            _ => None,
        })
        .collect()
}

/// "I'd like to ... book a table.": the model hears the first half as not
/// done (its first answer), the whole as done (its second).
fn paused_sentence(sim: &mut VoiceSim, pause_ms: u64) {
    sim.caller_says(1_000, 900, "I'd like to.");
    sim.caller_says(1_900 + pause_ms, 1_100, "I'd like to book a table.");
    sim.verdicts.extend([0.08, 0.93]);
}

#[test]
fn a_mid_sentence_pause_of_300_600_or_1000_ms_is_not_a_turn_end() {
    for pause in [300, 600, 1_000] {
        let mut sim = smart();
        paused_sentence(&mut sim, pause);
        sim.run(8_000);
        assert_eq!(
            caller_lines(&sim),
            vec!["I'd like to book a table.".to_string()],
            "pause {pause} ms: one turn, the whole sentence"
        );
        let judged: Vec<bool> = sim
            .events
            .iter()
            .filter_map(|e| match e {
                Event::PauseJudged(v) => Some(v.complete),
                _ => None,
            })
            .collect();
        assert_eq!(judged, vec![false, true], "pause {pause} ms");
    }
}

#[test]
fn the_silence_baseline_splits_the_same_sentence_at_600_ms() {
    let mut sim = VoiceSim::with_turns(quiet(), echo_model(), silence_endpoint(), None);
    paused_sentence(&mut sim, 600);
    sim.run(8_000);
    assert_eq!(caller_lines(&sim).len(), 2, "{:?}", caller_lines(&sim));
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, Event::CheckTurn { .. } | Event::PauseJudged(_))),
        "no model without SmartTurn"
    );
}

/// A finished sentence is answered after the short pause and the slower
/// of STT and the model, well before the silence baseline would.
#[test]
fn a_sentence_end_answers_after_the_short_pause() {
    let speech_end = at_ms(2_000);
    let mut sim = smart();
    sim.caller_says(1_000, 1_000, "Two people, please.");
    sim.verdicts.push_back(0.91);
    sim.run(6_000);
    assert_eq!(caller_lines(&sim), vec!["Two people, please.".to_string()]);
    assert_eq!(
        turn_ends(&sim),
        vec![TurnEnd::Silence],
        "the preview's reason"
    );
    let asked = answered_at(&sim)[0];
    // 200 ms pause + 150 ms STT (the model's 30 ms runs alongside), give
    // or take the VAD's 20 ms windows.
    assert!(
        asked <= speech_end + Duration::from_millis(420),
        "asked at {asked:?}"
    );

    let mut baseline = VoiceSim::with_turns(quiet(), echo_model(), silence_endpoint(), None);
    baseline.caller_says(1_000, 1_000, "Two people, please.");
    baseline.run(6_000);
    assert!(
        answered_at(&baseline)[0] > asked,
        "the baseline waits its hangover: {:?} vs {asked:?}",
        answered_at(&baseline)[0]
    );
}

/// The model alone does not end a turn whose words are open ("to"): the
/// longer limit does, and nothing of the caller's is lost.
#[test]
fn open_words_hold_the_turn_until_the_long_pause() {
    let mut sim = smart();
    sim.caller_says(1_000, 900, "I'd like to.");
    sim.verdicts.push_back(0.97);
    sim.run(6_000);
    assert_eq!(caller_lines(&sim), vec!["I'd like to.".to_string()]);
    let asked = answered_at(&sim)[0];
    assert!(
        asked >= at_ms(1_900) + Duration::from_millis(2_000),
        "the turn waited for the long pause: {asked:?}"
    );
}

/// The caller speaks again before the judgement comes: it is stale, the
/// turn goes on, and the later pause is judged on its own.
#[test]
fn a_judgement_that_comes_after_the_caller_went_on_is_dropped() {
    let mut sim = smart();
    sim.check_delay = Duration::from_millis(400);
    sim.caller_says(1_000, 900, "I'd like one.");
    sim.caller_says(2_300, 900, "I'd like one table.");
    // Both say "done" for the first pause, but the caller spoke at 2.3 s,
    // before the model's answer at 1.9 + 0.2 + 0.4 = 2.5 s.
    sim.verdicts.extend([0.95, 0.95]);
    sim.run(8_000);
    assert_eq!(caller_lines(&sim), vec!["I'd like one table.".to_string()]);
}

/// The judgement waits for nothing the caller said: a complete verdict
/// on a pause ends the turn with its preview's text, sent once to STT.
#[test]
fn a_judged_turn_is_transcribed_once() {
    let mut sim = smart();
    sim.caller_says(1_000, 1_000, "Two people, please.");
    sim.verdicts.push_back(0.9);
    sim.run(6_000);
    let transcribed = sim
        .events
        .iter()
        .filter(|e| matches!(e, Event::Transcribe { .. }))
        .count();
    assert_eq!(transcribed, 1, "the preview is the turn");
}

/// Silence only, with STT quicker than the pause: the preview's text is in
/// before the hangover ends the turn, and is answered when it does.
#[test]
fn a_preview_text_in_before_the_turn_ends_is_answered_when_it_ends() {
    let mut sim = VoiceSim::with_turns(quiet(), echo_model(), silence_endpoint(), None);
    sim.stt_delay = Duration::from_millis(100);
    sim.caller_says(1_000, 1_000, "Two people, please.");
    sim.run(6_000);
    assert_eq!(caller_lines(&sim), vec!["Two people, please.".to_string()]);
    let asked = answered_at(&sim)[0];
    assert!(
        asked <= at_ms(2_000) + Duration::from_millis(440),
        "answered at the hangover's end: {asked:?}"
    );
}

/// A pause judged the end, then the caller goes on: the reply that had
/// started is withdrawn before any of it is heard, and the model gets the
/// two parts as one caller line.
#[test]
fn a_reply_started_on_a_pause_taken_as_the_end_is_withdrawn_unheard_when_the_caller_goes_on() {
    let mut sim = smart();
    // The reply's first audio would come 300 ms after the turn's text.
    sim.token_delay = Duration::from_millis(200);
    sim.tts_delay = Duration::from_millis(100);
    sim.caller_says(1_000, 900, "I'd like a table.");
    // The turn ends at about 2.25 s; the caller goes on at 2.3 s.
    sim.caller_says(2_300, 900, "for four on Friday.");
    sim.verdicts.extend([0.9, 0.9]);
    sim.run(8_000);
    let asked = caller_lines(&sim);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1], "I'd like a table. for four on Friday.");
    let first_reply = sim.cancelled();
    assert_eq!(first_reply.len(), 1, "the first reply was withdrawn");
    // Nothing of it reached the caller: every agent frame is the second
    // reply's (markers name the utterance).
    let withdrawn = i32::from(first_reply[0].0 as i16);
    assert!(
        sim.frames
            .iter()
            .all(|(_, s)| i32::from(*s) / 100 != withdrawn),
        "{:?}",
        sim.frames.first()
    );
    assert!(!sim.frames.is_empty(), "the merged turn was answered");
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, media_core::Record::BargeIn { .. })),
        "nothing was heard, so nothing was barged in on"
    );
}
