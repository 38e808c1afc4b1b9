//! The RTP media of one SIP call, between the peer's UDP stream and the
//! call driver's AudioSocket byte stream.
//!
//! Inbound: packets go through the adaptive jitter buffer; every `ptime`
//! one frame comes out, decoded (or concealed, when lost) to PCM at the
//! codec's rate (8 kHz G.711, 16 kHz Opus) and written to the driver as an
//! AudioSocket audio message. Telephone-events (RFC 4733) skip the buffer
//! and become AudioSocket DTMF messages, so the conversation state machine
//! sees keypresses exactly as on an Asterisk call.
//!
//! Outbound: the driver paces its replies in real time; each frame it
//! writes is encoded and sent at once, to where the peer's packets come
//! from (symmetric RTP, right behind NAT), or to the SDP address until the
//! first packet arrives. Nothing is sent while the peer holds the call.
//!
//! A re-INVITE's new media (codec, address, hold) arrives on a watch
//! channel and takes effect between packets.

use std::net::SocketAddr;
use std::time::Duration;

use media_core::audiosocket::{self, Decoder, Message};
use media_core::{Resampler, SampleRate, Time};
use sip_bridge::codec::MediaCodec;
use sip_bridge::jitter::{JitterBuffer, Playout};
use sip_bridge::rtp::{self, DtmfReceiver, RtpSender};
use sip_bridge::sdp::Negotiated;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::config::AllowList;
use crate::driver::take_replies;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;
/// Jitter buffer depth bounds, in frames: 40 ms to 300 ms at 20 ms.
const JITTER_MIN: usize = 2;
const JITTER_MAX: usize = 15;

/// What a leg needs to run.
pub(super) struct Leg {
    pub(super) socket: UdpSocket,
    pub(super) pipe: DuplexStream,
    pub(super) uuid: uuid::Uuid,
    pub(super) media: watch::Receiver<Negotiated>,
    pub(super) stop: oneshot::Receiver<()>,
    pub(super) allow: AllowList,
    pub(super) max_payload: usize,
}

/// One direction's state for the current media.
struct Stream {
    media: Negotiated,
    codec: MediaCodec,
    jitter: JitterBuffer,
    frame_samples: usize,
    /// Resamples the driver's audio when it is not at the codec's rate
    /// (a greeting spoken before the first caller frame fixed the rate).
    adapt: Option<Resampler>,
}

impl Stream {
    fn new(media: Negotiated) -> Result<Stream, String> {
        let codec = MediaCodec::new(media.codec).map_err(|e| e.to_string())?;
        let ptime = Duration::from_millis(u64::from(media.ptime.clamp(10, 60)));
        let frame_samples = codec.rate().samples_in(ptime);
        let jitter = JitterBuffer::new(ptime, media.codec.clock_rate(), JITTER_MIN, JITTER_MAX);
        Ok(Stream {
            media,
            codec,
            jitter,
            frame_samples,
            adapt: None,
        })
    }

    fn ptime(&self) -> Duration {
        Duration::from_millis(u64::from(self.media.ptime.clamp(10, 60)))
    }
}

