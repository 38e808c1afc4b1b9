//! The AudioSocket server: listeners, the call cap, graceful shutdown.
//!
//! # Concurrency
//! One accept task per listener. Each accepted call takes a permit from one
//! semaphore of `max_calls` permits and runs in its own driver task holding
//! that permit; a connection that finds no permit is refused with an
//! AudioSocket error frame. Shutdown is a phase broadcast on a `watch`
//! channel: `Draining` stops the accept tasks (listeners close, calls go on),
//! and waiting for all permits to return is waiting for all calls to end. If
//! that takes longer than the drain timeout, `HangUp` tells every driver to
//! send AudioSocket hangup and close.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use media_core::EndReason;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use crate::config::{AgentSpec, Config, Listener};
use crate::driver::{self, CallSetup};
use crate::llm::UsageRecord;
use crate::speaking::Brain;
use crate::speech::Speech;

/// The application-specific AudioSocket error code hark sends when it refuses
/// a call because it is at `max_calls`.
pub const ERROR_AT_CAPACITY: u8 = 0x10;

/// How long hung-up calls get to finish after the drain timeout.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// Where the server is in its life; drivers and accept loops watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Stop accepting; calls in progress go on.
    Draining,
    /// Hang up every call now.
    HangUp,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A model or the transcriber could not be loaded.
    #[error("cannot load speech: {0}")]
    Speech(#[from] crate::speech::SpeechError),
    /// A voice agent's model router could not be built.
    #[error("agent {agent:?}: {reason}")]
    Brain {
        /// The agent.
        agent: String,
        /// Why.
        reason: String,
    },
    /// A listener's address could not be bound.
    #[error("listener {name:?} cannot listen on {address}: {source}")]
    Bind {
        /// The listener's name.
        name: String,
        /// Its address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Totals over the server's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeReport {
    /// Calls accepted.
    pub accepted: u64,
    /// Calls refused at capacity.
    pub refused: u64,
    /// Calls still up at the drain timeout and hung up by hark.
    pub hung_up_at_shutdown: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    shutdown_hangups: AtomicU64,
}

/// A bound, not yet running, server.
#[derive(Debug)]
pub struct Server {
    config: Arc<Config>,
    bound: Vec<Bound>,
    speech: Option<Arc<Speech>>,
    /// Every model request's accounting, from all routers.
    usage: mpsc::Receiver<UsageRecord>,
}

/// One listening socket and what its calls get.
#[derive(Debug)]
struct Bound {
    listener: Listener,
    tcp: TcpListener,
    /// The agent's model router, for voice agents.
    brain: Option<Arc<Brain>>,
}

/// Usage records waiting to be logged (and, later, stored).
const USAGE_QUEUE: usize = 1_024;

impl Server {
    /// Binds every configured listener.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        let speech = Speech::load(&config).await?;
        let (usage_tx, usage) = mpsc::channel(USAGE_QUEUE);
        let mut bound = Vec::with_capacity(config.listeners.len());
        // One router per agent, shared by its listeners' calls.
        let mut brains: Vec<(String, Arc<Brain>)> = Vec::new();
        for l in &config.listeners {
            let brain = match &l.agent {
                AgentSpec::Voice(v) => match brains.iter().find(|(n, _)| *n == v.name) {
                    Some((_, b)) => Some(Arc::clone(b)),
                    None => {
                        let b = Brain::for_agent(&config, v, Some(usage_tx.clone())).map_err(
                            |reason| ServeError::Brain {
                                agent: v.name.clone(),
                                reason,
                            },
                        )?;
                        brains.push((v.name.clone(), Arc::clone(&b)));
                        Some(b)
                    }
                },
                _ => None,
            };
            let tcp = TcpListener::bind(l.address)
                .await
                .map_err(|source| ServeError::Bind {
                    name: l.name.clone(),
                    address: l.address,
                    source,
                })?;
            let mut l = l.clone();
            // Port 0 picks a free port: report the real one.
            if let Ok(addr) = tcp.local_addr() {
                l.address = addr;
            }
            bound.push(Bound {
                listener: l,
                tcp,
                brain,
            });
        }
        Ok(Server {
            config: Arc::new(config),
            bound,
            speech,
            usage,
        })
    }

    /// The listeners' names and bound addresses.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.bound
            .iter()
            .map(|b| (b.listener.name.clone(), b.listener.address))
            .collect()
    }

    /// Serves until `shutdown` completes, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> ServeReport {
        let max = self.config.max_calls;
        let calls = Arc::new(Semaphore::new(max));
        let counters = Arc::new(Counters::default());
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let mut accepting = JoinSet::new();
        tokio::spawn(log_usage(self.usage));
        for bound in self.bound {
            let listener = &bound.listener;
            info!(listener = %listener.name, address = %listener.address, agent = listener.agent.name(), "listening");
            accepting.spawn(accept_loop(
                bound,
                Arc::clone(&self.config),
                self.speech.clone(),
                Arc::clone(&calls),
                Arc::clone(&counters),
                phase_rx.clone(),
            ));
        }
        drop(phase_rx);

        shutdown.await;
        let _ = phase_tx.send(Phase::Draining);
        while accepting.join_next().await.is_some() {}
        let active = max - calls.available_permits();
        info!(
            active,
            timeout_ms = self.config.drain_timeout.as_millis() as u64,
            "shutting down: no new calls, waiting for calls in progress"
        );
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        if tokio::time::timeout(self.config.drain_timeout, calls.acquire_many(all))
            .await
            .is_err()
        {
            let left = max - calls.available_permits();
            warn!(
                calls = left,
                "drain timeout reached: hanging up the remaining calls"
            );
            counters
                .shutdown_hangups
                .fetch_add(left as u64, Ordering::Relaxed);
            let _ = phase_tx.send(Phase::HangUp);
            if tokio::time::timeout(HANGUP_GRACE, calls.acquire_many(all))
                .await
                .is_err()
            {
                warn!(
                    calls = max - calls.available_permits(),
                    "calls did not end after hangup; exiting anyway"
                );
            }
        }
        let report = ServeReport {
            accepted: counters.accepted.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            hung_up_at_shutdown: counters.shutdown_hangups.load(Ordering::Relaxed),
        };
        info!(
            accepted = report.accepted,
            refused = report.refused,
            hung_up = report.hung_up_at_shutdown,
            "stopped"
        );
        report
    }
}

