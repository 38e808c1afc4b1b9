//! Stasis mode: hark drives calls through the Asterisk REST Interface.
//!
//! When a channel enters hark's Stasis application, a session answers it,
//! creates a mixing bridge and an external media channel that carries the
//! call's audio to hark (AudioSocket to one of hark's listeners with a
//! fresh UUID, or RTP to a port hark opens), puts both channels in the
//! bridge, and the call runs like any AudioSocket call: same driver, same
//! agent. The UUID is registered ahead, like a call registered through the
//! API, so the call gets the agent and tenant the channel asked for
//! (`Stasis(hark,agent=sales)` or the channel variables `HARK_AGENT` and
//! `HARK_TENANT`) and its caller id, extension and ARI channel are stored.
//!
//! When the agent hands off, the caller leaves the bridge and continues in
//! the dialplan at `[ari] handoff_*`, with `HARK_HANDOFF_TARGET` set. When
//! either side hangs up, the session hangs up the other channels and
//! destroys the bridge. When the set-up fails, the caller continues in the
//! dialplan at the next priority with `HARK_OUTCOME=failed`, and the call
//! is stored as failed with the reason.
//!
//! # Concurrency
//! One controller task reads the events websocket (reconnected by
//! `ari-client`) and routes each event to the session of its channel
//! through a small bounded channel; it never waits on a session. One task
//! per session makes that call's REST requests in order. Audio never
//! passes through either: it flows between Asterisk and the call's driver.
//! Asterisk sends a media channel's StasisStart only after answering the
//! request that created it, and bridges only channels in the application;
//! the controller tells the session when it comes through a oneshot made
//! with the session, before the session asks for the channel, so the
//! event cannot pass unseen.
//! After a websocket reconnect the controller asks every session to check
//! its channels, since events sent while the socket was down are lost.

mod rtp;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ari_client::{AriConfig, Client, Delivery, DialplanTarget, Event, Events, Reconnect};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::admission::{Phase, Shared};
use crate::config::StasisConfig;

/// Channel ids hark gives external media channels start with this: an
/// unknown one entering the application is left over from an earlier run.
const MEDIA_PREFIX: &str = "hark-em-";
/// Bridge ids start with this.
const BRIDGE_PREFIX: &str = "hark-b-";
/// Notices waiting for one session.
const SESSION_QUEUE: usize = 16;

/// What the controller tells a session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Notice {
    /// This channel left the application, hung up or was destroyed.
    Gone(String),
    /// The websocket was down for a while: check the channels by REST.
    Check,
}

/// Why Stasis mode could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum StasisError {
    /// The ARI URL or client could not be set up.
    #[error("ari: {0}")]
    Client(#[from] ari_client::AriError),
}

/// Everything sessions share.
#[derive(Debug)]
struct Ctx {
    config: StasisConfig,
    client: Client,
    shared: Arc<Shared>,
    /// The agent a call gets when it asks for none (the listener's).
    default_agent: usize,
    /// Where Asterisk connects AudioSocket media: `[ari] media_host`, else
    /// the listener's bound address.
    media_host: String,
    /// The server's phase, for calls started on RTP legs.
    phase: watch::Receiver<Phase>,
}

/// A running Stasis controller, not yet started.
#[derive(Debug)]
pub(crate) struct Stasis {
    ctx: Arc<Ctx>,
    events: AriConfig,
}

impl Stasis {
    /// Checks the settings and builds the REST client. `default_agent` is
    /// the index of `[ari] listener`'s agent.
    pub(crate) fn new(
        config: &StasisConfig,
        shared: Arc<Shared>,
        default_agent: usize,
        listener: std::net::SocketAddr,
        phase: watch::Receiver<Phase>,
    ) -> Result<Stasis, StasisError> {
        let events = AriConfig::new(
            &config.url,
            config.username.clone(),
            config.password.expose(),
            config.app.clone(),
        )?;
        let client = Client::new(events.clone())?;
        Ok(Stasis {
            ctx: Arc::new(Ctx {
                config: config.clone(),
                client,
                shared,
                default_agent,
                media_host: config
                    .media_host
                    .clone()
                    .unwrap_or_else(|| listener.to_string()),
                phase,
            }),
            events,
        })
    }

