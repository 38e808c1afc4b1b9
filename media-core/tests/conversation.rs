//! Scenario tests of the voice agent on a simulated clock, with scripted
//! fake STT, LLM and TTS (see `common/voice.rs`).

mod common;

use std::time::Duration;

use common::at_ms;
use common::voice::{Model, Step, VoiceSim, WORD};
use media_core::{
    ChatLine, ConversationConfig, Digit, EndReason, Event, Handoff, Outcome, Record, Speaker,
};

fn config() -> ConversationConfig {
    ConversationConfig {
        greeting: Some("Hello, how can I help?".into()),
        handoff: Some(Handoff {
            target: "sales".into(),
            phrase: "Putting you through now.".into(),
        }),
        silence_timeout: Duration::from_secs(5),
        ..ConversationConfig::default()
    }
}

/// A model that answers every caller line with a fixed two-sentence reply,
/// and ends the call when the caller says goodbye.
fn polite() -> Model {
    Box::new(|history: &[ChatLine]| {
        let last = history
            .iter()
            .rev()
            .find(|l| l.speaker == Speaker::Caller)
            .map(|l| l.text.clone())
            .unwrap_or_default();
        if last.contains("bye") {
            vec![Step::Text("Goodbye then."), Step::Tool("end_call", "{}")]
        } else {
            vec![
                Step::Text("Sure, I can help with that."),
                Step::Text("What day would you like to come in?"),
            ]
        }
    })
}

fn outcome(sim: &VoiceSim) -> Option<Outcome> {
    sim.records().into_iter().find_map(|r| match r {
        Record::Outcome(o) => Some(o),
        _ => None,
    })
}

