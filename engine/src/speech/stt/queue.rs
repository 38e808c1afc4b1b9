//! The bounded queue between calls and the Whisper workers.
//!
//! `push` never blocks: a full queue makes room by superseding the oldest
//! waiting turn of the same call (the caller has spoken again; the older turn
//! is stale), and refuses the turn when every waiting turn belongs to other
//! calls. Workers block in `pop` until a job arrives or the queue stops.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use media_core::CallId;

use super::SubmitError;

/// A job with its call and when it was queued.
#[derive(Debug)]
pub(crate) struct Queued<J> {
    pub(crate) call: CallId,
    pub(crate) since: Instant,
    pub(crate) job: J,
}

#[derive(Debug)]
struct Inner<J> {
    jobs: VecDeque<Queued<J>>,
    stopped: bool,
}

/// A bounded multi-producer, multi-consumer job queue.
#[derive(Debug)]
pub(crate) struct JobQueue<J> {
    inner: Mutex<Inner<J>>,
    ready: Condvar,
    capacity: usize,
}

/// What `push` did.
#[derive(Debug)]
pub(crate) enum Pushed<J> {
    /// Queued, nothing displaced.
    Queued,
    /// Queued in place of this older job of the same call.
    Superseded(J),
}

impl<J> JobQueue<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                jobs: VecDeque::with_capacity(capacity.max(1)),
                stopped: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `job`; never blocks. On refusal the job comes back.
    pub(crate) fn push(&self, call: CallId, job: J) -> Result<Pushed<J>, (SubmitError, J)> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.stopped {
            return Err((SubmitError::Stopped, job));
        }
        let mut pushed = Pushed::Queued;
        if inner.jobs.len() >= self.capacity {
            match inner.jobs.iter().position(|q| q.call == call) {
                Some(i) => {
                    if let Some(old) = inner.jobs.remove(i) {
                        pushed = Pushed::Superseded(old.job);
                    }
                }
                None => return Err((SubmitError::QueueFull(inner.jobs.len()), job)),
            }
        }
        inner.jobs.push_back(Queued {
            call,
            since: Instant::now(),
            job,
        });
        drop(inner);
        self.ready.notify_one();
        Ok(pushed)
    }

    /// The next job, blocking; `None` once stopped.
    pub(crate) fn pop(&self) -> Option<Queued<J>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if inner.stopped {
                return None;
            }
            if let Some(q) = inner.jobs.pop_front() {
                return Some(q);
            }
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops the queue and returns the jobs still waiting.
    pub(crate) fn stop(&self) -> Vec<J> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.stopped = true;
        let left = inner.jobs.drain(..).map(|q| q.job).collect();
        drop(inner);
        self.ready.notify_all();
        left
    }

    /// Jobs waiting.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map(|i| i.jobs.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn call(n: u128) -> CallId {
        CallId(Uuid::from_u128(n))
    }

    #[test]
    fn a_full_queue_supersedes_the_same_calls_oldest_turn() {
        let q = JobQueue::new(3);
        assert!(matches!(q.push(call(1), "a1"), Ok(Pushed::Queued)));
        assert!(matches!(q.push(call(2), "b1"), Ok(Pushed::Queued)));
        assert!(matches!(q.push(call(1), "a2"), Ok(Pushed::Queued)));
        // Full: call 1's oldest waiting turn makes room.
        assert!(matches!(
            q.push(call(1), "a3"),
            Ok(Pushed::Superseded("a1"))
        ));
        // Full, and call 3 has nothing waiting: refused, job returned.
        assert!(matches!(
            q.push(call(3), "c1"),
            Err((SubmitError::QueueFull(3), "c1"))
        ));
        let order: Vec<_> = (0..3).map(|_| q.pop().unwrap().job).collect();
        assert_eq!(order, ["b1", "a2", "a3"]);
    }

    #[test]
    fn stop_wakes_workers_and_returns_the_rest() {
        let q = std::sync::Arc::new(JobQueue::<u32>::new(4));
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || q.pop().map(|j| j.job))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(q.stop().is_empty());
        assert_eq!(worker.join().unwrap(), None);
        assert!(matches!(q.push(call(1), 5), Err((SubmitError::Stopped, 5))));
    }
}
