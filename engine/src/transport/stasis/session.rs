//! One Stasis call: set up the bridge and the media leg, wait for either
//! side to end, tear down what is left.
//!
//! Every step that creates something is undone on every way out: a call is
//! never left with a bridge, a media channel or a caller nobody tends.
//! Cleanup requests that fail transiently (Asterisk busy, 5xx) are retried;
//! 404 means it is gone already, which is what cleanup wants.
//!
//! Asterisk answers `POST /channels/externalMedia` before the new channel
//! enters the application, and a bridge takes only channels that are in
//! it (422 "Channel not in Stasis application" before): the set-up waits
//! for the media channel's StasisStart before bridging, and tries a 422
//! again briefly. A set-up that fails for good sends the caller back to
//! the dialplan with `HARK_OUTCOME=failed` and records the call as failed,
//! with the reason.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ari_client::{AriError, Channel, DialplanTarget, Encapsulation, ExternalMedia};
use media_core::EndReason;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{BRIDGE_PREFIX, Ctx, MEDIA_PREFIX, Notice, rtp};
use crate::config::{StasisMedia, check_tenant_id};
use crate::registry::{self, CallEnd};
use crate::store::{CallStart, Registration, StoreEvent, now_ms};

/// Attempts for a cleanup request that fails transiently.
const CLEANUP_ATTEMPTS: u32 = 3;
/// After the media channel is gone, how long to wait for the call's own
/// end (with its hand-off decision) before tearing down without it.
const MEDIA_END_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the media channel's StasisStart before bridging it
/// anyway. Asterisk answers the POST that creates the channel first and
/// starts `Stasis()` on it from a dial thread of its own
/// (res/ari/resource_channels.c), usually a few milliseconds later; until
/// then addChannel answers 422. Two seconds covers a loaded Asterisk and
/// is still a short silence for a caller when something is broken.
const MEDIA_START_WAIT: Duration = Duration::from_secs(2);
/// Attempts at bridging while Asterisk answers 422 (the StasisStart was
/// lost in a websocket gap, or the wait above ran out).
const BRIDGE_ATTEMPTS: u32 = 4;
/// The pause before the second attempt, doubled after each: 50, 100,
/// 200 ms, so a set-up gives up within 350 ms of its first 422.
const BRIDGE_BACKOFF: Duration = Duration::from_millis(50);
/// Asterisk's status for bridging a channel that is not in the application
/// (res/ari/resource_bridges.c, `find_channel_control`).
const NOT_IN_APPLICATION: u16 = 422;
/// `HARK_OUTCOME`, and the stored outcome, of a call whose set-up failed.
const FAILED: &str = "failed";

/// One caller channel in the application.
#[derive(Debug)]
pub(super) struct Session {
    ctx: Arc<Ctx>,
    caller: Channel,
    args: Vec<String>,
    uuid: String,
    notices: mpsc::Receiver<Notice>,
    /// Fires when the media channel enters the application (the
    /// controller saw its StasisStart). Taken by the set-up.
    media_started: Option<oneshot::Receiver<()>>,
    /// The call as registered; set by `register` before anything can fail,
    /// to record the call if its set-up does.
    registration: Option<Registration>,
    /// When the session started (epoch ms).
    started_ms: i64,
    /// The set-up saw a websocket gap: check the channels by REST once the
    /// call runs, as events may have been lost.
    recheck: bool,
    /// Ends the RTP leg (RTP media only) when dropped.
    rtp_stop: Option<rtp::Stop>,
}

/// How the call ended, as far as the Asterisk side is concerned.
#[derive(Debug)]
enum Ending {
    /// The media leg ended; hand off if the agent said so.
    Media(Option<CallEnd>),
    /// The caller is gone.
    CallerGone,
    /// The set-up failed, for `why`. `end` hears the media leg's end once
    /// the call is registered (a driver may have taken it).
    SetupFailed {
        why: String,
        end: Option<oneshot::Receiver<CallEnd>>,
    },
}

/// Why a set-up stopped before the call could run.
#[derive(Debug)]
enum SetupError {
    /// The caller hung up meanwhile (or the controller stopped).
    CallerGone,
    /// A step failed, in words.
    Failed(String),
}

impl From<String> for SetupError {
    fn from(why: String) -> Self {
        SetupError::Failed(why)
    }
}

impl Session {
    /// `media_started` fires when the controller sees the media channel's
    /// StasisStart.
    pub(super) fn new(
        ctx: Arc<Ctx>,
        caller: Channel,
        args: Vec<String>,
        notices: mpsc::Receiver<Notice>,
        media_started: oneshot::Receiver<()>,
    ) -> Session {
        Session {
            ctx,
            caller,
            args,
            uuid: uuid::Uuid::new_v4().to_string(),
            notices,
            media_started: Some(media_started),
            registration: None,
            started_ms: now_ms(),
            recheck: false,
            rtp_stop: None,
        }
    }

