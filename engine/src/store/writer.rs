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

use super::ends::EndsJournal;
use super::spool::Spool;
use super::{Store, StoreError, StoreEvent};

/// Longest one attempt at the database may take; then the batch goes to
/// the spool. A database that is away may not refuse at once (a dropped
/// SYN, a pending migration that waits on its pool), and a call's events
/// must not sit in memory meanwhile.
const DB_ATTEMPT: Duration = Duration::from_secs(2);

/// How often an idle writer asks the database whether it is there, so
/// `/readyz` and the registration lookup know within seconds.
const HEALTH_EVERY: Duration = Duration::from_secs(2);

/// Calls a node left open when it stopped without ending them (a crash,
/// `kill -9`): closed as failed once the database is reached.
#[derive(Debug, Clone)]
pub struct Orphans {
    /// This node's name (`[server] node`).
    pub node: String,
    /// Calls started before this (epoch ms: this process's start) are the
    /// earlier run's.
    pub before_ms: i64,
}

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
    /// Whether the last attempt to reach the database did (false until
    /// the first one has).
    pub db_up: AtomicBool,
}

/// The running writer: its queue and its task.
#[derive(Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<StoreEvent>,
    stats: Arc<WriterStats>,
    task: JoinHandle<()>,
    close: watch::Sender<bool>,
    ends: Option<EndsJournal>,
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
        if self.task.await.is_ok()
            && let Some(ends) = self.ends
        {
            // Everything the calls recorded is in the database or the spool.
            let _ = tokio::task::spawn_blocking(move || ends.clear()).await;
        }
    }

    /// The journal that makes call ends durable, if this writer has one.
    pub fn ends(&self) -> Option<EndsJournal> {
        self.ends.clone()
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
    spawn(store, spool, queue, batch, retry, None)
}

/// [`spawn_writer`] for a daemon: also opens the ends journal beside the
/// spool (taking in what an earlier run left there) and closes the calls
/// this node left open, as failed with "node restarted".
pub fn spawn_node_writer(
    store: Store,
    spool: PathBuf,
    queue: usize,
    batch: usize,
    retry: Duration,
    orphans: Orphans,
) -> Result<WriterHandle, StoreError> {
    let (ends, moved) = EndsJournal::open(&spool)?;
    if moved > 0 {
        info!(
            ends = moved,
            "call ends journaled by an earlier run: moved to the spool"
        );
    }
    let mut w = spawn(store, spool, queue, batch, retry, Some(orphans))?;
    w.ends = Some(ends);
    Ok(w)
}

fn spawn(
    store: Store,
    spool: PathBuf,
    queue: usize,
    batch: usize,
    retry: Duration,
    orphans: Option<Orphans>,
) -> Result<WriterHandle, StoreError> {
    let spool = Spool::open(&spool)?;
    let stats = Arc::new(WriterStats::default());
    stats
        .spool_pending
        .store(spool.pending(), Ordering::Relaxed);
    // Up if it answered just now; the writer's first check says for sure.
    stats
        .db_up
        .store(store.reached_at_open(), Ordering::Relaxed);
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
            orphans,
        },
        rx,
        closing,
    ));
    Ok(WriterHandle {
        tx,
        stats,
        task,
        close,
        ends: None,
    })
}

struct Writer {
    store: Store,
    /// Always `Some` except while a blocking task holds it.
    spool: Option<Spool>,
    stats: Arc<WriterStats>,
    batch: usize,
    retry: Duration,
    /// Still to close, once the database is reached and the spool is empty.
    orphans: Option<Orphans>,
}

async fn run(
    mut w: Writer,
    mut rx: mpsc::Receiver<StoreEvent>,
    mut closing: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(w.batch);
    let mut closed = false;
    let mut next_retry = Instant::now();
    let mut next_health = Instant::now();
    let mut open = true;
    while open || !batch.is_empty() {
        let spooling = w.spool_pending() > 0;
        if spooling && Instant::now() >= next_retry {
            if w.replay().await {
                info!("database reachable: spool replayed");
                w.close_orphans().await;
            } else {
                next_retry = Instant::now() + w.retry;
            }
            continue;
        }
        if !spooling && open && Instant::now() >= next_health {
            w.check().await;
            next_health = Instant::now() + HEALTH_EVERY;
        }
        if open {
            let until = if spooling { next_retry } else { next_health };
            tokio::select! {
                n = rx.recv_many(&mut batch, w.batch) => {
                    if n == 0 {
                        open = false;
                    }
                }
                () = tokio::time::sleep_until(until) => {}
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
        // A database known to be away is not waited for: straight to the
        // spool, whose replay finds out when it is back.
        if w.spool_pending() == 0 && w.stats.db_up.load(Ordering::Relaxed) {
            match w.write(&events).await {
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

impl Writer {
    /// One bounded attempt at writing `events`.
    async fn write(&self, events: &[StoreEvent]) -> Result<Vec<(StoreEvent, String)>, sqlx::Error> {
        match tokio::time::timeout(DB_ATTEMPT, self.store.write_batch(events)).await {
            Ok(r) => r,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Asks the database whether it is there (and does the set-up owed
    /// since start-up); closes the orphans once it is.
    async fn check(&mut self) {
        let up = tokio::time::timeout(DB_ATTEMPT, async {
            self.store.ping().await && self.store.ready().await.is_ok()
        })
        .await
        .unwrap_or(false);
        let was = self.stats.db_up.swap(up, Ordering::Relaxed);
        if was && !up {
            warn!("database away: call records go to the spool until it returns");
        }
        if up {
            self.close_orphans().await;
        }
    }

    /// Closes the calls an earlier run of this node left open, once.
    async fn close_orphans(&mut self) {
        let Some(o) = self.orphans.clone() else {
            return;
        };
        if self.spool_pending() > 0 {
            return;
        }
        let closing = self
            .store
            .close_orphans(&o.node, o.before_ms, super::now_ms());
        match tokio::time::timeout(DB_ATTEMPT, closing).await {
            Ok(Ok(n)) => {
                if n > 0 {
                    warn!(
                        calls = n,
                        node = %o.node,
                        "calls left open by an earlier run of this node: closed as failed (node restarted)"
                    );
                }
                self.orphans = None;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot close orphaned calls yet"),
            Err(_) => tracing::debug!("closing orphaned calls timed out"),
        }
    }

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
            match self.write(&events).await {
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