#[test]
fn normal_turns_run_the_whole_loop() {
    let mut sim = VoiceSim::new(config(), polite());
    // Greeting: 5 words, 1.5 s of audio from ~100 ms.
    sim.caller_says(2_000, 1_000, "I'd like to book a table");
    sim.caller_says(9_000, 600, "ok bye");
    sim.run(20_000);

    let lines = sim.agent_lines();
    assert_eq!(
        lines,
        vec![
            ("Hello, how can I help?".to_string(), false),
            ("Sure, I can help with that.".to_string(), false),
            ("What day would you like to come in?".to_string(), false),
            ("Goodbye then.".to_string(), false),
        ]
    );
    // The model saw the greeting, the caller's turn and then its own reply.
    assert_eq!(sim.asked.len(), 2);
    assert_eq!(sim.asked[0].len(), 2);
    assert_eq!(sim.asked[0][1].text, "I'd like to book a table");
    assert_eq!(sim.asked[1].len(), 4);
    assert_eq!(sim.asked[1][3].text, "ok bye");
    // end_call after a reply that said goodbye: no extra phrase, hang up.
    assert!(sim.hangup_at.is_some());
    assert!(sim.session.is_closed());
    assert_eq!(outcome(&sim), Some(Outcome::Completed));
    assert!(
        sim.spoken_phrases().len() == 1,
        "{:?}",
        sim.spoken_phrases()
    );

    // Every reply to a turn has a latency breakdown that adds up.
    let latencies: Vec<_> = sim
        .records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Latency(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(latencies.len(), 2);
    for l in &latencies {
        assert_eq!(l.decided_at - l.speech_end, Duration::from_millis(400));
        assert_eq!(l.transcribed_at - l.decided_at, sim.stt_delay);
        assert_eq!(l.first_token_at - l.transcribed_at, sim.token_delay);
        assert_eq!(l.first_audio_at - l.first_token_at, sim.tts_delay);
        assert!(l.first_frame_at - l.first_audio_at <= Duration::from_millis(20));
        assert!(l.voice_to_voice() < Duration::from_millis(1_200));
    }
    // Caller segments carry their times.
    let caller: Vec<_> = sim
        .said()
        .into_iter()
        .filter(|s| s.speaker == Speaker::Caller)
        .collect();
    assert_eq!(caller.len(), 2);
    assert!(caller[0].start >= at_ms(1_900) && caller[0].end <= at_ms(3_100));
}

/// The caller talks over the reply `offset_ms` after its first frame.
fn barge_in_at(offset_ms: u64) -> VoiceSim {
    let mut sim = VoiceSim::new(config(), polite());
    sim.caller_says(2_000, 800, "I need a table");
    // Find when the reply starts: run a twin to learn it.
    let mut twin = VoiceSim::new(config(), polite());
    twin.caller_says(2_000, 800, "I need a table");
    twin.run(6_000);
    let reply_start = twin
        .frames
        .iter()
        .find(|(t, _)| *t > at_ms(2_800))
        .map(|(t, _)| *t)
        .expect("the reply played");
    let onset = reply_start.as_micros() / 1_000 + offset_ms;
    sim.caller_says(onset, 1_200, "actually make it Friday");
    sim.run(onset + 6_000);
    sim
}

#[test]
fn barge_in_stops_playout_within_a_frame_at_any_point() {
    for offset in [0, 700, 2_000, 2_700] {
        let sim = barge_in_at(offset);
        let barge = sim
            .records()
            .into_iter()
            .find_map(|r| match r {
                Record::BargeIn { onset, at, .. } => Some((onset, at)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("barge-in at +{offset} ms was not detected"));
        // Detected once 300 ms of speech were heard (one 20 ms frame of slack).
        let reaction = barge.1 - barge.0;
        assert!(
            reaction >= Duration::from_millis(300) && reaction <= Duration::from_millis(340),
            "+{offset}: reaction {reaction:?}"
        );
        // Nothing of the cut reply leaves after the flush (the frame that
        // may already be in flight is the send-ahead of one).

        let reply_frames_after = sim
            .frames
            .iter()
            .filter(|(t, s)| *t > barge.1 && *s / 100 == 2)
            .count();
        assert_eq!(reply_frames_after, 0, "+{offset}: reply kept playing");
        // The history keeps only what was heard, marked interrupted.
        let lines = sim.agent_lines();
        let cut = lines
            .iter()
            .find(|(_, interrupted)| *interrupted)
            .expect("an interrupted line");
        assert!(
            !cut.0.contains("What day") || offset >= 2_000,
            "+{offset}: {lines:?}"
        );
        assert!(!sim.cancelled().is_empty());
        // The caller's new turn is answered: the agent is not stuck.
        let last = sim.asked.last().expect("asked again");
        assert_eq!(
            last.last().map(|l| l.text.as_str()),
            Some("actually make it Friday")
        );
        assert!(last.iter().any(|l| l.interrupted));
        assert!(
            sim.agent_lines().len() > lines.iter().position(|l| l.1).unwrap_or(0) + 1,
            "+{offset}: no reply after the interruption"
        );
    }
}

#[test]
fn barge_in_while_the_model_is_still_thinking_cancels_the_request() {
    let mut sim = VoiceSim::new(config(), polite());
    sim.token_delay = Duration::from_millis(1_500);
    sim.caller_says(2_000, 600, "hello");
    // The turn ends at ~3.0 s, the transcript lands at ~3.15 s; the caller
    // goes on talking before the reply's first token (~4.65 s).
    sim.caller_says(3_400, 900, "I want to book");
    sim.run(12_000);
    assert_eq!(sim.cancelled().len(), 1);
    let last = sim.asked.last().expect("asked");
    // One caller message with both turns.
    assert_eq!(
        last.last().map(|l| l.text.as_str()),
        Some("hello I want to book")
    );
    // No barge-in record: nothing was playing.
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::BargeIn { .. }))
    );
}

#[test]
fn the_greeting_can_be_interrupted_or_not() {
    // Interruptible (the default): the greeting stops.
    let mut sim = VoiceSim::new(config(), polite());
    sim.caller_says(500, 1_000, "hi I need help");
    sim.run(8_000);
    assert!(sim.agent_lines()[0].1, "{:?}", sim.agent_lines());

    // Not interruptible: the whole greeting plays, then the caller's words
    // are answered.
    let mut sim = VoiceSim::new(
        ConversationConfig {
            greeting_interruptible: false,
            ..config()
        },
        polite(),
    );
    sim.caller_says(500, 1_000, "hi I need help");
    sim.run(8_000);
    let lines = sim.agent_lines();
    assert_eq!(lines[0], ("Hello, how can I help?".to_string(), false));
    assert_eq!(lines[1].0, "Sure, I can help with that.");
    assert!(
        !sim.records()
            .iter()
            .any(|r| matches!(r, Record::BargeIn { .. }))
    );
}

