//! Starting a call: a connection's UUID, a call slot, the agent, the driver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use media_core::EndReason;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Phase, Shared, Slot, admit};
use crate::config::AgentSpec;
use crate::driver::{self, CallSetup, Leg, RtpLeg, SocketLeg};
use crate::recording::RecordingSetup;
use crate::registry::CallEnd;
use crate::store::{Lookup, Registration};

/// How long a call's registration lookup in the database may take before
/// the call goes to its listener's agent.
const REGISTRATION_LOOKUP: Duration = Duration::from_millis(300);

/// Runs one connection in its own task. A connection is a call only once it
/// has sent its UUID: until then it holds one of the `max_pending` slots
/// (so idle or silent connections cannot keep real calls out) and gets the
/// UUID timeout once. Then it takes a call slot; with none left (or while
/// draining), or with a UUID that is already in a call, it is refused with
/// AudioSocket hangup (0x00), the one server message that lets `AudioSocket()`
/// return into the dialplan (`res_audiosocket.c` hangs the caller up on any
/// other kind, 0xff included), and the refusal is recorded under its UUID.
pub(crate) fn start_call<S>(
    stream: S,
    peer: SocketAddr,
    listener: &str,
    shared: &Arc<Shared>,
    agent: usize,
    phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (pending, evicted) = shared.live.pending.wait(shared.config.max_pending);
    let span = info_span!("call", %listener, %peer, call_id = tracing::field::Empty);
    let shared = Arc::clone(shared);
    let listener = listener.to_string();
    tokio::spawn(
        async move {
            let mut stream = stream;
            let config = &shared.config;
            let identified = tokio::select! {
                found = driver::identify(&mut stream, config.max_payload, config.call.uuid_timeout) => found,
                _ = evicted => {
                    shared.live.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(max_pending = config.max_pending, "closing the oldest connection still waiting for its UUID: a newer one needs the room");
                    refuse(Leg::Socket(SocketLeg::new(stream, config.max_payload, Vec::new()))).await;
                    return;
                }
            };
            drop(pending);
            let (read, uuid) = match identified {
                Ok(found) => found,
                Err(reason) => {
                    warn!(%reason, "call ended abnormally");
                    return;
                }
            };
            let leg = Leg::Socket(SocketLeg::new(stream, config.max_payload, read));
            run_call(leg, uuid, peer, &listener, &shared, agent, phase).await;
        }
        .instrument(span),
    );
}

/// Runs a call whose transport already knows its identity (a SIP call's,
/// a Stasis channel's): as [`start_call`], without waiting for a UUID.
pub(crate) fn start_rtp_call(
    leg: RtpLeg,
    uuid: String,
    peer: SocketAddr,
    listener: &str,
    shared: &Arc<Shared>,
    agent: usize,
    phase: watch::Receiver<Phase>,
) {
    let span = info_span!("call", %listener, %peer, call_id = tracing::field::Empty);
    let shared = Arc::clone(shared);
    let listener = listener.to_string();
    tokio::spawn(
        async move {
            let leg: Leg<tokio::io::DuplexStream> = Leg::Rtp(Box::new(leg));
            run_call(leg, uuid, peer, &listener, &shared, agent, phase).await;
        }
        .instrument(span),
    );
}

/// Admits an identified call (a slot, its UUID unused) and runs it.
async fn run_call<S>(
    leg: Leg<S>,
    uuid: String,
    peer: SocketAddr,
    listener: &str,
    shared: &Arc<Shared>,
    agent: usize,
    phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    tracing::Span::current().record("call_id", tracing::field::display(&uuid));
    let lookup = registration(shared, &uuid).await;
    let slot = match admit(&shared.live, &uuid, &lookup) {
        Ok(slot) => slot,
        Err(refusal) => {
            shared.live.refused.fetch_add(1, Ordering::Relaxed);
            warn!(%listener, max_calls = config.max_calls, reason = refusal.as_str(), "refusing call");
            shared.record_refusal(&uuid, refusal, agent);
            refuse(leg).await;
            return;
        }
    };
    shared.live.accepted.fetch_add(1, Ordering::Relaxed);
    let registered = match lookup {
        Lookup::Registered(r) => Some(r),
        _ => None,
    };
    let caller = Identified {
        uuid,
        registration: registered,
        slot,
    };
    let outcome = answer(leg, peer, shared, agent, phase, caller).await;
    if matches!(outcome.reason, EndReason::Internal(_)) {
        warn!(reason = %outcome.reason, "call ended by an internal error");
    }
}

