//! The RTP media leg of a Stasis call: Asterisk's external media channel
//! with `encapsulation=rtp`, `format=ulaw`, sending 20 ms of G.711 µ-law
//! (160 bytes, payload type 0) to a UDP port hark opens for the call.
//!
//! The leg turns RTP into the AudioSocket byte stream the call driver
//! reads (the UUID first, then one slin frame per packet) and the driver's
//! frames back into RTP, so an RTP call runs the same driver and agent as
//! an AudioSocket call. Replies go to where packets come from (symmetric
//! RTP), which is right behind NAT and needs no channel variable lookup.
//!
//! # Concurrency
//! One task per leg owns the UDP socket and its end of an in-memory pipe to
//! the driver. It ends when the driver closes its end (the call is over)
//! or the session drops the stop handle (the Asterisk side is gone).

use std::net::SocketAddr;
use std::sync::Arc;

use media_core::audiosocket::{self, Decoder, Message};
use media_core::g711;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tracing::{debug, trace};

use crate::config::StasisConfig;
use crate::driver::take_replies;
use crate::server::{Phase, Shared, start_call};

/// RTP version 2, in the top two bits of the first byte.
const RTP_VERSION: u8 = 0x80;
/// Fixed RTP header length.
const RTP_HEADER: usize = 12;
/// G.711 µ-law's static payload type.
const PT_PCMU: u8 = 0x00;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;
/// Bytes the pipe between leg and driver holds.
const PIPE_BYTES: usize = 64 * 1024;

/// A UDP port bound for one call, not yet carrying audio.
#[derive(Debug)]
pub(super) struct RtpLeg {
    socket: UdpSocket,
    local: SocketAddr,
}

/// Dropping it ends the leg.
#[derive(Debug)]
pub(super) struct Stop(#[allow(dead_code)] oneshot::Sender<()>);

impl RtpLeg {
    /// Binds a free port of `[ari] rtp_ports` on `rtp_address`, starting
    /// from a random one so consecutive calls do not collide.
    pub(super) async fn bind(cfg: &StasisConfig) -> std::io::Result<RtpLeg> {
        let socket = crate::rtp_ports::bind(cfg.rtp_address, cfg.rtp_ports).await?;
        let local = socket.local_addr()?;
        Ok(RtpLeg { socket, local })
    }

    /// Where Asterisk should send.
    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Starts the call on this leg (as if Asterisk had connected over
    /// AudioSocket with `uuid`) and the task that carries its audio.
    pub(super) fn start(
        self,
        uuid: &str,
        shared: Arc<Shared>,
        agent: usize,
        phase: watch::Receiver<Phase>,
    ) -> Stop {
        let (driver_end, leg_end) = tokio::io::duplex(PIPE_BYTES);
        let (stop_tx, stop_rx) = oneshot::channel();
        let id = uuid::Uuid::parse_str(uuid).unwrap_or_else(|_| uuid::Uuid::new_v4());
        let max_payload = shared.config.max_payload;
        tokio::spawn(pump(self.socket, leg_end, id, max_payload, stop_rx));
        start_call(driver_end, self.local, "ari-rtp", &shared, agent, phase);
        Stop(stop_tx)
    }
}

/// An RTP packet's fields hark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RtpPacket<'a> {
    pub(super) payload_type: u8,
    pub(super) sequence: u16,
    pub(super) timestamp: u32,
    pub(super) payload: &'a [u8],
}

/// Reads an RTP packet (RFC 3550 §5.1): version 2, CSRCs, header extension
/// and padding skipped. `None` for anything else.
///
/// `sip_bridge::rtp::parse` does the same through the webrtc-rs crate, but
/// copies each payload into a new buffer; this leg runs per 20 ms packet
/// and borrows instead.
pub(super) fn parse(buf: &[u8]) -> Option<RtpPacket<'_>> {
    if buf.len() < RTP_HEADER || buf[0] & 0xc0 != RTP_VERSION {
        return None;
    }
    let csrcs = usize::from(buf[0] & 0x0f);
    let mut start = RTP_HEADER + 4 * csrcs;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(start..start + 4)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(*buf.last()?);
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some(RtpPacket {
        payload_type: buf[1] & 0x7f,
        sequence: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        payload: &buf[start..end],
    })
}

