//! One Stasis call: set up the bridge and the media leg, wait for either
//! side to end, tear down what is left.
//!
//! Every step that creates something is undone on every way out: a call is
//! never left with a bridge, a media channel or a caller nobody tends.
//! Cleanup requests that fail transiently (Asterisk busy, 5xx) are retried;
//! 404 means it is gone already, which is what cleanup wants.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ari_client::{AriError, Channel, DialplanTarget, Encapsulation, ExternalMedia};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{BRIDGE_PREFIX, Ctx, MEDIA_PREFIX, Notice, rtp};
use crate::config::{StasisMedia, check_tenant_id};
use crate::registry::CallEnd;
use crate::store::Registration;

/// Attempts for a cleanup request that fails transiently.
const CLEANUP_ATTEMPTS: u32 = 3;
/// After the media channel is gone, how long to wait for the call's own
/// end (with its hand-off decision) before tearing down without it.
const MEDIA_END_GRACE: Duration = Duration::from_secs(2);

/// One caller channel in the application.
#[derive(Debug)]
pub(super) struct Session {
    ctx: Arc<Ctx>,
    caller: Channel,
    args: Vec<String>,
    uuid: String,
    notices: mpsc::Receiver<Notice>,
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
    /// The media leg never connected.
    SetupFailed(String),
}

impl Session {
    pub(super) fn new(
        ctx: Arc<Ctx>,
        caller: Channel,
        args: Vec<String>,
        notices: mpsc::Receiver<Notice>,
    ) -> Session {
        Session {
            ctx,
            caller,
            args,
            uuid: uuid::Uuid::new_v4().to_string(),
            notices,
            rtp_stop: None,
        }
    }

    fn media_id(&self) -> String {
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
            let ending = match self.set_up(started).await {
                Ok(end) => self.wait(end, started).await,
                Err(why) => Ending::SetupFailed(why),
            };
            self.tear_down(ending).await;
        }
        .instrument(span)
        .await
    }

    /// Answers, registers the call, creates the bridge and the media leg.
    /// On error, what was made is undone by `tear_down`.
    async fn set_up(&mut self, started: Instant) -> Result<oneshot::Receiver<CallEnd>, String> {
        let client = &self.ctx.client;
        let id = self.caller.id.clone();
        let (answered, agent_var, tenant_var) = tokio::join!(
            client.answer(&id),
            self.variable("HARK_AGENT"),
            self.variable("HARK_TENANT"),
        );
        answered.map_err(|e| format!("answer: {e}"))?;
        let shared = &self.ctx.shared;
        let arg = |key: &str| {
            self.args
                .iter()
                .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        let asked_agent = arg("agent").or(agent_var);
        let agent = match &asked_agent {
            Some(name) => match shared.agent_index(name) {
                Some(_) => name.clone(),
                None => {
                    warn!(agent = %name, "the channel asked for an agent hark does not have: using the default");
                    shared.agent_name(self.ctx.default_agent).to_string()
                }
            },
            None => shared.agent_name(self.ctx.default_agent).to_string(),
        };
        let tenant = match arg("tenant").or(tenant_var) {
            Some(t) if check_tenant_id(&t).is_ok() => t,
            Some(t) => {
                warn!(tenant = %t, "the channel's tenant is not a valid id: using the default");
                shared.default_tenant()
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
        let end = shared.registry.insert_and_watch(Registration {
            call_id: self.uuid.clone(),
            tenant: tenant.clone(),
            agent: agent.clone(),
            caller_id: Some(self.caller.caller.number.clone()).filter(|n| !n.is_empty()),
            dnis: exten,
            direction: "inbound".into(),
            metadata: Some(metadata.to_string()),
        });

        let bridge = self.bridge_id();
        client
            .create_bridge(&bridge, "hark")
            .await
            .map_err(|e| format!("create bridge: {e}"))?;
        let media = self.media_id();
        let cfg = &self.ctx.config;
        let (external_host, encapsulation, format) = match cfg.media {
            StasisMedia::AudioSocket => (
                self.ctx.media_host.clone(),
                Encapsulation::AudioSocket,
                "slin",
            ),
            StasisMedia::Rtp => {
                let leg = rtp::RtpLeg::bind(cfg)
                    .await
                    .map_err(|e| format!("rtp: {e}"))?;
                let host = leg.local_addr().to_string();
                let agent_index = shared.agent_index(&agent).unwrap_or(self.ctx.default_agent);
                self.rtp_stop = Some(leg.start(
                    &self.uuid,
                    Arc::clone(&self.ctx.shared),
                    agent_index,
                    self.ctx.phase.clone(),
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
        client
            .add_channels(&bridge, &[&id, &media])
            .await
            .map_err(|e| format!("add to bridge: {e}"))?;
        info!(
            %agent,
            %tenant,
            setup_ms = started.elapsed().as_millis() as u64,
            "stasis call set up"
        );
        Ok(end)
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
        loop {
            let grace = media_gone.map(|t| t + MEDIA_END_GRACE);
            tokio::select! {
                e = &mut end => return Ending::Media(e.ok()),
                () = tokio::time::sleep_until(setup_deadline), if !connected => {
                    if self.ctx.shared.registry.is_waiting(&self.uuid) {
                        return Ending::SetupFailed(format!(
                            "the media leg did not connect within {} ms",
                            self.ctx.config.setup_timeout.as_millis()
                        ));
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
                        if self.gone(&self.caller.id.clone()).await {
                            info!("the caller hung up while ARI events were down");
                            return Ending::CallerGone;
                        }
                        if self.gone(&self.media_id()).await {
                            media_gone.get_or_insert_with(Instant::now);
                        }
                    }
                },
            }
        }
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

    /// Undoes everything: hands off or hangs up the caller, hangs up the
    /// media channel, destroys the bridge.
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
            Ending::Media(end) => {
                debug!(reason = ?end.as_ref().map(|e| &e.reason), "media leg ended: hanging up the caller");
                let _ = retry("hang up caller", || client.hangup(&caller, "normal")).await;
            }
            Ending::CallerGone => info!("caller gone: hanging up the media leg"),
            Ending::SetupFailed(why) => {
                warn!("call setup failed: {why}; hanging up");
                self.ctx.shared.registry.forget(&self.uuid);
                let _ = retry("hang up caller", || client.hangup(&caller, "congestion")).await;
            }
        }
        let _ = retry("hang up media channel", || client.hangup(&media, "normal")).await;
        // The RTP leg (if any) ends with the media channel.
        self.rtp_stop = None;
        let _ = retry("destroy bridge", || client.destroy_bridge(&bridge)).await;
        info!(ending = ?ending_name(&ending), "stasis call over");
    }
}

fn ending_name(e: &Ending) -> &'static str {
    match e {
        Ending::Media(Some(CallEnd {
            handoff: Some(_), ..
        })) => "handed off",
        Ending::Media(_) => "agent ended",
        Ending::CallerGone => "caller hung up",
        Ending::SetupFailed(_) => "setup failed",
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
