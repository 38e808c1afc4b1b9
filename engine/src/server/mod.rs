//! The server: start-up, listeners, graceful shutdown.
//!
//! It binds the `[[listener]]` sockets (and `[sip]`'s), loads the agents
//! and speech models into the admission state every transport shares, and
//! starts the transports (`transport::audiosocket` accept loops, the SIP
//! task, the Stasis controller), the API and the store's writer.
//!
//! # Concurrency
//! Each call runs in its own driver task holding a call slot (see
//! `admission`); a connection that finds none is refused with AudioSocket
//! hangup (0x00), so the dialplan goes on. Shutdown is a phase broadcast on
//! a `watch` channel: `Draining` stops the accept tasks (listeners close,
//! calls go on), and waiting for all permits to return is waiting for all
//! calls to end. If that takes longer than the drain timeout, `HangUp`
//! tells every driver to send AudioSocket hangup and close. The API task
//! (if `[api]`) serves until every call is over (`Stopped`), so `/readyz`
//! reports the drain; then the store's writer gets its last records and
//! stops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::admission::{AgentEntry, Live, Pending, Phase, Shared, UuidBook};
use crate::api::{self, ApiState};
use crate::config::{AgentSpec, Config};
use crate::llm::UsageRecord;
use crate::registry::Registry;
use crate::speaking::Brain;
use crate::speech::Speech;
use crate::store::{
    AiRequest, Orphans, Recorder, Store, StoreEvent, WriterHandle, now_ms, spawn_node_writer,
};
use crate::transport::audiosocket::{Bound, accept_loop, listen};

/// How long hung-up calls get to finish after the drain timeout.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

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
    /// The store could not be reached, migrated, or its spool opened.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The store's file or spool can never be written (a path under
    /// `/proc`, a read-only folder): not an outage to wait out.
    #[error("{0}")]
    Unwritable(crate::preflight::Problem),
    /// `[api]` needs `[store]`: the API reads what the store holds.
    #[error("[api] is configured without [store]: add [store] (e.g. url = \"sqlite://hark.db\")")]
    ApiWithoutStore,
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

/// A bound, not yet running, server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    bound: Vec<Bound>,
    /// Every model request's accounting, from all routers.
    usage: mpsc::Receiver<UsageRecord>,
    writer: Option<WriterHandle>,
    api: Option<TcpListener>,
    /// The `[sip]` socket, bound at start-up.
    sip: Option<tokio::net::UdpSocket>,
}

/// Usage records waiting to be logged and stored.
const USAGE_QUEUE: usize = 1_024;

/// How long shutdown waits for calls' last records (leads) before closing
/// the writer's queue.
const RECORDS_GRACE: Duration = Duration::from_secs(10);

