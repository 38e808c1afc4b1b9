//! Synthesized speech on its way into playout, utterance by utterance.
//!
//! All of a call's utterances may synthesize at once (the next reply while
//! this one plays), but only the oldest feeds playout, so they are heard in
//! order; and only up to [`FEED_AHEAD`] ahead of real time, so playout
//! never overflows and a barge-in flush has little to throw away.

use std::collections::VecDeque;
use std::time::Duration;

use crate::call::Call;
use crate::dialog::UtteranceId;
use crate::frame::Time;

/// Speech is fed to playout up to this far ahead; the rest waits here and
/// in the synthesizer.
pub const FEED_AHEAD: Duration = Duration::from_secs(1);

/// One synthesized piece: its text and its samples from `at`.
#[derive(Debug)]
struct Piece {
    text: String,
    samples: Vec<i16>,
    at: usize,
    announced: bool,
}

#[derive(Debug)]
struct Utterance {
    id: UtteranceId,
    pieces: VecDeque<Piece>,
    /// The synthesizer has given every piece.
    done: bool,
}

#[derive(Debug, Default)]
pub(crate) struct SpeechFeed {
    queue: VecDeque<Utterance>,
}

impl SpeechFeed {
    /// No utterance is open: nothing to feed.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The agent asked for `id`: its pieces will come.
    pub(crate) fn open(&mut self, id: UtteranceId) {
        self.queue.push_back(Utterance {
            id,
            pieces: VecDeque::new(),
            done: false,
        });
    }

    /// The agent cancelled `id`: its pieces are dropped, and any still on
    /// their way are ignored.
    pub(crate) fn cancel(&mut self, id: UtteranceId) {
        self.queue.retain(|u| u.id != id);
    }

    /// A piece of `id`; false when `id` is not (or no longer) wanted.
    pub(crate) fn push(&mut self, id: UtteranceId, text: &str, samples: Vec<i16>) -> bool {
        match self.queue.iter_mut().find(|u| u.id == id && !u.done) {
            Some(u) => {
                u.pieces.push_back(Piece {
                    text: text.to_string(),
                    samples,
                    at: 0,
                    announced: false,
                });
                true
            }
            None => false,
        }
    }

    /// Every piece of `id` has come.
    pub(crate) fn done(&mut self, id: UtteranceId) {
        if let Some(u) = self.queue.iter_mut().find(|u| u.id == id) {
            u.done = true;
        }
    }

    /// The utterance whose next piece playout wants now: the oldest, when
    /// it has nothing left to feed and playout is less than
    /// [`FEED_AHEAD`] ahead.
    pub(crate) fn wanted(&self, queued: Duration) -> Option<UtteranceId> {
        let u = self.queue.front()?;
        (!u.done && u.pieces.is_empty() && queued < FEED_AHEAD).then_some(u.id)
    }

    /// Moves audio of the oldest utterance into playout while it has room;
    /// tells the call when an utterance is all handed over.
    pub(crate) fn feed(&mut self, call: &mut Call, now: Time) {
        while let Some(u) = self.queue.front_mut() {
            while let Some(p) = u.pieces.front_mut() {
                if !p.announced {
                    call.begin_segment(now, u.id, &p.text, p.samples.len());
                    p.announced = true;
                }
                let step = call.rate().frame_samples() * 5;
                while p.at < p.samples.len() && call.queued_audio() < FEED_AHEAD {
                    let end = (p.at + step).min(p.samples.len());
                    let took = call.play(now, u.id, &p.samples[p.at..end]);
                    if took == 0 {
                        break;
                    }
                    p.at += took;
                }
                if p.at < p.samples.len() {
                    return;
                }
                u.pieces.pop_front();
            }
            if !u.done {
                return;
            }
            let id = u.id;
            self.queue.pop_front();
            call.handle_utterance_done(now, id);
        }
    }
}
