//! Calls registered ahead through `POST /v1/calls`, waiting for their
//! AudioSocket connection. The database holds the registration too (so a
//! restarted daemon, or another node on the same database, still finds
//! it); this map answers the common case without a query on the call's
//! path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::store::Registration;

/// A registration not claimed in this long is dropped from memory (the
/// database row stays).
const KEEP: Duration = Duration::from_secs(15 * 60);

/// Registrations by call UUID, and the outcomes of calls that just ended.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<String, (Registration, Instant)>>,
    /// A call's outcome as soon as the conversation decides it, before its
    /// records reach the database: the dialplan asks right after
    /// AudioSocket() returns.
    outcomes: Mutex<HashMap<String, (Outcome, Instant)>>,
    /// Who waits for a call's media to end (Stasis sessions), by call UUID.
    ends: Mutex<HashMap<String, oneshot::Sender<CallEnd>>>,
}

/// How a call's AudioSocket leg ended, for whoever set it up (a Stasis
/// session tears down or hands off the Asterisk side from this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallEnd {
    /// The conversation handed the caller off to this target.
    pub(crate) handoff: Option<String>,
    /// Why the leg ended, in words (for logs).
    pub(crate) reason: String,
}

/// How a call ended, as the dialplan reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) outcome: String,
    pub(crate) handoff_target: Option<String>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Registration, Instant)>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert or remove).
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a registration.
    pub(crate) fn insert(&self, r: Registration) {
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, (_, at)| now.duration_since(*at) < KEEP);
        map.insert(r.call_id.clone(), (r, now));
    }

    /// Notes a call's outcome.
    pub(crate) fn set_outcome(&self, call_id: &str, outcome: Outcome) {
        let now = Instant::now();
        // As for `map`: single inserts and removes only.
        let mut m = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (_, at)| now.duration_since(*at) < KEEP);
        m.insert(call_id.to_string(), (outcome, now));
    }

    /// A call's outcome noted in the last minutes, if any.
    pub(crate) fn outcome(&self, call_id: &str) -> Option<Outcome> {
        let m = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        m.get(call_id).map(|(o, _)| o.clone())
    }

    /// Tells whoever waits on `call_id` that its media leg ended.
    pub(crate) fn ended(&self, call_id: &str, end: CallEnd) {
        // As for `map`: single inserts and removes only.
        let waiter = self
            .ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call_id);
        if let Some(tx) = waiter {
            let _ = tx.send(end);
        }
    }

    /// Registers `r` and a wait for its call's end, in that order, so the
    /// end cannot be missed. Dropping the receiver cancels the wait.
    pub(crate) fn insert_and_watch(&self, r: Registration) -> oneshot::Receiver<CallEnd> {
        let (tx, rx) = oneshot::channel();
        let id = r.call_id.clone();
        {
            let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
            // Waits whose session went away are dropped here, so the map
            // holds only calls being set up or running.
            ends.retain(|_, tx| !tx.is_closed());
            ends.insert(id, tx);
        }
        self.insert(r);
        rx
    }

    /// True while `call_id`'s registration waits for its connection.
    pub(crate) fn is_waiting(&self, call_id: &str) -> bool {
        self.map().contains_key(call_id)
    }

    /// Forgets a registration that will not be claimed (its setup failed).
    pub(crate) fn forget(&self, call_id: &str) {
        self.map().remove(call_id);
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call_id);
    }

    /// Claims the registration of `call_id`, if there is one.
    pub(crate) fn take(&self, call_id: &str) -> Option<Registration> {
        self.map().remove(call_id).map(|(r, _)| r)
    }
}
