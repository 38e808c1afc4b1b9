//! The conversation as the model sees it, bounded in size.

use std::collections::VecDeque;

use crate::dialog::{ChatLine, Speaker};

/// The lines of one call, oldest first, never more than `max_lines` lines
/// or `max_chars` characters (the oldest go first; a long call must not
/// grow its prompt, its cost and its latency without end).
#[derive(Debug, Clone)]
pub(crate) struct History {
    lines: VecDeque<ChatLine>,
    chars: usize,
    max_lines: usize,
    max_chars: usize,
}

impl History {
    pub(crate) fn new(max_lines: usize, max_chars: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            chars: 0,
            max_lines: max_lines.max(1),
            max_chars: max_chars.max(1),
        }
    }

    /// Adds a line; a line by the same speaker as the last one joins it
    /// (two caller turns in a row are one message to the model).
    pub(crate) fn push(&mut self, speaker: Speaker, text: &str, interrupted: bool) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match self.lines.back_mut() {
            Some(last) if last.speaker == speaker && !last.interrupted => {
                last.text.push(' ');
                last.text.push_str(text);
                last.interrupted = interrupted;
                self.chars += text.len() + 1;
            }
            _ => {
                self.lines.push_back(ChatLine {
                    speaker,
                    text: text.to_string(),
                    interrupted,
                });
                self.chars += text.len();
            }
        }
        while self.lines.len() > self.max_lines
            || (self.chars > self.max_chars && self.lines.len() > 1)
        {
            if let Some(old) = self.lines.pop_front() {
                self.chars -= old.text.len();
            }
        }
    }

    /// True when the caller spoke last (a reply is owed).
    pub(crate) fn caller_spoke_last(&self) -> bool {
        self.lines
            .back()
            .is_some_and(|l| l.speaker == Speaker::Caller)
    }

    pub(crate) fn lines(&self) -> Vec<ChatLine> {
        self.lines.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_same_speaker_and_stays_bounded() {
        let mut h = History::new(3, 1_000);
        h.push(Speaker::Caller, "hello", false);
        h.push(Speaker::Caller, "are you there", false);
        assert_eq!(h.lines().len(), 1);
        assert_eq!(h.lines()[0].text, "hello are you there");
        h.push(Speaker::Agent, "Yes.", false);
        h.push(Speaker::Caller, "good", false);
        h.push(Speaker::Agent, "How can I", true);
        let lines = h.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].text, "Yes.");
        assert!(lines[2].interrupted);
        // An interrupted line is not joined: the next agent line is new.
        h.push(Speaker::Agent, "Sorry.", false);
        assert_eq!(h.lines().last().map(|l| l.text.as_str()), Some("Sorry."));
    }

    #[test]
    fn drops_oldest_when_over_the_character_budget() {
        let mut h = History::new(100, 20);
        h.push(Speaker::Caller, "0123456789", false);
        h.push(Speaker::Agent, "0123456789", false);
        h.push(Speaker::Caller, "abc", false);
        let lines = h.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].text, "abc");
        assert!(!h.lines().is_empty());
        assert!(h.caller_spoke_last());
    }
}
