//! The conversation side of a call, behind one trait.
//!
//! An [`Agent`] sees the caller's audio and DTMF and answers by queueing audio
//! on the call's [`Playout`]; the call paces it out. Like the call, an agent is
//! a pure state machine: it is given `now`, it never reads a clock or does I/O,
//! and it tells the call what it wants through [`Agent::poll_action`] and
//! when it next needs attention through [`Agent::poll_timeout`].

mod echo;
mod say;
mod transcribe;

use std::fmt;

pub use echo::Echo;
pub use say::Say;
pub use transcribe::Transcribe;

use crate::dialog::{ChatLine, Heard, Record, ReplyInput, UtteranceId};
use crate::endpointing::{Turn, Voice};
use crate::frame::{Frame, Time};
use crate::playout::Playout;

/// What an agent asks of its call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentAction {
    /// Finish playing what is queued, then send AudioSocket hangup (0x00) so
    /// the dialplan continues (the hand-off path).
    Hangup,
    /// Say this text. The driver synthesizes it (I/O, outside the core)
    /// and hands each piece to [`Session::handle_speech`](crate::Session::handle_speech);
    /// the session announces it to the agent (`handle_segment`), feeds it
    /// to playout and reports the end (`handle_utterance_done`).
    Speak {
        /// The utterance.
        id: UtteranceId,
        /// What to say.
        text: String,
    },
    /// Ask the model for the next line given the conversation so far and
    /// speak it as it streams (same audio path as `Speak`); report the
    /// model's side with [`Session::handle_reply`](crate::Session::handle_reply).
    Think {
        /// The utterance the reply becomes.
        id: UtteranceId,
        /// The conversation so far, oldest first.
        history: Vec<ChatLine>,
    },
    /// Stop all work on this utterance (model and TTS); its audio is gone.
    Cancel(UtteranceId),
    /// Something for the control plane.
    Record(Record),
}

/// A DTMF digit: `0-9`, `*`, `#`, `A-D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(char);

impl Digit {
    /// Parses the ASCII byte AudioSocket carries; `None` for anything else.
    pub fn from_ascii(byte: u8) -> Option<Digit> {
        match byte {
            b'0'..=b'9' | b'*' | b'#' | b'A'..=b'D' => Some(Digit(char::from(byte))),
            b'a'..=b'd' => Some(Digit(char::from(byte.to_ascii_uppercase()))),
            _ => None,
        }
    }

    /// The digit as a character.
    pub fn as_char(self) -> char {
        self.0
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The conversation logic of one call.
///
/// The call hands every input to the agent as it arrives; the agent queues
/// replies on `playout`. After each input and at each deadline the call
/// drains [`poll_action`](Agent::poll_action).
pub trait Agent: Send + fmt::Debug {
    /// The call is live (its UUID arrived).
    fn handle_start(&mut self, now: Time) {
        let _ = now;
    }

    /// Every sample of utterance `id` has been handed to playout.
    fn handle_utterance_done(&mut self, now: Time, id: UtteranceId) {
        let _ = (now, id);
    }

    /// The samples of utterance `id` at playout positions `start..end`
    /// speak `text` (see [`Playout::position`]).
    fn handle_segment(&mut self, now: Time, id: UtteranceId, text: &str, start: u64, end: u64) {
        let _ = (now, id, text, start, end);
    }

    /// False once utterance `id` has been cancelled: its audio is dropped.
    fn wants_audio(&self, id: UtteranceId) -> bool {
        let _ = id;
        true
    }

    /// A frame has left; `playout` tells how far the caller has heard.
    fn handle_frame_sent(&mut self, now: Time, playout: &Playout) {
        let _ = (now, playout);
    }

    /// The caller is in a turn and has spoken this much of it so far
    /// (called on every frame of the turn).
    fn handle_voice(&mut self, now: Time, voice: Voice, playout: &mut Playout) {
        let _ = (now, voice, playout);
    }

    /// The endpointer scored the caller's audio: `voiced` when its latest
    /// window is speech (at its `speech_threshold`), whether or not a
    /// turn has started. For reacting within a window (ducking).
    fn handle_hearing(&mut self, now: Time, voiced: bool, playout: &mut Playout) {
        let _ = (now, voiced, playout);
    }

    /// The caller's turn is over; its audio goes to STT.
    fn handle_turn(&mut self, now: Time, turn: &Turn) {
        let _ = (now, turn);
    }

    /// STT's result for the oldest turn not yet reported.
    fn handle_transcript(&mut self, now: Time, heard: Heard, playout: &mut Playout) {
        let _ = (now, heard, playout);
    }

    /// News about the model reply for utterance `id`.
    fn handle_reply(
        &mut self,
        now: Time,
        id: UtteranceId,
        input: ReplyInput,
        playout: &mut Playout,
    ) {
        let _ = (now, id, input, playout);
    }

    /// The call is ending (for any reason): last chance to record what the
    /// caller heard. No further action is carried out except records.
    fn handle_end(&mut self, now: Time, playout: &Playout) {
        let _ = (now, playout);
    }

    /// The caller's audio. The first frame also fixes the call's rate.
    fn handle_audio(&mut self, now: Time, frame: Frame<'_>, playout: &mut Playout);

    /// A DTMF digit from the caller.
    fn handle_dtmf(&mut self, now: Time, digit: Digit, playout: &mut Playout) {
        let _ = (now, digit, playout);
    }

    /// Called at or after the time [`poll_timeout`](Agent::poll_timeout) returned.
    fn handle_timeout(&mut self, now: Time, playout: &mut Playout) {
        let _ = (now, playout);
    }

    /// When the agent next wants [`handle_timeout`](Agent::handle_timeout).
    #[must_use]
    fn poll_timeout(&self) -> Option<Time> {
        None
    }

    /// The next thing the agent asks of the call.
    #[must_use]
    fn poll_action(&mut self) -> Option<AgentAction> {
        None
    }
}
