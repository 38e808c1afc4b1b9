//! The caller's turns between the endpointer and the agent: which were
//! sent to STT, which preview became the turn, and their texts in order.
//!
//! STT may answer out of order (a preview sent early, a queue that runs
//! turns of many calls); the agent still gets exactly one transcript per
//! turn, in the order the caller spoke.

use std::collections::VecDeque;

use crate::dialog::Heard;
use crate::endpointing::{Turn, TurnEnd};
use crate::frame::Time;

/// A caller turn sent to STT, as the session names it to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TurnId(pub u64);

impl std::fmt::Display for TurnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// What STT made of a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcribed {
    /// The words.
    pub text: String,
    /// The engine's confidence, 0 to 1.
    pub confidence: f32,
}

/// A turn's times, while it waits for its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnInfo {
    /// When the caller started talking.
    pub speech_start: Time,
    /// When the caller stopped talking.
    pub speech_end: Time,
    /// When the end was decided (for a preview: when it was sent).
    pub decided_at: Time,
    /// Why it ended.
    pub reason: TurnEnd,
}

#[derive(Debug)]
struct Waiting {
    id: TurnId,
    info: TurnInfo,
    /// `Some(None)`: STT answered with no words (or lost it).
    result: Option<Option<Transcribed>>,
}

/// What became of a finished turn.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The preview was this turn: its text is on its way.
    Preview,
    /// Send it to STT as `TurnId`; the preview named, if any, is not wanted.
    New(TurnId, Option<TurnId>),
}

#[derive(Debug, Default)]
pub(crate) struct Hearing {
    next: u64,
    /// A paused turn sent early, not yet taken.
    preview: Option<Waiting>,
    /// Finished turns, in order, until their text is reported.
    pending: VecDeque<Waiting>,
}

fn info(turn: &Turn) -> TurnInfo {
    TurnInfo {
        speech_start: turn.speech_start,
        speech_end: turn.speech_end,
        decided_at: turn.decided_at,
        reason: turn.reason,
    }
}

impl Hearing {
    fn next_id(&mut self) -> TurnId {
        self.next += 1;
        TurnId(self.next)
    }

    /// A paused turn: returns its id, and the older preview it replaces.
    pub(crate) fn preview(&mut self, turn: &Turn) -> (TurnId, Option<TurnId>) {
        let id = self.next_id();
        let old = self.preview.replace(Waiting {
            id,
            info: info(turn),
            result: None,
        });
        (id, old.map(|w| w.id))
    }

    /// A finished turn: the preview's if it covered the same speech.
    pub(crate) fn take(&mut self, turn: &Turn) -> Taken {
        let same = self.preview.as_ref().is_some_and(|p| {
            p.info.speech_start == turn.speech_start && p.info.speech_end == turn.speech_end
        });
        match self.preview.take() {
            Some(mut p) if same => {
                p.info.decided_at = turn.decided_at;
                p.info.reason = turn.reason;
                self.pending.push_back(p);
                Taken::Preview
            }
            old => {
                let id = self.next_id();
                self.pending.push_back(Waiting {
                    id,
                    info: info(turn),
                    result: None,
                });
                Taken::New(id, old.map(|w| w.id))
            }
        }
    }

    /// STT's answer for `id`; false when no turn waits for it (a forgotten
    /// preview, a repeat).
    pub(crate) fn answer(&mut self, id: TurnId, result: Option<Transcribed>) -> bool {
        let waiting = self
            .pending
            .iter_mut()
            .chain(self.preview.as_mut())
            .find(|w| w.id == id && w.result.is_none());
        match waiting {
            Some(w) => {
                w.result = Some(result);
                true
            }
            None => false,
        }
    }

    /// The oldest finished turn's text, once it has one.
    pub(crate) fn next_heard(&mut self) -> Option<Heard> {
        if self.pending.front().is_none_or(|w| w.result.is_none()) {
            return None;
        }
        let w = self.pending.pop_front()?;
        let t = w.result.flatten();
        Some(Heard {
            text: t.as_ref().map(|t| t.text.clone()).unwrap_or_default(),
            confidence: t.map_or(0.0, |t| t.confidence),
            speech_start: w.info.speech_start,
            speech_end: w.info.speech_end,
            decided_at: w.info.decided_at,
        })
    }

