//! Admission: when a connection becomes a call. A connection first waits
//! for its UUID in a bounded set of places ([`Pending`]); once identified it
//! is given a call slot ([`admit`]) or a [`Refusal`]. The counters and the
//! UUID book live in [`Live`], which the API reads for `/readyz` and
//! `/metrics`.
//!
//! # Concurrency
//! Touched once or twice per connection, never per frame: the pending
//! places and the UUID book are each one mutex held for one push, pop or
//! lookup; the counters are atomics; the call cap is a semaphore whose
//! permit lives in the call's [`Slot`].

mod shared;
mod start;

pub(crate) use shared::{AgentEntry, Shared};
pub(crate) use start::{start_call, start_rtp_call};

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::store::Lookup;

/// Where the server is in its life; drivers and accept loops watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Stop accepting; calls in progress go on.
    Draining,
    /// Hang up every call now.
    HangUp,
    /// Every call is over: the API stops too.
    Stopped,
}

/// The call capacity and counters, shared with the API (`/readyz`, `/metrics`).
#[derive(Debug)]
pub(crate) struct Live {
    /// One permit per call that may still start.
    pub(crate) calls: Arc<Semaphore>,
    /// `max_calls`.
    pub(crate) max: usize,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) shutdown_hangups: AtomicU64,
    /// Shutdown has begun: no new calls.
    pub(crate) draining: AtomicBool,
    /// Connections waiting for their UUID.
    pub(crate) pending: Arc<Pending>,
    /// Calls in progress (counted apart from the semaphore, whose permits
    /// the drain takes back as calls end).
    pub(crate) active: AtomicUsize,
    /// UUIDs of the calls in progress and of recent ones.
    pub(crate) in_call: Mutex<UuidBook>,
}

impl Live {
    /// Calls in progress.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls that may still start now.
    pub(crate) fn spare(&self) -> usize {
        if self.draining.load(Ordering::Relaxed) {
            0
        } else {
            self.max.saturating_sub(self.active())
        }
    }
}

/// The connections waiting for their UUID, oldest first. At most
/// `max_pending` wait: a new one makes the oldest give up its place (it
/// gets 0x00). Asterisk sends the UUID at once, so the oldest waiter is
/// the one least likely to be a real call, and a flood of idle
/// connections can never keep a real one from being heard.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    book: Mutex<PendingBook>,
}

#[derive(Debug, Default)]
struct PendingBook {
    next: u64,
    waiting: VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>,
}

/// A connection's place among the waiting; dropping it leaves.
pub(crate) struct PendingPlace {
    id: u64,
    pending: Arc<Pending>,
}

impl Drop for PendingPlace {
    fn drop(&mut self) {
        let mut b = self.pending.book.lock().unwrap_or_else(|p| p.into_inner());
        b.waiting.retain(|(id, _)| *id != self.id);
    }
}

impl Pending {
    /// A place for a new connection, evicting the oldest beyond `max`; the
    /// receiver fires if this one is evicted in turn.
    pub(crate) fn wait(
        self: &Arc<Self>,
        max: usize,
    ) -> (PendingPlace, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Single pushes and pops under the lock: a panic cannot leave it torn.
        let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
        while b.waiting.len() >= max.max(1) {
            if let Some((_, oldest)) = b.waiting.pop_front() {
                let _ = oldest.send(());
            }
        }
        b.next += 1;
        let id = b.next;
        b.waiting.push_back((id, tx));
        (
            PendingPlace {
                id,
                pending: Arc::clone(self),
            },
            rx,
        )
    }
}

/// Why an identified connection did not become a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every call slot is taken.
    AtCapacity,
    /// The node is shutting down.
    Draining,
    /// A call with this UUID is in progress (a dialplan that reuses a UUID).
    DuplicateUuid,
}

impl Refusal {
    /// Its name in logs and in the stored call's end reason.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::AtCapacity => "at capacity",
            Refusal::Draining => "shutting down",
            Refusal::DuplicateUuid => "UUID already in a call",
        }
    }
}

/// A call slot: the semaphore permit plus this call's place among the
/// active ones. Dropping it frees both.
pub(crate) struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    live: Arc<Live>,
    uuid: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.live.active.fetch_sub(1, Ordering::Relaxed);
        // As for the registry: single inserts and removes only.
        self.live
            .in_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .end(&self.uuid);
    }
}

/// Gives call `uuid` a slot, or says why not. A UUID names one call:
/// Asterisk's `${UUID()}` never repeats, so a UUID that is in a call, ran
/// on this node in the last [`RECENT`], or (by `lookup`) started anywhere
/// on the database is a dialplan error, refused rather than merged into
/// the earlier call's record.
pub(crate) fn admit(live: &Arc<Live>, uuid: &str, lookup: &Lookup) -> Result<Slot, Refusal> {
    if live.draining.load(Ordering::Relaxed) {
        return Err(Refusal::Draining);
    }
    let mut book = live.in_call.lock().unwrap_or_else(|p| p.into_inner());
    if *lookup == Lookup::Used || book.knows(uuid) {
        return Err(Refusal::DuplicateUuid);
    }
    let permit = Arc::clone(&live.calls)
        .try_acquire_owned()
        .map_err(|_| Refusal::AtCapacity)?;
    book.active.insert(uuid.to_string());
    live.active.fetch_add(1, Ordering::Relaxed);
    Ok(Slot {
        _permit: permit,
        live: Arc::clone(live),
        uuid: uuid.to_string(),
    })
}

/// How long a UUID that ran here stays known, to refuse its reuse.
const RECENT: Duration = Duration::from_secs(15 * 60);

/// The UUIDs of the calls in progress and of those that ended lately.
#[derive(Debug, Default)]
pub(crate) struct UuidBook {
    active: HashSet<String>,
    recent: HashSet<String>,
    /// `recent` in the order the calls ended, to forget the old ones.
    ended: VecDeque<(Instant, String)>,
}

impl UuidBook {
    fn knows(&self, uuid: &str) -> bool {
        self.active.contains(uuid) || self.recent.contains(uuid)
    }

    fn end(&mut self, uuid: &str) {
        let now = Instant::now();
        while let Some((at, _)) = self.ended.front() {
            if now.duration_since(*at) < RECENT {
                break;
            }
            if let Some((_, old)) = self.ended.pop_front() {
                self.recent.remove(&old);
            }
        }
        if self.active.remove(uuid) {
            self.recent.insert(uuid.to_string());
            self.ended.push_back((now, uuid.to_string()));
        }
    }
}
