//! Calls registered ahead through `POST /v1/calls`, waiting for their
//! AudioSocket connection. The database holds the registration too (so a
//! restarted daemon, or another node on the same database, still finds
//! it); this map answers the common case without a query on the call's
//! path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Registration;

/// A registration not claimed in this long is dropped from memory (the
/// database row stays).
const KEEP: Duration = Duration::from_secs(15 * 60);

/// Registrations by call UUID.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<String, (Registration, Instant)>>,
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

    /// Claims the registration of `call_id`, if there is one.
    pub(crate) fn take(&self, call_id: &str) -> Option<Registration> {
        self.map().remove(call_id).map(|(r, _)| r)
    }
}
