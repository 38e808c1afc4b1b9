//! Judging a caller's pause: the end of their turn, or a breath in the
//! middle of a sentence.
//!
//! A fixed silence cannot tell the two apart: short enough to answer at
//! once, it cuts off "I'd like to ... book a table"; long enough not to,
//! every answer waits for it. With [`SmartTurn`] the session asks two
//! signals as soon as a short pause begins (the endpointer's preview):
//! an end-of-turn model on the turn's audio (prosody and content), and
//! the preview's words from STT. The turn ends at once when both say the
//! caller is done; otherwise the endpointer's longer `hangover` still ends
//! it, so a wrong "not yet" costs time, never the caller's words.
//!
//! Each pause is judged once, when both answers are in; a newer pause
//! (the caller went on) replaces it and a late answer for the old one is
//! ignored.

use crate::frame::Time;
use crate::session::TurnId;

/// Ending turns on an end-of-turn model and the preview's words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmartTurn {
    /// The model's probability at or above which the turn is complete.
    pub threshold: f32,
}

impl Default for SmartTurn {
    fn default() -> Self {
        // The model's own decision point (pipecat-ai's analyzer uses 0.5).
        Self { threshold: 0.5 }
    }
}

/// How one pause was judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PauseVerdict {
    /// The paused turn (its preview).
    pub turn: TurnId,
    /// The model's probability that the turn is complete; `None` when it
    /// failed (the words then decide alone).
    pub probability: Option<f32>,
    /// The preview's words read as a finished sentence.
    pub words_complete: bool,
    /// The turn ends here.
    pub complete: bool,
}

#[derive(Debug)]
struct Pause {
    turn: TurnId,
    speech_end: Time,
    /// `Some(None)`: the model failed.
    probability: Option<Option<f32>>,
    words_complete: Option<bool>,
}

/// The pause being judged, if any.
#[derive(Debug)]
pub(crate) struct Pauses {
    config: SmartTurn,
    current: Option<Pause>,
}

impl Pauses {
    pub(crate) fn new(config: SmartTurn) -> Self {
        Self {
            config,
            current: None,
        }
    }

    /// A pause began: its preview `turn`, speech ending at `speech_end`.
    pub(crate) fn paused(&mut self, turn: TurnId, speech_end: Time) {
        self.current = Some(Pause {
            turn,
            speech_end,
            probability: None,
            words_complete: None,
        });
    }

    /// The model's answer for `turn`. Returns the verdict once both
    /// answers are in, with the `speech_end` of the pause it judged.
    pub(crate) fn scored(&mut self, turn: TurnId, p: Option<f32>) -> Option<(Time, PauseVerdict)> {
        let pause = self.current.as_mut().filter(|c| c.turn == turn)?;
        pause.probability = Some(p.filter(|p| p.is_finite()));
        self.judge()
    }

    /// STT's words for `turn` (`None`: no words).
    pub(crate) fn heard(
        &mut self,
        turn: TurnId,
        text: Option<&str>,
    ) -> Option<(Time, PauseVerdict)> {
        let pause = self.current.as_mut().filter(|c| c.turn == turn)?;
        pause.words_complete = Some(text.is_some_and(words_complete));
        self.judge()
    }

    fn judge(&mut self) -> Option<(Time, PauseVerdict)> {
        let pause = self.current.as_ref()?;
        let (Some(probability), Some(words)) = (pause.probability, pause.words_complete) else {
            return None;
        };
        let model = probability.is_none_or(|p| p >= self.config.threshold);
        let verdict = PauseVerdict {
            turn: pause.turn,
            probability,
            words_complete: words,
            complete: model && words,
        };
        let speech_end = pause.speech_end;
        self.current = None;
        Some((speech_end, verdict))
    }
}