async fn accept_loop(
    bound: Bound,
    config: Arc<Config>,
    speech: Option<Arc<Speech>>,
    calls: Arc<Semaphore>,
    counters: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
) {
    let Bound {
        listener,
        tcp,
        brain,
    } = bound;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() != Phase::Running {
                    return;
                }
            }
            accepted = tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        warn!(listener = %listener.name, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Frames are small and time-critical.
                let _ = stream.set_nodelay(true);
                let Ok(permit) = Arc::clone(&calls).try_acquire_owned() else {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(listener = %listener.name, %peer, max_calls = config.max_calls, "at capacity: refusing call");
                    tokio::spawn(refuse(stream));
                    continue;
                };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                let span = info_span!("call", listener = %listener.name, %peer, call_id = tracing::field::Empty);
                let setup = CallSetup {
                    call_config: config.call.clone(),
                    agent: listener.agent.build(),
                    ears: speech.as_ref().and_then(|s| s.ears(&listener.agent)),
                    transcriber: speech.as_ref().and_then(|s| s.transcriber_for(&listener.agent)),
                    mouth: speech.as_ref().and_then(|s| s.mouth(&listener.agent)),
                    brain: brain.clone(),
                    max_payload: config.max_payload,
                };
                let phase = phase.clone();
                tokio::spawn(
                    async move {
                        let outcome = driver::drive(stream, peer, setup, phase).await;
                        drop(permit);
                        if matches!(outcome.reason, EndReason::Internal(_)) {
                            warn!(reason = %outcome.reason, "call ended by an internal error");
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }
}

/// Logs every model request's accounting (the store takes them later).
async fn log_usage(mut usage: mpsc::Receiver<UsageRecord>) {
    while let Some(r) = usage.recv().await {
        info!(
            tenant = %r.tenant,
            provider = %r.provider,
            tokens_in = r.input_tokens,
            tokens_out = r.output_tokens,
            cost = r.cost,
            first_token_ms = r.time_to_first_token.map(|d| d.as_millis() as u64),
            total_ms = r.total.as_millis() as u64,
            outcome = ?r.outcome,
            "ai usage"
        );
    }
}

/// Tells an over-capacity caller no: an AudioSocket error frame, then close.
async fn refuse(mut stream: TcpStream) {
    let frame = [0xff, 0x00, 0x01, ERROR_AT_CAPACITY];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&frame).await?;
        stream.shutdown().await
    })
    .await;
}