    /// The id the session gives its external media channel.
    pub(super) fn media_id(&self) -> String {
        format!("{MEDIA_PREFIX}{}", self.uuid)
    }

    fn bridge_id(&self) -> String {
        format!("{BRIDGE_PREFIX}{}", self.uuid)
    }

    /// The channels whose events this session wants: the caller's and the
    /// media channel's.
    pub(super) fn channel_ids(&self) -> [String; 2] {
        [self.caller.id.clone(), self.media_id()]
    }

    pub(super) async fn run(mut self) {
        let span = info_span!("stasis", channel = %self.caller.id, call_id = %self.uuid);
        async move {
            let started = Instant::now();
            let ending = match self.register().await {
                Err(why) => Ending::SetupFailed { why, end: None },
                Ok(end) => match self.connect(started).await {
                    Ok(()) => self.wait(end, started).await,
                    Err(SetupError::CallerGone) => Ending::CallerGone,
                    Err(SetupError::Failed(why)) => Ending::SetupFailed {
                        why,
                        end: Some(end),
                    },
                },
            };
            self.tear_down(ending).await;
        }
        .instrument(span)
        .await
    }

    /// Answers the caller and registers the call under its UUID with the
    /// agent and tenant the channel asked for. Returns the wait for the
    /// media leg's end.
    async fn register(&mut self) -> Result<oneshot::Receiver<CallEnd>, String> {
        let client = &self.ctx.client;
        let id = self.caller.id.clone();
        let (answered, agent_var, tenant_var) = tokio::join!(
            client.answer(&id),
            self.variable("HARK_AGENT"),
            self.variable("HARK_TENANT"),
        );
        let registration = self.registration_for(agent_var, tenant_var);
        // Kept before the answer is checked: a call that cannot be answered
        // is recorded as failed too.
        self.registration = Some(registration.clone());
        answered.map_err(|e| format!("answer: {e}"))?;
        Ok(self.ctx.shared.registry.insert_and_watch(registration))
    }

