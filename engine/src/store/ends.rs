//! The ends journal: a call's end, fsync'd before the call's socket is
//! closed, so a crash right after a hangup does not lose how the call
//! ended (the writer's queue is memory). It is a [`Spool`] of its own
//! beside the writer's (`<spool>.ends`): at start-up its events move into
//! the writer's spool, which replays them in order; at a clean exit, once
//! the writer has written or spooled everything, it is emptied.
//!
//! # Concurrency
//! Calls append through [`EndsJournal::append`], which runs the write and
//! the fsync on the blocking pool; the file's mutex is only ever taken
//! there, never on a runtime thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::spool::Spool;
use super::{CallEnd, StoreError, StoreEvent};

/// Shared by every call of a daemon; cheap to clone.
#[derive(Debug, Clone)]
pub struct EndsJournal {
    spool: Arc<Mutex<Spool>>,
}

impl EndsJournal {
    /// The journal's path beside the writer's spool at `spool`.
    pub(crate) fn path_for(spool: &Path) -> PathBuf {
        let mut p = spool.as_os_str().to_owned();
        p.push(".ends");
        PathBuf::from(p)
    }

    /// Opens the journal beside `spool` and moves what an earlier run left
    /// in it into the writer's spool file (fsync'd there before the journal
    /// is emptied, so a crash in between only repeats an idempotent end).
    /// Returns the journal and how many ends it carried over.
    pub(crate) fn open(spool: &Path) -> Result<(EndsJournal, u64), StoreError> {
        let mut journal = Spool::open(&Self::path_for(spool))?;
        let mut moved = 0;
        if journal.pending() > 0 {
            let mut target = Spool::open(spool)?;
            loop {
                let (lines, offset) = journal.peek(1024)?;
                if lines.is_empty() {
                    journal.advance(offset, 0)?;
                    break;
                }
                let n = lines.len() as u64;
                let events: Vec<StoreEvent> = lines.into_iter().filter_map(Result::ok).collect();
                target.append(&events)?;
                moved += events.len() as u64;
                journal.advance(offset, n)?;
                if journal.pending() == 0 {
                    break;
                }
            }
        }
        Ok((
            EndsJournal {
                spool: Arc::new(Mutex::new(journal)),
            },
            moved,
        ))
    }

    /// Appends `end` and fsyncs it, on the blocking pool.
    pub async fn append(&self, end: CallEnd) -> Result<(), StoreError> {
        let spool = Arc::clone(&self.spool);
        tokio::task::spawn_blocking(move || {
            // A panic while appending leaves at worst a torn line, which
            // the next open cuts off.
            let mut s = spool.lock().unwrap_or_else(|p| p.into_inner());
            s.append(&[StoreEvent::CallEnded(end)])
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Spool {
                path: "ends journal".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })
    }

    /// Empties the journal: every end in it has been written or spooled.
    pub(crate) fn clear(&self) {
        let mut s = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        let pending = s.pending();
        if let Ok((_, offset)) = s.peek(usize::MAX) {
            let _ = s.advance(offset, pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(id: &str) -> CallEnd {
        CallEnd {
            call_id: id.into(),
            tenant: "t".into(),
            agent: "a".into(),
            end_ms: 2,
            duration_ms: 1,
            outcome: "completed".into(),
            handoff_target: None,
            reason: None,
        }
    }

    #[tokio::test]
    async fn ends_left_by_a_crash_move_into_the_spool_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = dir.path().join("events.spool");
        let (j, moved) = EndsJournal::open(&spool).expect("open");
        assert_eq!(moved, 0);
        j.append(end("a")).await.expect("append");
        j.append(end("b")).await.expect("append");
        drop(j);
        // The next start finds them and hands them to the writer's spool.
        let (j, moved) = EndsJournal::open(&spool).expect("open");
        assert_eq!(moved, 2);
        assert_eq!(Spool::open(&spool).expect("spool").pending(), 2);
        drop(j);
        let (_, moved) = EndsJournal::open(&spool).expect("open");
        assert_eq!(moved, 0);
        assert_eq!(Spool::open(&spool).expect("spool").pending(), 2);
    }
}