#[test]
fn short_noise_and_backchannels_do_not_cut_the_agent_off() {
    let mut sim = VoiceSim::new(config(), polite());
    sim.caller_says(2_000, 800, "I need a table");
    // During the reply (from ~3.35 s): a 200 ms cough (a turn without
    // words), then an "uh-huh" of 240 ms.
    sim.caller_says(4_000, 200, "");
    sim.caller_says(5_200, 240, "uh-huh");
    sim.run(12_000);
    let lines = sim.agent_lines();
    assert_eq!(
        lines[1..3],
        [
            ("Sure, I can help with that.".to_string(), false),
            ("What day would you like to come in?".to_string(), false)
        ]
    );
    assert!(sim.cancelled().is_empty());
    // "uh-huh" is in the transcript but not sent to the model as a turn.
    assert_eq!(sim.asked.len(), 1);
    assert!(sim.said().iter().any(|s| s.text == "uh-huh"));
}

#[test]
fn silence_reprompts_then_hangs_up_politely() {
    let mut sim = VoiceSim::new(config(), polite());
    sim.run(60_000);
    let phrases = sim.spoken_phrases();
    assert_eq!(
        phrases,
        vec![
            "Hello, how can I help?".to_string(),
            "Are you still there?".into(),
            "Are you still there?".into(),
            "I can't hear you, so I'll end the call now. Goodbye.".into(),
        ]
    );
    assert_eq!(outcome(&sim), Some(Outcome::Abandoned));
    assert!(sim.hangup_at.is_some());
    // Re-prompts come 5 s after the agent fell quiet.
    let starts: Vec<_> = sim
        .said()
        .into_iter()
        .filter(|s| s.speaker == Speaker::Agent)
        .map(|s| s.start)
        .collect();
    let greeting_end = sim.said()[0].end;
    assert!(starts[1] - greeting_end >= Duration::from_secs(5));
    assert!(starts[1] - greeting_end <= Duration::from_millis(5_200));
}

#[test]
fn a_caller_answer_resets_the_silence_count() {
    let mut sim = VoiceSim::new(config(), polite());
    sim.caller_says(9_000, 500, "sorry I'm here");
    sim.run(40_000);
    let phrases = sim.spoken_phrases();
    // One re-prompt at ~6.6 s, then the answer, then two more before goodbye.
    assert_eq!(
        phrases
            .iter()
            .filter(|p| *p == "Are you still there?")
            .count(),
        3,
        "{phrases:?}"
    );
}

#[test]
fn dtmf_digits_reach_the_model_and_zero_transfers() {
    let mut sim = VoiceSim::new(config(), polite());
    sim.press(3_000, b'1');
    sim.press(3_200, b'2');
    sim.press(3_400, b'3');
    sim.press(3_600, b'#');
    sim.run(6_000);
    let asked = sim.asked.last().expect("the digits reached the model");
    assert_eq!(asked.last().map(|l| l.text.as_str()), Some("[keypad] 123"));
    // Digits without '#' go after the gap.
    sim.press(12_000, b'4');
    sim.press(12_500, b'2');
    sim.run(16_000);
    assert_eq!(
        sim.asked
            .last()
            .and_then(|h| h.last())
            .map(|l| l.text.as_str()),
        Some("[keypad] 42")
    );
    // 0 during a reply: cut, hand-off phrase, then AudioSocket hangup.
    sim.press(17_500, b'0');
    sim.run(30_000);
    assert_eq!(
        outcome(&sim),
        Some(Outcome::Transferred {
            target: "sales".into(),
            reason: "caller pressed 0".into()
        })
    );
    assert_eq!(
        sim.spoken_phrases().last().map(String::as_str),
        Some("Putting you through now.")
    );
    assert!(sim.hangup_at.is_some());
    assert_eq!(
        sim.events.iter().find_map(|e| match e {
            Event::Ended { reason, .. } => Some(reason.clone()),
            _ => None,
        }),
        Some(EndReason::AgentHangup)
    );
    assert!(Digit::from_ascii(b'0').is_some());
}