    /// The call's registration: agent and tenant from `Stasis()`'s
    /// arguments, else the channel variables, else the defaults.
    fn registration_for(
        &self,
        agent_var: Option<String>,
        tenant_var: Option<String>,
    ) -> Registration {
        let shared = &self.ctx.shared;
        let arg = |key: &str| {
            self.args
                .iter()
                .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        let asked_agent = arg("agent").or(agent_var);
        let default_agent = shared.agent_name(self.ctx.default_agent);
        let agent = match &asked_agent {
            Some(name) if shared.agent_index(name).is_some() => name.clone(),
            Some(name) => {
                warn!(
                    asked = %name,
                    used = %default_agent,
                    "the channel asked for an agent hark does not have: it gets the default agent"
                );
                default_agent.to_string()
            }
            None => default_agent.to_string(),
        };
        let tenant = match arg("tenant").or(tenant_var) {
            Some(t) if check_tenant_id(&t).is_ok() => t,
            Some(t) => {
                let used = shared.default_tenant();
                warn!(
                    asked = %t,
                    %used,
                    "the channel's tenant is not a valid id: it gets the default tenant"
                );
                used
            }
            None => shared.default_tenant(),
        };
        let exten = self
            .caller
            .dialplan
            .as_ref()
            .map(|d| d.exten.clone())
            .filter(|e| !e.is_empty());
        let metadata = serde_json::json!({
            "source": "ari",
            "channel": self.caller.id,
            "channel_name": self.caller.name,
            "protocol_id": self.caller.protocol_id,
            "args": self.args,
            "agent_asked": asked_agent,
        });
        Registration {
            call_id: self.uuid.clone(),
            tenant,
            agent,
            caller_id: Some(self.caller.caller.number.clone()).filter(|n| !n.is_empty()),
            dnis: exten,
            direction: "inbound".into(),
            metadata: Some(metadata.to_string()),
        }
    }

    /// Creates the bridge and the media leg, waits for the media channel to
    /// enter the application, and bridges it with the caller. On error,
    /// what was made is undone by `tear_down`.
    async fn connect(&mut self, started: Instant) -> Result<(), SetupError> {
        let ctx = Arc::clone(&self.ctx);
        let client = &ctx.client;
        let cfg = &ctx.config;
        let (agent, tenant) = self
            .registration
            .as_ref()
            .map(|r| (r.agent.clone(), r.tenant.clone()))
            .unwrap_or_default();
        let bridge = self.bridge_id();
        client
            .create_bridge(&bridge, "hark")
            .await
            .map_err(|e| format!("create bridge: {e}"))?;
        let media = self.media_id();
        let (external_host, encapsulation, format) = match cfg.media {
            StasisMedia::AudioSocket => {
                (ctx.media_host.clone(), Encapsulation::AudioSocket, "slin")
            }
            StasisMedia::Rtp => {
                let leg = rtp::RtpPort::bind(cfg)
                    .await
                    .map_err(|e| format!("rtp: {e}"))?;
                let host = leg.local_addr().to_string();
                let agent_index = ctx.shared.agent_index(&agent).unwrap_or(ctx.default_agent);
                self.rtp_stop = Some(leg.start(
                    &self.uuid,
                    Arc::clone(&ctx.shared),
                    agent_index,
                    ctx.phase.clone(),
                ));
                (host, Encapsulation::Rtp, "ulaw")
            }
        };
        client
            .external_media(&ExternalMedia {
                app: cfg.app.clone(),
                external_host,
                encapsulation,
                format: format.into(),
                channel_id: Some(media.clone()),
                data: Some(self.uuid.clone()),
                variables: Default::default(),
            })
            .await
            .map_err(|e| format!("external media: {e}"))?;
        self.media_entered().await?;
        self.add_to_bridge(&bridge, &[self.caller.id.as_str(), media.as_str()])
            .await
            .map_err(|e| format!("add to bridge: {e}"))?;
        info!(
            %agent,
            %tenant,
            setup_ms = started.elapsed().as_millis() as u64,
            "stasis call set up"
        );
        Ok(())
    }

    /// Waits for the media channel to enter the application (its
    /// StasisStart), at most `MEDIA_START_WAIT`. Running out, or a
    /// websocket gap that may have lost the event, is no error: bridging
    /// then tells.
    async fn media_entered(&mut self) -> Result<(), SetupError> {
        let Some(started) = self.media_started.take() else {
            return Ok(());
        };
        let waited = Instant::now();
        tokio::select! {
            _ = started => {
                debug!(
                    wait_ms = waited.elapsed().as_millis() as u64,
                    "the media channel entered the application"
                );
                Ok(())
            }
            () = tokio::time::sleep(MEDIA_START_WAIT) => {
                warn!(
                    wait_ms = MEDIA_START_WAIT.as_millis() as u64,
                    "no StasisStart for the media channel: bridging it anyway"
                );
                Ok(())
            }
            notice = self.notices.recv() => match notice {
                // The controller is gone (the server stopped).
                None => Err(SetupError::CallerGone),
                Some(Notice::Gone(id)) if id == self.caller.id => Err(SetupError::CallerGone),
                Some(Notice::Gone(_)) => Err(SetupError::Failed(
                    "the media channel ended before it entered the application".into(),
                )),
                Some(Notice::Check) => {
                    self.recheck = true;
                    Ok(())
                }
            },
        }
    }

    /// Puts `channels` in the bridge. A 422 (a channel not in the
    /// application yet) is tried again, `BRIDGE_ATTEMPTS` times at most.
    async fn add_to_bridge(&self, bridge: &str, channels: &[&str]) -> Result<(), AriError> {
        let mut pause = BRIDGE_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.ctx.client.add_channels(bridge, channels).await {
                Err(e) if e.status() == Some(NOT_IN_APPLICATION) && attempt < BRIDGE_ATTEMPTS => {
                    debug!(attempt, "add to bridge: {e}; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// A channel variable, from `channelvars` if Asterisk sent it, else by
    /// REST. Unset, or unreadable, is `None`: the defaults apply.
    async fn variable(&self, name: &str) -> Option<String> {
        if let Some(v) = self.caller.channelvars.as_ref().and_then(|m| m.get(name)) {
            return Some(v.clone()).filter(|v| !v.is_empty());
        }
        match self.ctx.client.variable(&self.caller.id, name).await {
            Ok(v) => v.filter(|v| !v.is_empty()),
            Err(e) => {
                debug!(variable = name, "cannot read: {e}");
                None
            }
        }
    }

    /// Waits for the call to end on either side.
    async fn wait(&mut self, mut end: oneshot::Receiver<CallEnd>, started: Instant) -> Ending {
        let setup_deadline = started + self.ctx.config.setup_timeout;
        let mut connected = false;
        let mut media_gone: Option<Instant> = None;
        if std::mem::take(&mut self.recheck) && self.caller_gone_after_gap(&mut media_gone).await {
            return Ending::CallerGone;
        }
        loop {
            let grace = media_gone.map(|t| t + MEDIA_END_GRACE);
            tokio::select! {
                e = &mut end => return Ending::Media(e.ok()),
                () = tokio::time::sleep_until(setup_deadline), if !connected => {
                    if self.ctx.shared.registry.is_waiting(&self.uuid) {
                        return Ending::SetupFailed {
                            why: format!(
                                "the media leg did not connect within {} ms",
                                self.ctx.config.setup_timeout.as_millis()
                            ),
                            end: Some(end),
                        };
                    }
                    connected = true;
                }
                () = sleep_until_opt(grace) => return Ending::Media(None),
                notice = self.notices.recv() => match notice {
                    // The controller is gone (the server stopped).
                    None => return Ending::CallerGone,
                    Some(Notice::Gone(id)) if id == self.caller.id => return Ending::CallerGone,
                    Some(Notice::Gone(_)) => {
                        media_gone.get_or_insert_with(Instant::now);
                    }
                    Some(Notice::Check) => {
                        if self.caller_gone_after_gap(&mut media_gone).await {
                            return Ending::CallerGone;
                        }
                    }
                },
            }
        }
    }

    /// After a websocket gap, asks Asterisk whether the channels are still
    /// there. True if the caller is gone; a gone media channel is noted in
    /// `media_gone`.
    async fn caller_gone_after_gap(&self, media_gone: &mut Option<Instant>) -> bool {
        if self.gone(&self.caller.id).await {
            info!("the caller hung up while ARI events were down");
            return true;
        }
        if self.gone(&self.media_id()).await {
            media_gone.get_or_insert_with(Instant::now);
        }
        false
    }

    /// True if Asterisk says the channel no longer exists (or left Stasis).
    async fn gone(&self, id: &str) -> bool {
        match self.ctx.client.channel(id).await {
            Ok(_) => false,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                warn!(channel = %id, "cannot check the channel: {e}");
                false
            }
        }
    }

    /// Undoes everything: hands off, hangs up or (set-up failed) sends back
    /// the caller, hangs up the media channel, destroys the bridge.
    async fn tear_down(&mut self, ending: Ending) {
        let client = self.ctx.client.clone();
        let caller = self.caller.id.clone();
        let media = self.media_id();
        let bridge = self.bridge_id();
        let cfg = &self.ctx.config;
        match &ending {
            Ending::Media(Some(CallEnd {
                handoff: Some(target),
                ..
            })) => {
                info!(%target, context = %cfg.handoff_context, redirect = ?cfg.handoff_redirect, "handing the caller off");
                let _ = retry("set HARK_HANDOFF_TARGET", || {
                    client.set_variable(&caller, "HARK_HANDOFF_TARGET", target)
                })
                .await;
                let _ = retry("set HARK_OUTCOME", || {
                    client.set_variable(&caller, "HARK_OUTCOME", "transferred")
                })
                .await;
                // Out of the bridge first, so it does not hear the media
                // channel go.
                let _ = retry("remove caller from bridge", || {
                    client.remove_channel(&bridge, &caller)
                })
                .await;
                let sent = match &cfg.handoff_redirect {
                    Some(template) => {
                        let endpoint = template.replace("{target}", target);
                        retry("redirect caller", || client.redirect(&caller, &endpoint)).await
                    }
                    None => {
                        let to = DialplanTarget {
                            context: cfg.handoff_context.clone(),
                            extension: cfg.handoff_extension.clone(),
                            priority: Some(cfg.handoff_priority),
                            label: None,
                        };
                        retry("continue caller", || {
                            client.continue_in_dialplan(&caller, &to)
                        })
                        .await
                    }
                };
                if !sent {
                    // It could not go on: do not leave it in silence.
                    let _ = retry("hang up caller", || client.hangup(&caller, "normal")).await;
                }
            }
            // hark is shutting down and hung the call up: as an AudioSocket
            // caller gets 0x00 and goes on, this caller goes back to the
            // dialplan (the priority after Stasis(), e.g. a queue).
            Ending::Media(Some(end)) if end.reason == EndReason::Shutdown.to_string() => {
                info!("media leg ended by shutdown: back to the dialplan");
                let _ = retry("set HARK_OUTCOME", || {
                    client.set_variable(&caller, "HARK_OUTCOME", "shutdown")
                })
                .await;
                let next = DialplanTarget::default();
                if !retry("continue caller", || {
                    client.continue_in_dialplan(&caller, &next)
                })
                .await
                {
                    let _ = retry("hang up caller", || client.hangup(&caller, "normal")).await;
                }
            }
            Ending::Media(end) => {
                debug!(reason = ?end.as_ref().map(|e| &e.reason), "media leg ended: hanging up the caller");
                let _ = retry("hang up caller", || client.hangup(&caller, "normal")).await;
            }
            Ending::CallerGone => info!("caller gone: hanging up the media leg"),
            Ending::SetupFailed { why, .. } => {
                warn!("call setup failed: {why}; back to the dialplan");
                let _ = retry("set HARK_OUTCOME", || {
                    client.set_variable(&caller, "HARK_OUTCOME", FAILED)
                })
                .await;
                // The next priority: the dialplan after `Stasis()` decides.
                let next = DialplanTarget::default();
                let sent = retry("continue caller", || {
                    client.continue_in_dialplan(&caller, &next)
                })
                .await;
                if !sent {
                    let _ = retry("hang up caller", || client.hangup(&caller, "congestion")).await;
                }
            }
        }
        let _ = retry("hang up media channel", || client.hangup(&media, "normal")).await;
        // The RTP leg (if any) ends with the media channel.
        self.rtp_stop = None;
        let _ = retry("destroy bridge", || client.destroy_bridge(&bridge)).await;
        info!(ending = ?ending_name(&ending), "stasis call over");
        if let Ending::SetupFailed { why, end } = ending {
            self.record_failure(&why, end).await;
        }
    }

    /// Records the call as failed, with `why`: in the registry (the API's
    /// outcome) and in the store. Called once the media channel is gone.
    /// If a driver took the call (the media leg connected), it records its
    /// own end: that is awaited first, within `MEDIA_END_GRACE`, so this
    /// end is written after it and stands.
    async fn record_failure(&self, why: &str, end: Option<oneshot::Receiver<CallEnd>>) {
        let shared = &self.ctx.shared;
        // Still registered now that the media channel is gone: no driver
        // took the call, and none will.
        let taken = !shared.registry.is_waiting(&self.uuid);
        if let Some(end) = end.filter(|_| taken)
            && tokio::time::timeout(MEDIA_END_GRACE, end).await.is_err()
        {
            debug!("the call's driver did not end in time: recording the failure anyway");
        }
        shared.registry.forget(&self.uuid);
        shared.registry.set_outcome(
            &self.uuid,
            registry::Outcome {
                outcome: FAILED.into(),
                handoff_target: None,
            },
        );
        let (Some(recorder), Some(r)) = (&shared.recorder, &self.registration) else {
            return;
        };
        let mut recorder = recorder.clone();
        let now = now_ms();
        // The start too, in case no driver recorded one; a row that has it
        // keeps its own.
        recorder.record(StoreEvent::CallStarted(CallStart {
            call_id: self.uuid.clone(),
            tenant: r.tenant.clone(),
            agent: r.agent.clone(),
            caller_id: r.caller_id.clone(),
            dnis: r.dnis.clone(),
            direction: r.direction.clone(),
            start_ms: self.started_ms,
            answer_ms: None,
            metadata: r.metadata.clone(),
            node: Some(shared.config.node.clone()),
        }));
        let failed = crate::store::CallEnd {
            call_id: self.uuid.clone(),
            tenant: r.tenant.clone(),
            agent: r.agent.clone(),
            end_ms: now,
            duration_ms: now.saturating_sub(self.started_ms).max(0),
            outcome: FAILED.into(),
            handoff_target: None,
            reason: Some(why.to_string()),
        };
        // Journaled like the driver's end, after it: a crash replays both
        // in order, and this one stands.
        if let Some(ends) = &shared.ends
            && let Err(e) = ends.append(failed.clone()).await
        {
            warn!(error = %e, "failed set-up not journaled");
        }
        recorder.record(StoreEvent::CallEnded(failed));
        recorder.flush().await;
    }
}

fn ending_name(e: &Ending) -> &'static str {
    match e {
        Ending::Media(Some(CallEnd {
            handoff: Some(_), ..
        })) => "handed off",
        Ending::Media(_) => "agent ended",
        Ending::CallerGone => "caller hung up",
        Ending::SetupFailed { .. } => "setup failed",
    }
}

/// Runs a cleanup request, retrying transient failures. True when done
/// (including "already gone").
async fn retry<F, Fut>(what: &str, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), AriError>>,
{
    let mut wait = Duration::from_millis(100);
    for attempt in 1..=CLEANUP_ATTEMPTS {
        match op().await {
            Ok(()) => return true,
            Err(e) if e.is_not_found() => return true,
            Err(e) if e.is_transient() && attempt < CLEANUP_ATTEMPTS => {
                debug!(attempt, "{what}: {e}; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                warn!("{what}: {e}");
                return false;
            }
        }
    }
    false
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