/// Words that do not end an English sentence: conjunctions, prepositions,
/// articles, possessives, fillers. "I'd like to." is Whisper's period,
/// not the caller's.
const OPEN_ENDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "so", "because", "if", "then", "than", "to", "of", "in",
    "on", "at", "for", "with", "from", "by", "about", "into", "onto", "over", "under", "after",
    "before", "until", "like", "my", "your", "our", "their", "his", "her", "its", "this", "these",
    "those", "some", "any", "um", "uh", "er", "erm", "uhm", "hmm", "mm", "ah", "i", "i'm", "i'd",
    "we", "we're", "we'd", "is", "are", "was", "were", "be", "am", "also", "plus", "maybe",
];

/// True when `text` reads as a finished sentence: it ends in `.`, `?` or
/// `!` (not an ellipsis), and its last word is not one that leaves a
/// sentence open ("to", "and", "the", "um", ...).
pub fn words_complete(text: &str) -> bool {
    let t = text
        .trim()
        .trim_end_matches(['"', '\'', ')', '\u{201d}', '\u{2019}']);
    if t.ends_with("...") || t.ends_with('\u{2026}') || t.ends_with("--") || t.ends_with('-') {
        return false;
    }
    if !t.ends_with(['.', '?', '!']) {
        return false;
    }
    let last = t
        .split_whitespace()
        .next_back()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase()
        .replace('\u{2019}', "'");
    !last.is_empty() && !OPEN_ENDS.contains(&last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_end_is_complete_an_open_end_is_not() {
        for done in [
            "I'd like to book a table.",
            "Two people, please.",
            "Can you hear me?",
            "Yes!",
            "On Friday at eight.\"",
            "That's all I need. ",
        ] {
            assert!(words_complete(done), "{done:?}");
        }
        for open in [
            "I'd like to.",
            "I'd like to book a table and.",
            "For the.",
            "Um.",
            "I want, uh.",
            "So I was thinking...",
            "So I was thinking\u{2026}",
            "I'd like to",
            "",
            "   ",
            ".",
            "My name is -",
            "Is it for my.",
        ] {
            assert!(!words_complete(open), "{open:?}");
        }
    }

    fn t(ms: u64) -> Time {
        Time::from_micros(ms * 1_000)
    }

    #[test]
    fn both_signals_must_agree_and_each_pause_is_judged_once() {
        let mut p = Pauses::new(SmartTurn::default());
        p.paused(TurnId(1), t(1_000));
        assert_eq!(p.scored(TurnId(1), Some(0.9)), None, "the words are not in");
        let (end, v) = p.heard(TurnId(1), Some("Two people.")).expect("judged");
        assert_eq!(end, t(1_000));
        assert!(v.complete && v.words_complete);
        assert_eq!(p.heard(TurnId(1), Some("again.")), None, "judged once");

        p.paused(TurnId(2), t(3_000));
        assert_eq!(p.heard(TurnId(2), Some("Two people.")), None);
        let (_, v) = p.scored(TurnId(2), Some(0.2)).expect("judged");
        assert!(!v.complete, "the model says the caller is not done");

        p.paused(TurnId(3), t(5_000));
        p.scored(TurnId(3), Some(0.97));
        let (_, v) = p.heard(TurnId(3), Some("I'd like to.")).expect("judged");
        assert!(!v.complete, "the words are open");
        let (_, v) = {
            p.paused(TurnId(4), t(7_000));
            p.heard(TurnId(4), None);
            p.scored(TurnId(4), Some(0.99)).expect("judged")
        };
        assert!(!v.complete, "no words: nothing to answer yet");
    }

    #[test]
    fn a_newer_pause_replaces_the_old_and_a_failed_model_leaves_the_words() {
        let mut p = Pauses::new(SmartTurn { threshold: 0.5 });
        p.paused(TurnId(1), t(1_000));
        p.scored(TurnId(1), Some(0.9));
        p.paused(TurnId(2), t(2_000));
        assert_eq!(p.heard(TurnId(1), Some("Hello.")), None, "stale");
        assert_eq!(p.scored(TurnId(2), None), None);
        let (end, v) = p.heard(TurnId(2), Some("Hello there.")).expect("judged");
        assert_eq!(end, t(2_000));
        assert_eq!(v.probability, None);
        assert!(v.complete, "the words decide when the model failed");
    }
}
