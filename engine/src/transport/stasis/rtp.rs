//! The RTP media port of a Stasis call: Asterisk's external media channel
//! with `encapsulation=rtp`, `format=ulaw`, sending 20 ms of G.711 µ-law
//! (160 bytes, payload type 0) to a UDP port hark opens for the call.
//!
//! The port becomes an RTP leg of the call's driver (see `driver::leg`),
//! so an RTP call runs the same driver, session and agent as an
//! AudioSocket call. Replies go to where packets come from (symmetric RTP),
//! which is right behind NAT and needs no channel variable lookup.
//!
//! # Concurrency
//! The call's driver task owns the UDP socket. The call ends when the
//! session hangs up, or when the Stasis session drops the stop handle (the
//! Asterisk side is gone).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tracing::warn;

use crate::admission::{Phase, Shared, start_rtp_call};
use crate::config::StasisConfig;
use crate::driver::RtpLeg;

/// A UDP port bound for one call's external media.
#[derive(Debug)]
pub(super) struct RtpPort {
    socket: UdpSocket,
    local: SocketAddr,
}

/// Dropping it ends the call's media.
#[derive(Debug)]
pub(super) struct Stop(#[allow(dead_code)] oneshot::Sender<()>);

impl RtpPort {
    /// Binds a free port of `[ari] rtp_ports` on `rtp_address`, starting
    /// from a random one so consecutive calls do not collide.
    pub(super) async fn bind(cfg: &StasisConfig) -> std::io::Result<RtpPort> {
        let socket = crate::transport::rtp_ports::bind(cfg.rtp_address, cfg.rtp_ports).await?;
        let local = socket.local_addr()?;
        Ok(RtpPort { socket, local })
    }

    /// Where Asterisk should send.
    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Starts the call on this port, known by the channel's `uuid`.
    pub(super) fn start(
        self,
        uuid: &str,
        shared: Arc<Shared>,
        agent: usize,
        phase: watch::Receiver<Phase>,
    ) -> Stop {
        let (stop_tx, stop_rx) = oneshot::channel();
        let id = uuid::Uuid::parse_str(uuid).unwrap_or_else(|_| uuid::Uuid::new_v4());
        match RtpLeg::stasis(self.socket, id, stop_rx) {
            Ok(leg) => start_rtp_call(
                leg,
                id.to_string(),
                self.local,
                "ari-rtp",
                &shared,
                agent,
                phase,
            ),
            // µ-law always runs: this would be a build without G.711.
            Err(e) => warn!("ari media: {e}"),
        }
        Stop(stop_tx)
    }
}