    /// Runs until the server has stopped: routes events to sessions and
    /// starts a session per new channel while the server takes calls.
    pub(crate) async fn run(self) {
        let ctx = self.ctx;
        let mut phase = ctx.phase.clone();
        let mut events =
            Events::connect(self.events, ctx.config.events_queue, Reconnect::default());
        let mut sessions: HashMap<String, mpsc::Sender<Notice>> = HashMap::new();
        // Media channels not yet in the application, by id, and the
        // session waiting for their StasisStart.
        let mut entering: HashMap<String, oneshot::Sender<()>> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::channel::<[String; 2]>(64);
        info!(url = %ctx.config.url, app = %ctx.config.app, "stasis mode: connecting to ARI");
        loop {
            tokio::select! {
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Stopped {
                        break;
                    }
                }
                Some(ids) = done_rx.recv() => {
                    for id in ids {
                        entering.remove(&id);
                        sessions.remove(&id);
                    }
                }
                delivery = events.recv() => match delivery {
                    None => break,
                    Some(Delivery::Connected { down_for: None, .. }) => {
                        info!("ARI events connected");
                    }
                    Some(Delivery::Connected { down_for: Some(gap), .. }) => {
                        info!(down_ms = gap.as_millis() as u64, calls = sessions.len() / 2, "ARI events back: checking calls in progress");
                        for tx in sessions.values() {
                            let _ = tx.try_send(Notice::Check);
                        }
                    }
                    Some(Delivery::Disconnected { reason }) => {
                        warn!(%reason, calls = sessions.len() / 2, "ARI events lost; calls go on, reconnecting");
                    }
                    Some(Delivery::Malformed(e)) => debug!("ARI message skipped: {e}"),
                    Some(Delivery::Event(e)) => {
                        route(&ctx, *e, &mut sessions, &mut entering, &done_tx);
                    }
                    Some(_) => {}
                },
            }
        }
        // Every call's media is over, but a session may still be sending
        // its caller back to the dialplan (a call hung up by the shutdown
        // goes on there, as an AudioSocket caller does on 0x00): give the
        // sessions a moment before the process goes.
        let grace = tokio::time::sleep(SESSIONS_GRACE);
        tokio::pin!(grace);
        while !sessions.is_empty() {
            tokio::select! {
                Some(ids) = done_rx.recv() => {
                    for id in ids {
                        sessions.remove(&id);
                    }
                }
                () = &mut grace => {
                    warn!(calls = sessions.len() / 2, "stasis sessions still busy at exit");
                    break;
                }
            }
        }
        info!("stasis mode stopped");
    }
}

/// Hands an event to its session, or starts one for a new channel.
fn route(
    ctx: &Arc<Ctx>,
    event: Event,
    sessions: &mut HashMap<String, mpsc::Sender<Notice>>,
    entering: &mut HashMap<String, oneshot::Sender<()>>,
    done: &mpsc::Sender<[String; 2]>,
) {
    match event {
        Event::StasisStart { channel, args, .. } => {
            if let Some(started) = entering.remove(&channel.id) {
                // Our own external media channel entering the application:
                // its session may bridge it now.
                let _ = started.send(());
                return;
            }
            if sessions.contains_key(&channel.id) {
                // A channel of a running session, again.
                return;
            }
            if channel.id.starts_with(MEDIA_PREFIX) {
                warn!(channel = %channel.id, "external media channel of an earlier run: hanging it up");
                let client = ctx.client.clone();
                tokio::spawn(async move {
                    let _ = client.hangup(&channel.id, "normal").await;
                });
                return;
            }
            let live = &ctx.shared.live;
            if live.spare() == 0 {
                warn!(channel = %channel.id, "not taking the call (full or shutting down): back to the dialplan");
                live.refused.fetch_add(1, Ordering::Relaxed);
                let client = ctx.client.clone();
                tokio::spawn(async move {
                    let _ = client
                        .set_variable(&channel.id, "HARK_OUTCOME", "refused")
                        .await;
                    let _ = client
                        .continue_in_dialplan(&channel.id, &DialplanTarget::default())
                        .await;
                });
                return;
            }
            let (tx, rx) = mpsc::channel(SESSION_QUEUE);
            let (started_tx, started_rx) = oneshot::channel();
            let session = session::Session::new(Arc::clone(ctx), channel, args, rx, started_rx);
            let ids = session.channel_ids();
            for id in &ids {
                sessions.insert(id.clone(), tx.clone());
            }
            entering.insert(session.media_id(), started_tx);
            let done = done.clone();
            tokio::spawn(async move {
                session.run().await;
                let _ = done.send(ids).await;
            });
        }
        Event::StasisEnd { channel, .. }
        | Event::ChannelDestroyed { channel, .. }
        | Event::ChannelHangupRequest { channel, .. } => {
            if let Some(tx) = sessions.get(&channel.id) {
                notify(tx, Notice::Gone(channel.id));
            }
        }
        Event::ChannelDtmfReceived { channel, digit, .. } => {
            debug!(channel = %channel.id, %digit, "dtmf (carried to the agent by the media leg)");
        }
        _ => {}
    }
}

/// How long, at exit, sessions get to finish with their callers.
const SESSIONS_GRACE: Duration = Duration::from_secs(3);

/// Sends without making the controller wait: a session's queue holds more
/// notices than a call produces, but if it is ever full the notice is sent
/// from a task of its own.
fn notify(tx: &mpsc::Sender<Notice>, notice: Notice) {
    if let Err(mpsc::error::TrySendError::Full(n)) = tx.try_send(notice) {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(n).await;
        });
    }
}