    /// True when the oldest finished turn's text is in.
    pub(crate) fn has_heard(&self) -> bool {
        self.pending.front().is_some_and(|w| w.result.is_some())
    }

    /// The times of a turn still waiting for its text.
    pub(crate) fn info(&self, id: TurnId) -> Option<TurnInfo> {
        self.pending
            .iter()
            .chain(self.preview.as_ref())
            .find(|w| w.id == id)
            .map(|w| w.info)
    }

    /// Finished turns whose text has not been reported yet.
    pub(crate) fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Drops the preview (the call is over: no turn will take it); returns it.
    pub(crate) fn drop_preview(&mut self) -> Option<TurnId> {
        self.preview.take().map(|w| w.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SampleRate;

    fn turn(start_ms: u64, end_ms: u64) -> Turn {
        Turn {
            rate: SampleRate::HZ_8000,
            samples: vec![0; 160],
            speech_start: Time::from_micros(start_ms * 1_000),
            speech_end: Time::from_micros(end_ms * 1_000),
            decided_at: Time::from_micros((end_ms + 400) * 1_000),
            reason: TurnEnd::Silence,
        }
    }

    fn said(text: &str) -> Option<Transcribed> {
        Some(Transcribed {
            text: text.into(),
            confidence: 0.9,
        })
    }

    #[test]
    fn texts_reach_the_agent_in_the_order_spoken_whatever_order_stt_answers() {
        let mut h = Hearing::default();
        let Taken::New(a, None) = h.take(&turn(0, 500)) else {
            panic!("a new turn")
        };
        let Taken::New(b, None) = h.take(&turn(1_000, 1_500)) else {
            panic!("a new turn")
        };
        assert!(h.answer(b, said("second")));
        assert_eq!(h.next_heard(), None, "the first turn has no text yet");
        assert!(h.answer(a, said("first")));
        assert_eq!(h.next_heard().map(|x| x.text).as_deref(), Some("first"));
        assert_eq!(h.next_heard().map(|x| x.text).as_deref(), Some("second"));
        assert_eq!(h.waiting(), 0);
    }

    #[test]
    fn a_preview_of_the_same_speech_is_the_turn_and_keeps_the_turns_end_time() {
        let mut h = Hearing::default();
        let (p, None) = h.preview(&turn(0, 500)) else {
            panic!("first preview")
        };
        assert!(h.answer(p, said("hello")), "a preview may answer early");
        let mut t = turn(0, 500);
        t.decided_at = Time::from_micros(1_234_000);
        assert_eq!(h.take(&t), Taken::Preview);
        let heard = h.next_heard().expect("its text was in");
        assert_eq!(heard.text, "hello");
        assert_eq!(heard.decided_at, Time::from_micros(1_234_000));
    }

    #[test]
    fn a_preview_the_caller_talked_past_is_forgotten_and_its_late_text_ignored() {
        let mut h = Hearing::default();
        let (p, _) = h.preview(&turn(0, 500));
        let Taken::New(t, Some(forgotten)) = h.take(&turn(0, 1_500)) else {
            panic!("the longer turn is new")
        };
        assert_eq!(forgotten, p);
        assert!(!h.answer(p, said("half a sentence")));
        assert!(h.answer(t, said("the whole sentence")));
        assert_eq!(
            h.next_heard().map(|x| x.text).as_deref(),
            Some("the whole sentence")
        );
        assert_eq!(h.next_heard(), None);
    }

    #[test]
    fn a_turn_with_no_words_still_gets_its_one_report_and_repeats_are_ignored() {
        let mut h = Hearing::default();
        let Taken::New(a, _) = h.take(&turn(0, 300)) else {
            panic!("new")
        };
        assert!(h.answer(a, None));
        assert!(!h.answer(a, said("again")), "one answer per turn");
        let heard = h.next_heard().expect("reported");
        assert_eq!(heard.text, "");
        assert_eq!(heard.confidence, 0.0);
    }
}
