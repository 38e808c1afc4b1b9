//! The agent cut off, or nearly: what the caller heard of a piece that
//! was stopped, the flush and cancel of an interruption, and the duck
//! that may come before it (see `overlap`).

use super::{Conversation, OverlapKind};
use crate::agent::AgentAction;
use crate::dialog::{Record, Segment, Speaker, UtteranceId};
use crate::frame::Time;
use crate::playout::Playout;

impl Conversation {
    pub(super) fn can_interrupt(&self) -> bool {
        !self.queue.is_empty() && self.queue.iter().all(|u| u.interruptible)
    }

    /// Records the agent's heard text of every piece that started before
    /// `heard_to` and drops the rest.
    pub(super) fn settle_pieces(&mut self, now: Time, heard_to: u64) {
        while let Some(p) = self.pieces.pop_front() {
            if p.start >= heard_to {
                continue;
            }
            let len = (p.end - p.start).max(1);
            let played = heard_to.min(p.end) - p.start;
            let interrupted = played < len;
            let text = if interrupted {
                heard_prefix(&p.text, played as f64 / len as f64)
            } else {
                p.text.clone()
            };
            self.agent_said(p.started_at.unwrap_or(now), now, &text, interrupted);
        }
    }

    pub(super) fn agent_said(&mut self, start: Time, end: Time, text: &str, interrupted: bool) {
        if text.trim().is_empty() && !interrupted {
            return;
        }
        self.history.push(Speaker::Agent, text, interrupted);
        // Cut off before a word was heard (the caller hung up or barged in
        // at once): the history says so, the transcript has nothing to show.
        if text.trim().is_empty() {
            return;
        }
        self.record(Record::Said(Segment {
            speaker: Speaker::Agent,
            text: text.trim().to_string(),
            start,
            end,
            confidence: 1.0,
            interrupted,
        }));
    }

    /// Cuts the agent off: flush, keep what was heard, cancel the rest.
    pub(super) fn interrupt(&mut self, now: Time, playout: &mut Playout) {
        playout.flush();
        self.overlap.end(playout);
        self.settle_pieces(now, playout.position());
        let cut: Vec<UtteranceId> = self.queue.drain(..).map(|u| u.id).collect();
        for id in cut {
            self.actions.push_back(AgentAction::Cancel(id));
        }
        self.resume_owed = true;
        self.quiet_since = now;
    }

    /// The agent's audio is (or is about to be) heard.
    pub(super) fn audible(&self, playout: &Playout) -> bool {
        !playout.queued().is_zero() || !self.pieces.is_empty()
    }

    /// Brings the agent's level back after a duck that was no
    /// interruption, and records what it was.
    pub(super) fn restore(&mut self, now: Time, kind: OverlapKind, playout: &mut Playout) {
        if let Some(d) = self.overlap.end(playout) {
            self.record(Record::Overlap {
                ducked_at: d.at,
                restored_at: now,
                kind,
            });
        }
    }

    /// A duck whose utterances have all played out is over: the next
    /// utterance starts at full level.
    pub(super) fn tidy_duck(&mut self, playout: &mut Playout) {
        if self.queue.is_empty() {
            self.overlap.end(playout);
        }
    }

    /// When a duck with a quiet caller (no turn, nothing being
    /// transcribed) is undone: a cough or a click.
    pub(super) fn restore_deadline(&self) -> Option<Time> {
        if self.caller_speaking || self.pending_turns > 0 {
            return None;
        }
        self.overlap.quiet_deadline()
    }
}

/// The first `fraction` of `text`'s words (the part a caller heard of a
/// piece cut off at that point of its audio).
fn heard_prefix(text: &str, fraction: f64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let n = ((words.len() as f64) * fraction).floor() as usize;
    words[..n.min(words.len())].join(" ")
}
