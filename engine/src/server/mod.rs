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
//! send AudioSocket hangup and close. The API task (if `[api]`) serves
//! until every call is over (`Stopped`), so `/readyz` reports the drain;
//! then the store's writer gets its last records and stops.
//!
//! Before a call's driver starts, its task reads the AudioSocket UUID and
//! looks it up among the calls registered through the API: a registered
//! call gets the registration's agent and tenant.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

pub(crate) use crate::admission::{Live, Phase};
use crate::admission::{Pending, Refusal, UuidBook};
use crate::api::{self, ApiState};
use crate::config::{AgentSpec, Config, LeadRules, Listener};
use crate::llm::UsageRecord;
use crate::registry::Registry;
use crate::speaking::Brain;
use crate::speech::Speech;
use crate::store::{
    AiRequest, EndsJournal, Orphans, Recorder, Store, StoreEvent, WriterHandle, WriterStats,
    now_ms, spawn_node_writer,
};

mod start;

pub(crate) use start::{start_call, start_rtp_call};

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

impl Shared {
    /// The index of the agent named `name`.
    pub(crate) fn agent_index(&self, name: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.spec.name() == name)
    }

    /// The name of agent `i` (an index from `agent_index` or a listener).
    pub(crate) fn agent_name(&self, i: usize) -> &str {
        self.agents
            .get(i)
            .map(|a| a.spec.name())
            .unwrap_or_default()
    }

    /// Records a refused call under its UUID: the dialplan (or an admin)
    /// reads `refused` and why from the API. A duplicate UUID is only
    /// logged: its row is the call in progress, which must stay intact.
    pub(crate) fn record_refusal(&self, uuid: &str, refusal: Refusal, listener_agent: usize) {
        if refusal == Refusal::DuplicateUuid {
            return;
        }
        let registered = self.registry.take(uuid);
        self.registry.set_outcome(
            uuid,
            crate::registry::Outcome {
                outcome: "refused".into(),
                handoff_target: None,
            },
        );
        let Some(recorder) = &self.recorder else {
            return;
        };
        let mut recorder = recorder.clone();
        let tenant = registered
            .as_ref()
            .map(|r| r.tenant.clone())
            .unwrap_or_else(|| self.default_tenant());
        // The agent the call would have had.
        let agent = registered
            .as_ref()
            .map(|r| r.agent.clone())
            .unwrap_or_else(|| self.agent_name(listener_agent).to_string());
        let at = now_ms();
        recorder.record(StoreEvent::CallStarted(crate::store::CallStart {
            call_id: uuid.to_string(),
            tenant: tenant.clone(),
            agent: agent.clone(),
            caller_id: registered.as_ref().and_then(|r| r.caller_id.clone()),
            dnis: registered.as_ref().and_then(|r| r.dnis.clone()),
            direction: "inbound".into(),
            start_ms: at,
            answer_ms: None,
            metadata: None,
            node: Some(self.config.node.clone()),
        }));
        recorder.record(StoreEvent::CallEnded(crate::store::CallEnd {
            call_id: uuid.to_string(),
            tenant,
            agent,
            end_ms: at,
            duration_ms: 0,
            outcome: "refused".into(),
            handoff_target: None,
            reason: Some(refusal.as_str().into()),
        }));
        tokio::spawn(async move { recorder.flush().await });
    }

    /// The tenant of calls nobody assigned.
    pub(crate) fn default_tenant(&self) -> String {
        self.config
            .store
            .as_ref()
            .map(|s| s.tenant.clone())
            .unwrap_or_else(|| "default".into())
    }
}

/// An agent calls can get: by listener, or by a registered UUID.
#[derive(Debug)]
struct AgentEntry {
    spec: AgentSpec,
    /// The model router, for voice agents.
    brain: Option<Arc<Brain>>,
}

/// What every accept loop shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    speech: Option<Arc<Speech>>,
    agents: Vec<AgentEntry>,
    pub(crate) live: Arc<Live>,
    pub(crate) registry: Arc<Registry>,
    store: Option<Store>,
    /// A recorder to clone for each call, if a store is configured.
    pub(crate) recorder: Option<Recorder>,
    /// Where call ends are made durable, if a store is configured.
    pub(crate) ends: Option<EndsJournal>,
    /// The writer's counters: whether the database is there.
    db: Option<Arc<WriterStats>>,
    rules: Arc<LeadRules>,
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

/// One listening socket and the agent its calls get by default.
#[derive(Debug)]
struct Bound {
    listener: Listener,
    tcp: TcpListener,
    /// Index into `Shared::agents`.
    agent: usize,
}

/// Usage records waiting to be logged and stored.
const USAGE_QUEUE: usize = 1_024;

/// How long a call's registration lookup in the database may take before
/// the call goes to its listener's agent.
pub(super) const REGISTRATION_LOOKUP: Duration = Duration::from_millis(300);

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
                match crate::stasis::Stasis::new(
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
                let sip =
                    crate::sip::Sip::new(sc, socket, Arc::clone(&shared), agent, phase_rx.clone());
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

/// Each call's kernel send buffer (the kernel doubles it): about 2 s of
/// 8 kHz audio. A peer that stops reading fills it (after its own receive
/// window) within seconds, so the driver's write timeout ends that call;
/// with the default, autotuned to megabytes, it took 109 s. Accepted
/// sockets inherit it from the listener.
const SEND_BUFFER: u32 = 32 * 1024;

/// A TCP listener on `address` whose calls get [`SEND_BUFFER`].
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(address)?;
    socket.listen(1024)
}

async fn accept_loop(bound: Bound, shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
    let Bound {
        listener,
        tcp,
        agent,
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
                start_call(stream, peer, &listener.name, &shared, agent, phase.clone());
            }
        }
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
