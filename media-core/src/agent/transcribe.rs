//! The transcribe agent: listens, never speaks.
//!
//! With an endpointer on the call, every caller turn comes out as an
//! [`Event::Turn`](crate::Event::Turn) for the driver to transcribe and log.
//! The agent itself has nothing to do: it is the "ears only" mode for
//! testing speech recognition on real calls before any reply exists.

use crate::agent::Agent;
use crate::frame::{Frame, Time};
use crate::playout::Playout;

/// Listens only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transcribe;

impl Agent for Transcribe {
    fn handle_audio(&mut self, _now: Time, _frame: Frame<'_>, _playout: &mut Playout) {}
}
