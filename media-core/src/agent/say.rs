//! The say agent: speaks a fixed text when the call starts.
//!
//! For hearing a voice and its settings on a real phone, and for the simple
//! announcement lines every PBX has ("our offices are closed"). With
//! `hangup` it hangs up once the text has been played (AudioSocket 0x00,
//! so the dialplan continues).

use crate::agent::{Agent, AgentAction};
use crate::dialog::UtteranceId;
use crate::frame::{Frame, Time};
use crate::playout::Playout;

/// Says one text, then optionally hangs up.
#[derive(Debug, Clone)]
pub struct Say {
    text: String,
    hangup: bool,
    actions: Vec<AgentAction>,
}

impl Say {
    /// An agent that says `text`, then hangs up if `hangup`.
    pub fn new(text: impl Into<String>, hangup: bool) -> Self {
        Self {
            text: text.into(),
            hangup,
            actions: Vec::new(),
        }
    }
}

impl Agent for Say {
    fn handle_start(&mut self, _now: Time) {
        self.actions.push(AgentAction::Speak {
            id: UtteranceId(1),
            text: self.text.clone(),
        });
    }

    fn handle_utterance_done(&mut self, _now: Time, _id: UtteranceId) {
        if self.hangup {
            self.actions.push(AgentAction::Hangup);
        }
    }

    fn handle_audio(&mut self, _now: Time, _frame: Frame<'_>, _playout: &mut Playout) {}

    fn poll_action(&mut self) -> Option<AgentAction> {
        if self.actions.is_empty() {
            None
        } else {
            Some(self.actions.remove(0))
        }
    }
}