/// Writes a 12-byte RTP header for PCMU into `out[..12]`.
fn header(out: &mut [u8], sequence: u16, timestamp: u32, ssrc: u32) {
    out[0] = RTP_VERSION;
    out[1] = PT_PCMU;
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

async fn pump(
    socket: UdpSocket,
    mut pipe: DuplexStream,
    uuid: uuid::Uuid,
    max_payload: usize,
    mut stop: oneshot::Receiver<()>,
) {
    let mut frame = vec![0u8; audiosocket::HEADER_LEN + MAX_DATAGRAM * 2];
    if let Ok(n) = audiosocket::encode(&Message::Uuid(uuid), &mut frame)
        && pipe.write_all(&frame[..n]).await.is_err()
    {
        return;
    }
    let seed = uuid::Uuid::new_v4().as_u128();
    let ssrc = seed as u32;
    let mut sequence = (seed >> 32) as u16;
    let mut timestamp = (seed >> 48) as u32;
    let mut remote: Option<SocketAddr> = None;
    let decoder = Decoder::new(max_payload);
    let mut datagram = vec![0u8; MAX_DATAGRAM];
    let mut pcm: Vec<u8> = Vec::with_capacity(MAX_DATAGRAM * 2);
    let mut from_driver: Vec<u8> = Vec::with_capacity(8192);
    let mut packet = vec![0u8; RTP_HEADER + max_payload];
    loop {
        tokio::select! {
            _ = &mut stop => break,
            got = socket.recv_from(&mut datagram) => {
                let Ok((n, from)) = got else { continue };
                let Some(p) = parse(&datagram[..n]) else {
                    trace!(bytes = n, "not RTP: dropped");
                    continue;
                };
                if p.payload_type != PT_PCMU || p.payload.is_empty() {
                    // Comfort noise (13) and anything not negotiated.
                    continue;
                }
                if remote != Some(from) {
                    debug!(%from, "RTP from a new address: replying there");
                    remote = Some(from);
                }
                // One buffer for the whole call: nothing is allocated per
                // packet.
                pcm.clear();
                for &b in p.payload {
                    pcm.extend_from_slice(&g711::ulaw_to_linear(b).to_le_bytes());
                }
                let msg = Message::Audio { rate: media_core::SampleRate::HZ_8000, pcm: &pcm };
                let Ok(len) = audiosocket::encode(&msg, &mut frame) else { continue };
                if pipe.write_all(&frame[..len]).await.is_err() {
                    break;
                }
            }
            read = pipe.read_buf(&mut from_driver) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let over = take_replies(&decoder, &mut from_driver, |_, pcm| {
                    let Some(to) = remote else { return };
                    let count = (pcm.len() / 2).min(packet.len() - RTP_HEADER);
                    for (i, chunk) in pcm.chunks_exact(2).take(count).enumerate() {
                        let s = i16::from_le_bytes([chunk[0], chunk[1]]);
                        packet[RTP_HEADER + i] = g711::linear_to_ulaw(s);
                    }
                    header(&mut packet, sequence, timestamp, ssrc);
                    sequence = sequence.wrapping_add(1);
                    timestamp = timestamp.wrapping_add(count as u32);
                    // A full socket buffer drops the packet, as the network would.
                    let _ = socket.try_send_to(&packet[..RTP_HEADER + count], to);
                });
                if over {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_packet_parses() {
        let mut p = vec![0u8; RTP_HEADER + 160];
        header(&mut p, 0xfffe, 0x1234_5678, 7);
        let r = parse(&p).expect("valid");
        assert_eq!(
            (r.payload_type, r.sequence, r.timestamp),
            (0, 0xfffe, 0x1234_5678)
        );
        assert_eq!(r.payload.len(), 160);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut p = vec![
            0x80 | 0x20 | 0x10 | 0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        p.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]); // extension of one word
        p.extend_from_slice(&[0xaa; 5]);
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let r = parse(&p).expect("valid");
        assert_eq!(r.payload, &[0xaa; 5]);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x40; 20]).is_none()); // version 1
        assert!(parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none()); // CSRCs past the end
        assert!(parse(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200]).is_none()); // padding past the start
        assert!(parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none()); // short extension
    }
}