impl Server {
    /// Loads models, connects the store (migrating it if configured),
    /// replays its spool, and binds every listener and the API.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        if let Some(p) = crate::preflight::store(&config).into_iter().next() {
            return Err(ServeError::Unwritable(p));
        }
        let speech = Speech::load(&config).await?;
        let (usage_tx, usage) = mpsc::channel(USAGE_QUEUE);
        let mut bound = Vec::with_capacity(config.listeners.len());
        // One router per agent, shared by its listeners' calls.
        let mut agents: Vec<AgentEntry> = Vec::new();
        for l in &config.listeners {
            let agent = match agents.iter().position(|a| a.spec.name() == l.agent.name()) {
                Some(i) => i,
                None => {
                    let brain = match &l.agent {
                        AgentSpec::Voice(v) => Some(
                            Brain::for_agent(&config, v, Some(usage_tx.clone())).map_err(
                                |reason| ServeError::Brain {
                                    agent: v.name.clone(),
                                    reason,
                                },
                            )?,
                        ),
                        _ => None,
                    };
                    agents.push(AgentEntry {
                        spec: l.agent.clone(),
                        brain,
                    });
                    agents.len() - 1
                }
            };
            let tcp = listen(l.address).map_err(|source| ServeError::Bind {
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
                agent,
            });
        }
        let (store, writer) = match &config.store {
            None => (None, None),
            Some(sc) => {
                let boot_ms = now_ms();
                let store = Store::open(&sc.url, sc.migrate, &sc.tenant).await?;
                let writer = spawn_node_writer(
                    store.clone(),
                    sc.spool.clone(),
                    sc.queue,
                    sc.batch,
                    sc.retry,
                    Orphans {
                        node: config.node.clone(),
                        before_ms: boot_ms,
                    },
                )?;
                (Some(store), Some(writer))
            }
        };
        let api =
            match &config.api {
                Some(a) if store.is_some() => Some(api::bind(a.address).await.map_err(
                    |source| ServeError::Bind {
                        name: "api".into(),
                        address: a.address,
                        source,
                    },
                )?),
                Some(_) => return Err(ServeError::ApiWithoutStore),
                None => None,
            };
        let sip =
            match &config.sip {
                Some(sc) => Some(tokio::net::UdpSocket::bind(sc.listen).await.map_err(
                    |source| ServeError::Bind {
                        name: "sip".into(),
                        address: sc.listen,
                        source,
                    },
                )?),
                None => None,
            };
        let max = config.max_calls;
        let live = Arc::new(Live {
            calls: Arc::new(Semaphore::new(max)),
            max,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            shutdown_hangups: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            pending: Arc::new(Pending::default()),
            active: AtomicUsize::new(0),
            in_call: Mutex::new(UuidBook::default()),
        });
        let shared = Shared {
            rules: Arc::new(config.leads.clone()),
            config: Arc::new(config),
            speech,
            agents,
            live,
            registry: Arc::new(Registry::default()),
            store,
            recorder: writer.as_ref().map(WriterHandle::recorder),
            ends: writer.as_ref().and_then(WriterHandle::ends),
            db: writer.as_ref().map(WriterHandle::stats),
        };
        Ok(Server {
            shared: Arc::new(shared),
            bound,
            usage,
            writer,
            api,
            sip,
        })
    }

    /// The listeners' names and bound addresses.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.bound
            .iter()
            .map(|b| (b.listener.name.clone(), b.listener.address))
            .collect()
    }

    /// Where SIP is read, if `[sip]` is configured.
    pub fn sip_addr(&self) -> Option<SocketAddr> {
        self.sip.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Where the API listens, if it is enabled.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> ServeReport {
        let Server {
            shared,
            bound,
            usage,
            writer,
            api,
            sip,
        } = self;
        let max = shared.config.max_calls;
        let live = Arc::clone(&shared.live);
        let calls = Arc::clone(&live.calls);
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let mut accepting = JoinSet::new();
        let usage_task = tokio::spawn(record_usage(usage, shared.recorder.clone()));
        let api_task = match (api, &shared.store, &shared.config.api) {
            (Some(listener), Some(store), Some(ac)) => {
                let state = Arc::new(ApiState {
                    store: store.clone(),
                    config: ac.clone(),
                    agents: shared
                        .agents
                        .iter()
                        .map(|a| a.spec.name().to_string())
                        .collect(),
                    registry: Arc::clone(&shared.registry),
                    live: Arc::clone(&live),
                    writer: writer.as_ref().map(WriterHandle::stats),
                    limiter: api::Limiter::new(ac.rate_per_sec, ac.burst),
                });
                let address = listener.local_addr().unwrap_or(ac.address);
                info!(%address, "api listening");
                let mut stop = phase_rx.clone();
                Some(tokio::spawn(api::serve(listener, state, async move {
                    // The API stays up while calls drain (readyz says so).
                    let _ = stop.wait_for(|p| *p == Phase::Stopped).await;
                })))
            }
            _ => None,
        };
        let stasis_task = match &shared.config.ari {
            Some(ac) => {
                // Bound listeners are in the order of the configuration.
                let (agent, address) = bound
                    .get(ac.listener)
                    .map(|b| (b.agent, b.listener.address))
                    .unwrap_or((0, ([127, 0, 0, 1], 0).into()));
                match crate::transport::stasis::Stasis::new(
                    ac,
                    Arc::clone(&shared),
                    agent,
                    address,
                    phase_rx.clone(),
                ) {
                    Ok(s) => Some(tokio::spawn(s.run())),
                    Err(e) => {
                        warn!("stasis mode cannot start: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let sip_task = match (sip, &shared.config.sip) {
            (Some(socket), Some(sc)) => {
                let agent = bound.get(sc.listener).map_or(0, |b| b.agent);
                let sip = crate::transport::sip::Sip::new(
                    sc,
                    socket,
                    Arc::clone(&shared),
                    agent,
                    phase_rx.clone(),
                );
                Some(tokio::spawn(sip.run()))
            }
            _ => None,
        };
        for bound in bound {
            let listener = &bound.listener;
            info!(listener = %listener.name, address = %listener.address, agent = listener.agent.name(), "listening");
            accepting.spawn(accept_loop(bound, Arc::clone(&shared), phase_rx.clone()));
        }
        drop(phase_rx);

        shutdown.await;
        live.draining.store(true, Ordering::Relaxed);
        let _ = phase_tx.send(Phase::Draining);
        while accepting.join_next().await.is_some() {}
        let active = live.active();
        info!(
            active,
            timeout_ms = shared.config.drain_timeout.as_millis() as u64,
            "shutting down: no new calls, waiting for calls in progress"
        );
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        if tokio::time::timeout(shared.config.drain_timeout, calls.acquire_many(all))
            .await
            .is_err()
        {
            let left = live.active();
            warn!(
                calls = left,
                "drain timeout reached: hanging up the remaining calls"
            );
            live.shutdown_hangups
                .fetch_add(left as u64, Ordering::Relaxed);
            let _ = phase_tx.send(Phase::HangUp);
            if tokio::time::timeout(HANGUP_GRACE, calls.acquire_many(all))
                .await
                .is_err()
            {
                warn!(
                    calls = live.active(),
                    "calls did not end after hangup; exiting anyway"
                );
            }
        }
        let _ = phase_tx.send(Phase::Stopped);
        if let Some(t) = api_task {
            let _ = t.await;
        }
        if let Some(t) = stasis_task {
            let _ = t.await;
        }
        if let Some(t) = sip_task {
            let _ = t.await;
        }
        // Every call is over; the routers (and with them the usage queue)
        // go when the last reference to the agents does. A call that would
        // not end, or a lead still asking its model, must not hold up the
        // exit for good.
        drop(shared);
        if tokio::time::timeout(RECORDS_GRACE, usage_task)
            .await
            .is_err()
        {
            warn!("usage records still arriving at exit: the writer takes what came in time");
        }
        if let Some(w) = writer {
            w.finish(RECORDS_GRACE).await;
        }
        let report = ServeReport {
            accepted: live.accepted.load(Ordering::Relaxed),
            refused: live.refused.load(Ordering::Relaxed),
            hung_up_at_shutdown: live.shutdown_hangups.load(Ordering::Relaxed),
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

/// Logs every model request's accounting and records it in the store.
async fn record_usage(mut usage: mpsc::Receiver<UsageRecord>, mut recorder: Option<Recorder>) {
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
        if let Some(rec) = &mut recorder {
            let (provider, model) = r
                .provider
                .split_once('/')
                .map(|(p, m)| (p.to_string(), m.to_string()))
                .unwrap_or_else(|| (r.provider.clone(), String::new()));
            let outcome = match &r.outcome {
                crate::llm::Outcome::Ok => "ok".to_string(),
                crate::llm::Outcome::Cancelled => "cancelled".to_string(),
                crate::llm::Outcome::Failed(why) => {
                    format!("failed: {}", why.chars().take(24).collect::<String>())
                }
            };
            rec.record(StoreEvent::AiRequest(AiRequest {
                id: uuid::Uuid::new_v4().to_string(),
                tenant: r.tenant,
                call_id: r.call,
                provider,
                model,
                tokens_in: i64::from(r.input_tokens),
                tokens_out: i64::from(r.output_tokens),
                cost: r.cost,
                first_token_ms: r.time_to_first_token.map(|d| d.as_millis() as i64),
                total_ms: r.total.as_millis() as i64,
                outcome,
                at_ms: now_ms(),
            }));
        }
    }
    if let Some(rec) = &mut recorder {
        rec.flush().await;
    }
}