/// Runs the leg until the call ends on either side.
pub(super) async fn run(mut leg: Leg) {
    let mut stream = match Stream::new(leg.media.borrow_and_update().clone()) {
        Ok(s) => s,
        Err(e) => {
            warn!("sip media: {e}");
            return;
        }
    };
    let mut wire = vec![0u8; audiosocket::HEADER_LEN + leg.max_payload.max(2048)];
    // The UUID, then one frame of silence at the codec's rate in the same
    // write: the driver reads both at once and so knows the rate before the
    // greeting is synthesized (it would be made at 8 kHz, then played as
    // 16 kHz, at twice the speed, on an Opus call).
    let silence = vec![0u8; stream.frame_samples * 2];
    let mut hello = Vec::with_capacity(64 + silence.len());
    let first = Message::Audio {
        rate: stream.codec.rate(),
        pcm: &silence,
    };
    for msg in [Message::Uuid(leg.uuid), first] {
        match audiosocket::encode(&msg, &mut wire) {
            Ok(n) => hello.extend_from_slice(&wire[..n]),
            Err(e) => {
                warn!("sip media: {e}");
                return;
            }
        }
    }
    if leg.pipe.write_all(&hello).await.is_err() {
        return;
    }
    let start = Instant::now();
    let now = || Time::from_micros(start.elapsed().as_micros() as u64);
    let seed = uuid::Uuid::new_v4().as_u128() as u64;
    let mut sender = RtpSender::new(seed);
    let mut first_out = true;
    let mut dtmf = DtmfReceiver::default();
    let mut remote = stream.media.remote;
    let mut heard_from: Option<SocketAddr> = None;
    let mut ssrc: Option<u32> = None;
    let decoder = Decoder::new(leg.max_payload);
    let mut datagram = vec![0u8; MAX_DATAGRAM];
    let mut pcm: Vec<i16> = Vec::with_capacity(4096);
    let mut bytes: Vec<u8> = Vec::with_capacity(8192);
    let mut from_driver: Vec<u8> = Vec::with_capacity(8192);
    let mut samples: Vec<i16> = Vec::with_capacity(4096);
    let mut adapted: Vec<i16> = Vec::with_capacity(4096);
    let mut payload: Vec<u8> = Vec::with_capacity(1500);
    let mut packet: Vec<u8> = Vec::with_capacity(1500);
    let mut ticker = tokio::time::interval(stream.ptime());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut late_ticks = 0u64;
    loop {
        tokio::select! {
            _ = &mut leg.stop => break,
            changed = leg.media.changed() => {
                if changed.is_err() {
                    break;
                }
                let media = leg.media.borrow_and_update().clone();
                info!(codec = ?media.codec, remote = %media.remote, hold = media.on_hold(), "sip media changed");
                if media.codec != stream.media.codec || media.ptime != stream.media.ptime {
                    let Some(t) = restart(&mut stream, media) else { break };
                    ticker = t;
                    first_out = true;
                    ssrc = None;
                } else {
                    stream.media = media;
                }
                if stream.media.remote != remote && !stream.media.on_hold() {
                    remote = stream.media.remote;
                    heard_from = None;
                }
            }
            at = ticker.tick() => {
                if at.elapsed() > stream.ptime() {
                    late_ticks += 1;
                }
                pcm.clear();
                let coded = match stream.jitter.poll_frame() {
                    Playout::Frame(p) => stream.codec.decode(&p, &mut pcm),
                    Playout::Lost => stream.codec.conceal(stream.frame_samples, &mut pcm),
                    Playout::Waiting => Ok(()),
                };
                if let Err(e) = coded {
                    debug!("sip media: {e}: frame dropped");
                    continue;
                }
                if pcm.is_empty() {
                    continue;
                }
                bytes.clear();
                for s in &pcm {
                    bytes.extend_from_slice(&s.to_le_bytes());
                }
                let msg = Message::Audio { rate: stream.codec.rate(), pcm: &bytes };
                let Ok(n) = audiosocket::encode(&msg, &mut wire) else { continue };
                if leg.pipe.write_all(&wire[..n]).await.is_err() {
                    break;
                }
            }
            got = leg.socket.recv_from(&mut datagram) => {
                let Ok((n, from)) = got else { continue };
                if !leg.allow.contains(from.ip()) {
                    continue;
                }
                let Ok(p) = rtp::parse(&datagram[..n]) else { continue };
                if heard_from != Some(from) {
                    debug!(%from, "RTP from a new address: replying there");
                    heard_from = Some(from);
                    remote = from;
                }
                if p.payload_type != stream.media.payload_type
                    && let Some(media) = stream.media.switch_to(p.payload_type)
                {
                    // The offerer chose another codec of our answer: follow
                    // it both ways (it may not be able to translate ours).
                    info!(codec = ?media.codec, "sip peer sends another answered codec: switching to it");
                    let Some(t) = restart(&mut stream, media) else { break };
                    ticker = t;
                    first_out = true;
                    ssrc = None;
                }
                if p.payload_type == stream.media.payload_type {
                    if ssrc.is_some_and(|s| s != p.ssrc) {
                        // A new stream (the peer's media was re-anchored).
                        debug!(ssrc = p.ssrc, "new RTP source: jitter buffer restarted");
                        stream.jitter.reset();
                    }
                    ssrc = Some(p.ssrc);
                    stream.jitter.handle_packet(now(), p.sequence, p.timestamp, p.marker, &p.payload);
                } else if Some(p.payload_type) == stream.media.telephone_event
                    && let Some(d) = dtmf.handle(p.timestamp, &p.payload)
                {
                    let Ok(n) = audiosocket::encode(&Message::Dtmf(d as u8), &mut wire) else { continue };
                    if leg.pipe.write_all(&wire[..n]).await.is_err() {
                        break;
                    }
                }
            }
            read = leg.pipe.read_buf(&mut from_driver) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let over = take_replies(&decoder, &mut from_driver, |rate, raw| {
                    if stream.media.on_hold() {
                        return;
                    }
                    samples.clear();
                    audiosocket::pcm_to_samples(raw, &mut samples);
                    let input = match adapt(&mut stream, rate, &samples, &mut adapted) {
                        Some(a) => a,
                        None => &samples,
                    };
                    let pt = stream.media.payload_type;
                    let result = stream.codec.encode(input, &mut payload, |data, ticks| {
                        if sender.packet(pt, first_out, data, ticks, &mut packet).is_ok() {
                            if first_out {
                                debug!(%remote, bytes = packet.len(), ticks, "first RTP packet sent");
                            }
                            first_out = false;
                            // A full socket buffer drops the packet, as the network would.
                            let _ = leg.socket.try_send_to(&packet, remote);
                        }
                    });
                    if let Err(e) = result {
                        debug!("sip media: {e}: frame not sent");
                    }
                });
                if over {
                    break;
                }
            }
        }
    }
    let s = stream.jitter.stats();
    info!(
        received = s.received,
        played = s.played,
        lost = s.lost,
        late = s.late,
        restarts = s.restarts,
        duplicates = s.duplicates,
        underruns = s.underruns,
        late_ticks,
        "sip media ended"
    );
}

/// Both directions on new media (another codec or packet time): the new
/// stream and its frame clock, or `None` (logged) if its codec cannot run.
fn restart(stream: &mut Stream, media: Negotiated) -> Option<tokio::time::Interval> {
    match Stream::new(media) {
        Ok(s) => *stream = s,
        Err(e) => {
            warn!("sip media: {e}");
            return None;
        }
    }
    let mut ticker = tokio::time::interval(stream.ptime());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Some(ticker)
}

/// The driver's samples at the codec's rate: `None` when they already are,
/// else resampled into `out`.
fn adapt<'a>(
    stream: &mut Stream,
    rate: SampleRate,
    samples: &[i16],
    out: &'a mut Vec<i16>,
) -> Option<&'a [i16]> {
    let want = stream.codec.rate();
    if rate == want {
        return None;
    }
    let fits = stream
        .adapt
        .as_ref()
        .is_some_and(|r| r.from_rate() == rate && r.to_rate() == want);
    if !fits {
        stream.adapt = Resampler::new(rate, want).ok();
    }
    out.clear();
    stream.adapt.as_mut()?.process(samples, out).ok()?;
    Some(out)
}
