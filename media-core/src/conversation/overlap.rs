//! The caller's voice while the agent talks: duck at once, decide later.
//!
//! Stopping the agent on the first voiced window would cut it off for
//! every cough; waiting for `barge_in_min` of voice lets the caller talk
//! over it at full level for a third of a second. So the agent's audio is
//! ducked (attenuated by `duck_db`) on the first voiced window, and the
//! conversation then decides: enough voice or real words stop it (a
//! barge-in); a cough or click that goes quiet, a turn with no words, or
//! a backchannel ("uh-huh") restores the level and the agent goes on.

use crate::frame::Time;
use crate::playout::Playout;

/// How long the caller must be quiet, outside a turn, before a duck that
/// led to nothing is undone: the endpointer's own gap for giving up on a
/// speech candidate.
pub(crate) const QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// What a duck that did not become a barge-in turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapKind {
    /// Voice too short to be a turn (a cough, a click, line noise), or a
    /// turn with no words.
    Noise,
    /// A short acknowledgement ("uh-huh", "yeah").
    Backchannel,
}

impl OverlapKind {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapKind::Noise => "noise",
            OverlapKind::Backchannel => "backchannel",
        }
    }
}

/// A duck in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ducked {
    /// The first voiced window (the duck came with it).
    pub(crate) at: Time,
    /// The latest voiced window.
    pub(crate) last_voiced: Time,
}

#[derive(Debug)]
pub(crate) struct Overlap {
    /// Linear gain while ducked; `None`: ducking is off.
    gain: Option<f32>,
    ducked: Option<Ducked>,
}

impl Overlap {
    pub(crate) fn new(duck_db: Option<f32>) -> Self {
        Self {
            gain: duck_db
                .filter(|db| *db > 0.0)
                .map(|db| 10f32.powf(-db / 20.0)),
            ducked: None,
        }
    }

    /// A voiced window while the agent's interruptible audio plays:
    /// ducks it (from the next frame) if it is not ducked yet.
    pub(crate) fn voiced(&mut self, now: Time, playout: &mut Playout) {
        let Some(gain) = self.gain else {
            return;
        };
        match &mut self.ducked {
            Some(d) => d.last_voiced = now,
            None => {
                playout.set_gain(gain);
                self.ducked = Some(Ducked {
                    at: now,
                    last_voiced: now,
                });
            }
        }
    }

    /// The duck in progress, if any.
    pub(crate) fn ducked(&self) -> Option<Ducked> {
        self.ducked
    }

    /// Ends the duck (restored, or the agent was stopped): full level.
    pub(crate) fn end(&mut self, playout: &mut Playout) -> Option<Ducked> {
        let d = self.ducked.take()?;
        playout.set_gain(1.0);
        Some(d)
    }

    /// When a duck with the caller quiet since is due to be undone.
    pub(crate) fn quiet_deadline(&self) -> Option<Time> {
        self.ducked.map(|d| d.last_voiced + QUIET)
    }
}
