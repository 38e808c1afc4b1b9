//! Model work on threads of its own, off the async runtime.
//!
//! An [`OnnxThreads`] loads one model once per thread; each thread owns its
//! ONNX Runtime session, so no lock is held around an inference. Work comes
//! in on one bounded queue shared by the threads and its result goes back
//! on a oneshot: the async side awaits room in the queue and the result,
//! and never blocks a runtime thread. (Piper uses it; Silero has its own
//! per-window threads in `vad::threads`, Whisper its own in `stt::whisper`.)
//!
//! # Concurrency
//! `threads` OS threads named `hark-<name>-<i>`. They take jobs from the
//! queue's receiver under one mutex that only they ever touch (the queue
//! has one receiver; a thread holds it only while it waits for a job, not
//! while it runs one). The threads end when the last sender is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use tokio::sync::{mpsc, oneshot};

use super::onnx::{OnnxError, load_sessions};

/// One piece of work, run on whichever thread is free.
type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// The inference threads are gone (hark is stopping, or a job panicked
/// and took its thread along).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inference threads are gone")]
pub(crate) struct ThreadsGone;

/// A model's inference threads.
#[derive(Debug)]
pub(crate) struct OnnxThreads {
    tx: mpsc::Sender<Job>,
    /// Jobs run to the end.
    done: Arc<AtomicU64>,
}

impl OnnxThreads {
    /// Loads `model` once per thread (each with `intra` intra-op threads)
    /// and starts `threads` threads; `queue` jobs may wait for them.
    pub(crate) fn start(
        library: &Path,
        model: &Path,
        threads: usize,
        intra: usize,
        queue: usize,
        name: &str,
    ) -> Result<Self, OnnxError> {
        let sessions = load_sessions(library, model, threads, intra)?;
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let done = Arc::new(AtomicU64::new(0));
        for (i, mut session) in sessions.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            let done = Arc::clone(&done);
            let spawned = std::thread::Builder::new()
                .name(format!("hark-{name}-{i}"))
                .spawn(move || {
                    loop {
                        // Only these threads take this lock, and only to wait.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                        let Some(job) = job else {
                            // Every sender is gone: hark is stopping.
                            return;
                        };
                        job(&mut session);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            if let Err(e) = spawned {
                return Err(OnnxError::Model {
                    path: model.to_path_buf(),
                    reason: format!("cannot start an inference thread: {e}"),
                });
            }
        }
        Ok(Self { tx, done })
    }

    /// Runs `f` on a free thread's session: waits for room in the queue
    /// and for the result, without blocking the caller's thread.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> R + Send + 'static,
    ) -> Result<R, ThreadsGone> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |session| {
            // The asker may have gone (a cancelled reply): nobody to tell.
            let _ = reply.send(f(session));
        });
        self.tx.send(job).await.map_err(|_| ThreadsGone)?;
        result.await.map_err(|_| ThreadsGone)
    }

    /// Jobs run so far.
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn models() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    fn threads(n: usize, queue: usize) -> OnnxThreads {
        OnnxThreads::start(
            &models().join("onnxruntime/libonnxruntime.so.1.31.1"),
            &models().join("silero/silero_vad.onnx"),
            n,
            1,
            queue,
            "test",
        )
        .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py first"))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_on_the_models_own_threads_and_the_runtime_keeps_ticking() {
        let t = threads(2, 2);
        // Jobs that each hold their thread for 50 ms: on a one-thread
        // runtime, a job run in place would stop the ticker below.
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                let mut every = tokio::time::interval(Duration::from_millis(5));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    every.tick().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let started = std::time::Instant::now();
        let mut names = Vec::new();
        for _ in 0..6 {
            let name = t
                .run(|session| {
                    std::thread::sleep(Duration::from_millis(50));
                    // The session is the thread's own: its inputs are there.
                    assert!(session.inputs().iter().any(|i| i.name() == "input"));
                    std::thread::current().name().map(str::to_string)
                })
                .await
                .expect("the threads are up");
            names.push(name.unwrap_or_default());
        }
        assert!(
            names.iter().all(|n| n.starts_with("hark-test-")),
            "{names:?}"
        );
        assert_eq!(t.done(), 6);
        // 6 x 50 ms on 2 threads: at least 150 ms, in which the runtime's
        // one thread went on ticking every 5 ms.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(150));
        let ticked = ticks.load(Ordering::Relaxed);
        assert!(ticked >= 10, "{ticked} ticks in {elapsed:?}");
        ticker.abort();
    }

    #[tokio::test]
    async fn more_jobs_than_the_queue_holds_wait_for_room_and_all_finish() {
        let t = Arc::new(threads(2, 1));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..16u64 {
            let t = Arc::clone(&t);
            set.spawn(async move { t.run(move |_| i * 2).await });
        }
        let mut got: Vec<u64> = set
            .join_all()
            .await
            .into_iter()
            .map(|r| r.expect("every job is run"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..16).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(t.done(), 16);
    }
}
