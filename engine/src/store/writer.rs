//! The writer task: the only writer of call events.
//!
//! # Concurrency
//! Calls hold a [`Recorder`], which hands events to this task through one
//! bounded queue with `try_send`: a call never waits on the database. When
//! the queue is full, the recorder keeps the call's events in order and
//! offers them again with the next one; at the call's end it waits for
//! room (the media is over by then). The task takes events in batches.
//! While the database answers, a batch is one transaction. When it does not,
//! the batch goes to the [`Spool`] (fsync'd), and so does every later batch,
//! so order is kept; every `retry` the task replays the spool and, once it
//! is empty, writes to the database again. File I/O runs on the blocking
//! pool, never on a runtime worker.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::spool::Spool;
use super::{Store, StoreError, StoreEvent};

/// Counters of the writer, for `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events written to the database (including replayed ones).
    pub written: AtomicU64,
    /// Events that went to the spool.
    pub spooled: AtomicU64,
    /// Events the database refused (kept in the rejected file).
    pub rejected: AtomicU64,
    /// Events in the spool now.
    pub spool_pending: AtomicU64,
    /// Whether the last attempt to write reached the database.
    pub db_up: AtomicBool,
}

/// The running writer: its queue and its task.
#[derive(Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<StoreEvent>,
    stats: Arc<WriterStats>,
    task: JoinHandle<()>,
    close: watch::Sender<bool>,
}

/// A call's (or any producer's) way to record events without waiting.
/// A clone shares the queue but not the events held back.
#[derive(Debug)]
pub struct Recorder {
    tx: mpsc::Sender<StoreEvent>,
    /// Events that found the queue full, oldest first.
    held: VecDeque<StoreEvent>,
}

impl Clone for Recorder {
    fn clone(&self) -> Self {
        Recorder {
            tx: self.tx.clone(),
            held: VecDeque::new(),
        }
    }
}

impl Recorder {
    /// Queues `event`, or holds it (in order) if the queue is full.
    pub fn record(&mut self, event: StoreEvent) {
        self.held.push_back(event);
        while let Some(e) = self.held.pop_front() {
            match self.tx.try_send(e) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(e)) => {
                    self.held.push_front(e);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(e)) => {
                    warn!(event = ?e, "store writer is gone: event not recorded");
                    return;
                }
            }
        }
    }

    /// Sends what is held, waiting for room. Call it when the call is over.
    pub async fn flush(&mut self) {
        while let Some(e) = self.held.pop_front() {
            if let Err(e) = self.tx.send(e).await {
                warn!(event = ?e.0, "store writer is gone: event not recorded");
                return;
            }
        }
    }

    /// Events held because the queue was full.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl WriterHandle {
    /// A new recorder feeding this writer.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            tx: self.tx.clone(),
            held: VecDeque::new(),
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Waits up to `grace` for every recorder to be dropped, then stops
    /// taking events, writes (or spools) what is queued, and waits for the
    /// task. A recorder still alive after `grace` finds the queue closed
    /// (and logs what it could not record).
    pub async fn finish(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.tx.strong_count() > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(self.tx);
        let _ = self.close.send(true);
        let _ = self.task.await;
    }
}

/// Opens the spool (replaying it first if it holds events from an earlier
/// run) and starts the writer.
pub fn spawn_writer(
    store: Store,
    spool: PathBuf,
    queue: usize,
    batch: usize,
    retry: Duration,
) -> Result<WriterHandle, StoreError> {
    let spool = Spool::open(&spool)?;
    let stats = Arc::new(WriterStats::default());
    stats
        .spool_pending
        .store(spool.pending(), Ordering::Relaxed);
    stats.db_up.store(true, Ordering::Relaxed);
    if spool.pending() > 0 {
        info!(events = spool.pending(), spool = %spool.path().display(), "spool holds events from an earlier run: replaying");
    }
    let (tx, rx) = mpsc::channel(queue);
    let (close, closing) = watch::channel(false);
    let task = tokio::spawn(run(
        Writer {
            store,
            spool: Some(spool),
            stats: Arc::clone(&stats),
            batch: batch.max(1),
            retry,
        },
        rx,
        closing,
    ));
    Ok(WriterHandle {
        tx,
        stats,
        task,
        close,
    })
}

struct Writer {
    store: Store,
    /// Always `Some` except while a blocking task holds it.
    spool: Option<Spool>,
    stats: Arc<WriterStats>,
    batch: usize,
    retry: Duration,
}