/// A call that is known by its UUID.
struct Identified {
    uuid: String,
    /// Its registration through the API, if any.
    registration: Option<Registration>,
    /// Its place on the node, held by the driver until the call ends.
    slot: Slot,
}

/// Reads the call's UUID, picks its agent (a registration's, else the
/// listener's) and runs the call.
async fn answer<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    leg: Leg<S>,
    peer: SocketAddr,
    shared: &Shared,
    listener_agent: usize,
    phase: watch::Receiver<Phase>,
    caller: Identified,
) -> driver::CallOutcome {
    let Identified {
        uuid,
        registration,
        slot,
    } = caller;
    let config = &shared.config;
    let agent = registration
        .as_ref()
        .and_then(|r| {
            let found = shared.agents.iter().find(|a| a.spec.name() == r.agent);
            if found.is_none() {
                warn!(
                    asked = %r.agent,
                    used = shared.agents[listener_agent].spec.name(),
                    "registered agent is not on any listener: the call gets the listener's agent"
                );
            }
            found
        })
        .unwrap_or(&shared.agents[listener_agent]);
    if let Some(r) = &registration {
        info!(agent = %agent.spec.name(), tenant = %r.tenant, "pre-registered call");
    }
    let spec = &agent.spec;
    let speech = shared.speech.as_ref();
    let recording = shared.recorder.as_ref().map(|recorder| {
        let voice = match spec {
            AgentSpec::Voice(v) => Some(v),
            _ => None,
        };
        RecordingSetup {
            recorder: recorder.clone(),
            tenant: registration
                .as_ref()
                .map(|r| r.tenant.clone())
                .or_else(|| config.store.as_ref().map(|s| s.tenant.clone()))
                .unwrap_or_default(),
            agent: spec.name().to_string(),
            caller_id: registration.as_ref().and_then(|r| r.caller_id.clone()),
            dnis: registration.as_ref().and_then(|r| r.dnis.clone()),
            metadata: registration.as_ref().and_then(|r| r.metadata.clone()),
            brain: agent.brain.clone(),
            script: voice.map(|v| v.chat.script.clone()),
            has_providers: voice.is_some_and(|v| !v.chat.providers.is_empty()),
            rules: Arc::clone(&shared.rules),
            registry: Arc::clone(&shared.registry),
            node: config.node.clone(),
            ends: shared.ends.clone(),
        }
    });
    let setup = CallSetup {
        call_config: config.call.clone(),
        agent: spec.build(),
        ears: speech.and_then(|s| s.ears(spec)),
        vad: speech.and_then(|s| s.vad_threads(spec)),
        transcriber: speech.and_then(|s| s.transcriber_for(spec)),
        mouth: speech.and_then(|s| s.mouth(spec)),
        turn: speech.and_then(|s| s.turn_check(spec)),
        brain: agent.brain.clone(),
        recording,
        place: Some(driver::Place::new(slot)),
    };
    let outcome = driver::drive(leg, peer, setup, phase).await;
    shared.registry.ended(
        &uuid,
        CallEnd {
            handoff: outcome.handoff.clone(),
            reason: outcome.reason.to_string(),
        },
    );
    outcome
}

/// What is known of `call_id`: its registration from memory, else (a
/// restart, another node) from the database, briefly; or that a call with
/// it already ran.
async fn registration(shared: &Shared, call_id: &str) -> Lookup {
    if let Some(r) = shared.registry.take(call_id) {
        return Lookup::Registered(r);
    }
    let Some(store) = shared.store.as_ref() else {
        return Lookup::Fresh;
    };
    // With the database away the lookup could only time out: a call never
    // waits on it (registrations made through this node are in memory).
    if shared
        .db
        .as_ref()
        .is_some_and(|d| !d.db_up.load(Ordering::Relaxed))
    {
        debug!("database away: no registration lookup");
        return Lookup::Fresh;
    }
    match tokio::time::timeout(REGISTRATION_LOOKUP, store.registration(call_id)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            debug!(error = %e, "registration lookup failed");
            Lookup::Fresh
        }
        Err(_) => {
            debug!("registration lookup timed out");
            Lookup::Fresh
        }
    }
}

/// Refuses a call. On a byte stream: AudioSocket hangup (0x00), then
/// close; Asterisk takes only hangup and audio from the server, and on 0x00
/// `AudioSocket()` returns and the dialplan goes on to its fallback. On an
/// RTP leg its signalling ends the call (SIP BYE).
async fn refuse<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(leg: Leg<S>) {
    let mut leg = leg;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = leg.send(media_core::Transmit::Hangup).await;
        leg.close(None).await;
    })
    .await;
}
