//! SIP mode: hark as a SIP endpoint (`[sip]`). One task owns the UDP
//! socket and the pure UAS of `sip_bridge::uas`; it feeds the UAS what
//! arrives and the passing of time, sends what the UAS writes, and turns
//! its events into calls.
//!
//! Each accepted call gets an RTP port of `rtp_ports`, run as an RTP leg
//! ([`RtpLeg`]) of the same call driver, session and agent an Asterisk
//! AudioSocket call gets. When the call ends the leg tells this task,
//! which sends BYE; when the peer sends BYE the leg is stopped and the
//! session sees its peer gone.
//!
//! Requests from addresses outside `allow` are dropped unanswered: a
//! reply would tell a scanner hark is there, and UDP sources can be forged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use media_core::Time;
use sip_bridge::uas::{CallRef, EndReason, Event, Uas, UasConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::admission::{Phase, Shared, start_rtp_call};
use crate::config::SipConfig;
use crate::driver::RtpLeg;
use crate::store::Registration;

/// Largest SIP datagram read.
const MAX_DATAGRAM: usize = sip_bridge::message::MAX_MESSAGE;

/// A running call's handles.
struct Live {
    media: watch::Sender<sip_bridge::sdp::Negotiated>,
    /// Dropping it stops the leg.
    _stop: oneshot::Sender<()>,
}

/// The SIP endpoint.
pub(crate) struct Sip {
    config: SipConfig,
    socket: UdpSocket,
    shared: Arc<Shared>,
    agent: usize,
    phase: watch::Receiver<Phase>,
}

impl Sip {
    /// The endpoint on `socket` (bound to `[sip] listen` at start-up, so a
    /// port in use stops hark before it serves anything).
    pub(crate) fn new(
        config: &SipConfig,
        socket: UdpSocket,
        shared: Arc<Shared>,
        agent: usize,
        phase: watch::Receiver<Phase>,
    ) -> Sip {
        Sip {
            config: config.clone(),
            socket,
            shared,
            agent,
            phase,
        }
    }

    /// Runs until hark stops.
    pub(crate) async fn run(mut self) {
        let local = self.socket.local_addr().unwrap_or(self.config.listen);
        let contact = SocketAddr::new(self.config.advertise, local.port());
        let mut uas = Uas::new(
            UasConfig {
                contact,
                codecs: self.config.codecs.clone(),
                max_calls: self.shared.config.max_calls,
                user_agent: format!("hark/{}", env!("CARGO_PKG_VERSION")),
            },
            uuid::Uuid::new_v4().as_u128() as u64,
        );
        let start = Instant::now();
        let now = || Time::from_micros(start.elapsed().as_micros() as u64);
        let mut calls: HashMap<CallRef, Live> = HashMap::new();
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<CallRef>();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut dropped = 0u64;
        info!(address = %local, %contact, allow = %self.config.allow, "sip listening");
        loop {
            let deadline = uas
                .poll_timeout()
                .map(|t| start + std::time::Duration::from_micros(t.as_micros()));
            tokio::select! {
                got = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    if !self.config.allow.contains(from.ip()) {
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            warn!(%from, dropped, "SIP from an address outside sip.allow: dropped");
                        }
                        continue;
                    }
                    uas.handle_datagram(now(), from, &buf[..n]);
                }
                _ = sleep_until(deadline) => uas.handle_timeout(now()),
                Some(call) = ended_rx.recv() => {
                    calls.remove(&call);
                    uas.hangup(now(), call);
                }
                changed = self.phase.changed() => {
                    if changed.is_err() || *self.phase.borrow() == Phase::Stopped {
                        break;
                    }
                }
            }
            while let Some((to, bytes)) = uas.poll_transmit() {
                let _ = self.socket.send_to(&bytes, to).await;
            }
            while let Some(event) = uas.poll_event() {
                self.handle_event(&mut uas, now(), event, &mut calls, &ended_tx)
                    .await;
            }
            while let Some((to, bytes)) = uas.poll_transmit() {
                let _ = self.socket.send_to(&bytes, to).await;
            }
        }
        info!(calls = calls.len(), "sip stopped");
    }

    async fn handle_event(
        &self,
        uas: &mut Uas,
        now: Time,
        event: Event,
        calls: &mut HashMap<CallRef, Live>,
        ended: &mpsc::UnboundedSender<CallRef>,
    ) {
        match event {
            Event::Incoming {
                call,
                peer,
                call_id,
                from,
                uri,
                media,
            } => {
                if *self.phase.borrow() != Phase::Running {
                    uas.reject(now, call, 503, "Service Unavailable");
                    return;
                }
                if self.shared.live.spare() == 0 {
                    self.shared.live.refused.fetch_add(1, Ordering::Relaxed);
                    uas.reject(now, call, 486, "Busy Here");
                    return;
                }
                let socket = match crate::transport::rtp_ports::bind(
                    self.config.rtp_address,
                    self.config.rtp_ports,
                )
                .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(%peer, "no RTP port: {e}");
                        uas.reject(now, call, 503, "Service Unavailable");
                        return;
                    }
                };
                let Ok(rtp_local) = socket.local_addr() else {
                    uas.reject(now, call, 500, "Server Internal Error");
                    return;
                };
                let advertised = SocketAddr::new(self.config.advertise, rtp_local.port());
                let uuid = uuid::Uuid::new_v4();
                let codec = media.codec;
                let registered = media.clone();
                let (media_tx, media_rx) = watch::channel(media);
                let (stop_tx, stop_rx) = oneshot::channel();
                let ended = ended.clone();
                let leg = match RtpLeg::sip(
                    socket,
                    uuid,
                    media_rx,
                    self.config.allow.clone(),
                    stop_rx,
                    Box::new(move || {
                        let _ = ended.send(call);
                    }),
                ) {
                    Ok(leg) => leg,
                    Err(e) => {
                        warn!(%peer, "sip media: {e}");
                        uas.reject(now, call, 488, "Not Acceptable Here");
                        return;
                    }
                };
                uas.accept(now, call, advertised);
                self.register(&uuid, &call_id, &from, &uri, peer, &registered);
                info!(%peer, %call_id, call = %uuid, ?codec, rtp = %rtp_local, "sip call answered");
                calls.insert(
                    call,
                    Live {
                        media: media_tx,
                        _stop: stop_tx,
                    },
                );
                start_rtp_call(
                    leg,
                    uuid.to_string(),
                    peer,
                    "sip",
                    &self.shared,
                    self.agent,
                    self.phase.clone(),
                );
            }
            Event::MediaChanged { call, media } => {
                if let Some(l) = calls.get(&call) {
                    let _ = l.media.send(media);
                }
            }
            Event::Ended { call, reason } => {
                if calls.remove(&call).is_some() {
                    debug!(?call, ?reason, "sip call ended");
                }
                if reason == EndReason::NoAck {
                    warn!(?call, "no ACK for our 200: the call was ended with BYE");
                }
            }
        }
    }

    /// Registers the call so its record carries the caller, the number
    /// dialled and the agent the Request-URI names.
    fn register(
        &self,
        uuid: &uuid::Uuid,
        call_id: &str,
        from: &str,
        uri: &str,
        peer: SocketAddr,
        media: &sip_bridge::sdp::Negotiated,
    ) {
        let dialled = user_of(uri);
        let named = dialled.as_deref().and_then(|u| self.shared.agent_index(u));
        let agent = named.unwrap_or(self.agent);
        if named.is_none()
            && let Some(u) = dialled.as_deref()
            && u != "hark"
        {
            // Not an agent's name: the listener's agent answers (a user
            // "hark", as pjsip.conf's aor has it, is the plain way in).
            warn!(
                user = u,
                used = self.shared.agent_name(agent),
                "the Request-URI names no agent: the call gets the default agent"
            );
        }
        let metadata = serde_json::json!({
            "source": "sip",
            "sip_call_id": call_id,
            "from": from,
            "request_uri": uri,
            "peer": peer.to_string(),
            "codec": media.codec.name(),
        });
        self.shared.registry.insert(Registration {
            call_id: uuid.to_string(),
            tenant: self.shared.default_tenant(),
            agent: self.shared.agent_name(agent).to_string(),
            caller_id: user_of(from),
            dnis: dialled,
            direction: "inbound".into(),
            metadata: Some(metadata.to_string()),
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The user part of a SIP URI or name-addr: `"A" <sip:123@h>;tag=x` ->
/// `123`.
fn user_of(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value,
    };
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let user = match rest.split_once('@') {
        Some((u, _)) => u,
        None if uri.starts_with("tel:") => rest,
        None => return None,
    };
    let user = user.split([';', ':']).next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_come_out_of_uris() {
        assert_eq!(
            user_of("\"Alice\" <sip:+15551230001@192.0.2.10;user=phone>;tag=x").as_deref(),
            Some("+15551230001")
        );
        assert_eq!(user_of("sip:desk@127.0.0.1:5060").as_deref(), Some("desk"));
        assert_eq!(user_of("sip:127.0.0.1"), None);
        assert_eq!(
            user_of("<tel:+15551230001>").as_deref(),
            Some("+15551230001")
        );
    }
}