async fn run(
    mut w: Writer,
    mut rx: mpsc::Receiver<StoreEvent>,
    mut closing: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(w.batch);
    let mut closed = false;
    let mut next_retry = Instant::now();
    let mut open = true;
    while open || !batch.is_empty() {
        let spooling = w.spool_pending() > 0;
        if spooling && Instant::now() >= next_retry {
            if w.replay().await {
                info!("database reachable: spool replayed");
            } else {
                next_retry = Instant::now() + w.retry;
            }
            continue;
        }
        if open {
            let until = if spooling { Some(next_retry) } else { None };
            tokio::select! {
                n = rx.recv_many(&mut batch, w.batch) => {
                    if n == 0 {
                        open = false;
                    }
                }
                () = sleep_until(until) => {}
                // Shutdown: take no new events, drain what is queued.
                _ = closing.wait_for(|c| *c), if !closed => {
                    closed = true;
                    rx.close();
                }
            }
        }
        if batch.is_empty() {
            if !open && w.spool_pending() > 0 {
                // Shutting down mid-outage: one last try, then the spool
                // waits for the next start.
                if !w.replay().await {
                    warn!(
                        events = w.spool_pending(),
                        "database still away at shutdown: events stay in the spool for the next start"
                    );
                }
                break;
            }
            continue;
        }
        let events: Vec<StoreEvent> = std::mem::take(&mut batch);
        if w.spool_pending() == 0 {
            match w.store.write_batch(&events).await {
                Ok(rejected) => {
                    w.stats.db_up.store(true, Ordering::Relaxed);
                    w.count_written(events.len() - rejected.len());
                    w.reject(rejected).await;
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, events = events.len(), "database away: spooling events");
                    w.stats.db_up.store(false, Ordering::Relaxed);
                    next_retry = Instant::now() + w.retry;
                }
            }
        }
        w.spool_append(events).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Writer {
    fn spool_pending(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::pending)
    }

    fn count_written(&self, n: usize) {
        self.stats.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Runs `f` on the spool on the blocking pool.
    async fn with_spool<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let mut spool = self.spool.take()?;
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut spool);
            (spool, r)
        })
        .await
        {
            Ok((spool, r)) => {
                self.stats
                    .spool_pending
                    .store(spool.pending(), Ordering::Relaxed);
                self.spool = Some(spool);
                Some(r)
            }
            // Only a panic inside `f` gets here; the spool file itself is intact.
            Err(e) => {
                warn!("spool task failed: {e}");
                None
            }
        }
    }

    async fn spool_append(&mut self, events: Vec<StoreEvent>) {
        let n = events.len() as u64;
        let mut events = Some(events);
        loop {
            let batch = events.take().unwrap_or_default();
            match self
                .with_spool(move |s| s.append(&batch).map_err(|e| (e, batch)))
                .await
            {
                Some(Ok(())) => {
                    self.stats.spooled.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Some(Err((e, batch))) => {
                    // A full or broken disk: keep the events in memory and
                    // try again rather than drop them.
                    warn!(error = %e, "cannot write the spool: retrying in 1 s");
                    events = Some(batch);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            }
        }
    }

    /// Replays the spool until it is empty (`true`) or the database fails.
    async fn replay(&mut self) -> bool {
        let max = self.batch;
        loop {
            let Some(Ok((lines, offset))) = self.with_spool(move |s| s.peek(max)).await else {
                return false;
            };
            let n = lines.len() as u64;
            if n == 0 {
                // Nothing left but a stale offset: reset the file.
                let _ = self.with_spool(move |s| s.advance(offset, 0)).await;
                return true;
            }
            let mut events = Vec::with_capacity(lines.len());
            let mut unreadable = Vec::new();
            for l in lines {
                match l {
                    Ok(e) => events.push(e),
                    Err(line) => unreadable.push(line),
                }
            }
            match self.store.write_batch(&events).await {
                Ok(rejected) => {
                    self.stats.db_up.store(true, Ordering::Relaxed);
                    self.count_written(events.len() - rejected.len());
                    self.reject(rejected).await;
                    for line in unreadable {
                        self.reject_line(line, "unreadable spool line".into()).await;
                    }
                    let done = self
                        .with_spool(move |s| s.advance(offset, n).map(|()| s.pending()))
                        .await;
                    match done {
                        Some(Ok(0)) => return true,
                        Some(Ok(_)) => {}
                        _ => return false,
                    }
                }
                Err(e) => {
                    self.stats.db_up.store(false, Ordering::Relaxed);
                    tracing::debug!(error = %e, "database still away");
                    return false;
                }
            }
        }
    }

    async fn reject(&mut self, rejected: Vec<(StoreEvent, String)>) {
        for (event, why) in rejected {
            warn!(error = %why, event = ?event, "database refused an event: kept in the rejected file");
            let line = serde_json::to_string(&event).unwrap_or_default();
            self.reject_line(line, why).await;
        }
    }

    /// Appends one line to `<spool>.rejected`: set aside, never lost.
    async fn reject_line(&mut self, line: String, why: String) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        let Some(spool) = &self.spool else { return };
        let mut path = spool.path().as_os_str().to_owned();
        path.push(".rejected");
        let _ = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let record = serde_json::json!({ "error": why, "event": line });
            writeln!(f, "{record}")?;
            f.sync_data()
        })
        .await;
    }
}