#[test]
fn the_transfer_tool_says_the_reply_then_the_handoff_phrase() {
    let model = Box::new(|_: &[ChatLine]| {
        vec![
            Step::Text("Let me get someone for you."),
            Step::Tool("transfer_to_human", r#"{"reason":"asked for a person"}"#),
        ]
    });
    let mut sim = VoiceSim::new(config(), model);
    sim.caller_says(2_000, 800, "can I talk to a person");
    // The caller talks over it: a decided hand-off is not undone.
    sim.caller_says(4_000, 1_000, "hello?");
    sim.run(20_000);
    let lines: Vec<String> = sim.agent_lines().into_iter().map(|l| l.0).collect();
    assert_eq!(
        lines,
        vec![
            "Hello, how can I help?",
            "Let me get someone for you.",
            "Putting you through now."
        ]
    );
    assert!(
        matches!(outcome(&sim), Some(Outcome::Transferred { target, .. }) if target == "sales")
    );
    let hangup = sim.hangup_at.expect("hung up");
    assert!(hangup >= sim.last_frame().expect("frames"));
}

#[test]
fn the_caller_hanging_up_mid_reply_keeps_what_was_heard() {
    let mut sim = VoiceSim::new(config(), polite());
    sim.caller_says(2_000, 800, "I need a table");
    // The reply starts at ~3.35 s; "Sure, I can help with that." is 6
    // words (1.8 s); hang up 900 ms into it.
    sim.caller_hangs_up(4_250);
    assert!(sim.session.is_closed());
    let lines = sim.agent_lines();
    let (text, interrupted) = lines.last().expect("a line").clone();
    assert!(interrupted);
    assert!(
        text.starts_with("Sure,") && text.split_whitespace().count() < 6,
        "{text}"
    );
    assert!(matches!(
        sim.events.last(),
        Some(Event::Ended {
            reason: EndReason::PeerClosed { .. },
            ..
        })
    ));
}

#[test]
fn a_reply_cut_before_its_first_word_leaves_no_empty_segment() {
    // Hang up at every moment around the reply's start: whenever nothing
    // of it was heard, the transcript gets no agent line with no words.
    for ms in (3_200..3_600).step_by(10) {
        let mut sim = VoiceSim::new(config(), polite());
        sim.caller_says(2_000, 800, "I need a table");
        sim.caller_hangs_up(ms);
        for s in sim.said() {
            assert!(!s.text.trim().is_empty(), "hang-up at {ms} ms: {s:?}");
        }
    }
}

#[test]
fn a_failing_provider_gets_an_apology_and_the_call_goes_on() {
    let mut calls = 0;
    let model = Box::new(move |_: &[ChatLine]| {
        calls += 1;
        match calls {
            1 => vec![Step::Fail("HTTP 500")],
            2 => vec![Step::Text("Half a sentence"), Step::Fail("stream cut")],
            _ => vec![Step::Text("All good now.")],
        }
    });
    let mut sim = VoiceSim::new(config(), model);
    sim.caller_says(2_000, 800, "first");
    sim.caller_says(8_000, 800, "second");
    sim.caller_says(14_000, 800, "third");
    sim.run(20_000);
    let lines: Vec<String> = sim.agent_lines().into_iter().map(|l| l.0).collect();
    assert_eq!(
        lines,
        vec![
            "Hello, how can I help?",
            "Sorry, I'm having trouble right now. Could you say that again?",
            "Half a sentence",
            "All good now."
        ]
    );
    let failures = sim
        .records()
        .into_iter()
        .filter(|r| matches!(r, Record::ReplyFailed(_)))
        .count();
    assert_eq!(failures, 2);
    assert!(!sim.session.is_closed());
    let _ = WORD;
}

#[test]
fn the_time_limit_ends_the_call_politely() {
    let mut sim = VoiceSim::new(
        ConversationConfig {
            max_call: Some(Duration::from_secs(4)),
            ..config()
        },
        polite(),
    );
    sim.caller_says(2_000, 800, "I need a table");
    sim.run(20_000);
    assert_eq!(
        sim.spoken_phrases().last().map(String::as_str),
        Some("We've reached the time limit for this call. Thank you, goodbye.")
    );
    assert_eq!(outcome(&sim), Some(Outcome::Completed));
    assert!(sim.hangup_at.is_some());
}
