//! The transports a call's driver carries, as legs of its one task:
//! AudioSocket over TCP, or RTP over UDP (SIP calls and Stasis external
//! media). A leg turns what arrives into the session's input (frames and
//! digits, not bytes) and sends what the session transmits.
//!
//! # RTP
//! Inbound, a SIP leg's packets go through the adaptive jitter buffer; every
//! `ptime` one frame comes out, decoded (or concealed, when lost) to PCM at
//! the codec's rate (8 kHz G.711, 16 kHz Opus). A Stasis leg's packets
//! (Asterisk's external media: µ-law, paced by Asterisk, on loopback) go to
//! the session as they come. Telephone-events (RFC 4733) skip the buffer
//! and become digits, exactly as AudioSocket DTMF.
//!
//! Outbound, the session paces its frames in real time; each is encoded
//! and sent at once, to where the peer's packets come from (symmetric RTP,
//! right behind NAT), or to the SDP address until the first packet arrives.
//! Nothing is sent while a SIP peer holds the call. A re-INVITE's new media
//! (codec, address, hold) arrives on a watch channel and takes effect
//! between packets.

use std::net::SocketAddr;
use std::time::Duration;

use media_core::audiosocket::{Decoder, HEADER_LEN};
use media_core::{
    CallId, EndReason, Frame, MAX_TRANSMIT, Resampler, SampleRate, Session, Time, Transmit, g711,
};
use sip_bridge::codec::MediaCodec;
use sip_bridge::jitter::{JitterBuffer, Playout};
use sip_bridge::rtp::{self, DtmfReceiver, RtpSender};
use sip_bridge::sdp::{Codec, Direction, Negotiated};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::config::AllowList;

/// A peer that does not take writes for 2 s is gone or stuck. Writes only
/// block once its receive window and hark's small send buffer (see
/// `server::SEND_BUFFER`) are full, so the call ends a few seconds after
/// the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;
/// Jitter buffer depth bounds, in frames: 40 ms to 300 ms at 20 ms.
const JITTER_MIN: usize = 2;
const JITTER_MAX: usize = 15;
/// G.711 µ-law's static payload type (Stasis external media).
const PT_PCMU: u8 = 0;

/// A call's transport.
pub(crate) enum Leg<S> {
    /// AudioSocket over TCP (or any byte stream).
    Socket(SocketLeg<S>),
    /// RTP over UDP.
    Rtp(Box<RtpLeg>),
}

/// What a leg's wait brought.
pub(crate) enum Input {
    /// Bytes are in the socket leg's buffer.
    Read,
    /// The peer closed the byte stream, or it failed.
    Closed,
    /// A datagram of this length from this address is in the RTP leg's buffer.
    Datagram(usize, SocketAddr),
    /// The RTP leg's next frame is due out of the jitter buffer.
    Tick,
    /// A re-INVITE changed the media (or the SIP side is gone: `false`).
    Media(bool),
    /// The other side of the call ended it (SIP BYE, Stasis hang-up).
    Stop,
}

/// Why a send failed: the call ends with the reason.
pub(crate) struct SendFailed(pub(crate) EndReason);

/// AudioSocket over a byte stream.
pub(crate) struct SocketLeg<S> {
    stream: S,
    decoder: Decoder,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> SocketLeg<S> {
    /// A leg on `stream`; `read` holds bytes already read (the UUID message).
    pub(crate) fn new(stream: S, max_payload: usize, read: Vec<u8>) -> Self {
        let mut rbuf = Vec::with_capacity(max_payload + HEADER_LEN + 4096);
        rbuf.extend_from_slice(&read);
        Self {
            stream,
            decoder: Decoder::new(max_payload),
            rbuf,
            wbuf: vec![0u8; MAX_TRANSMIT],
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Leg<S> {
    /// The rate the caller's audio comes at, when the transport says so
    /// before the first frame (the session speaks at it from the start).
    pub(crate) fn rate(&self) -> Option<SampleRate> {
        match self {
            Leg::Socket(_) => None,
            Leg::Rtp(r) => Some(r.stream.codec.rate()),
        }
    }

    /// Starts the session: an RTP leg knows its call's identity; a socket
    /// leg feeds what it already read (the UUID message).
    pub(crate) fn start(&mut self, session: &mut Session, now: Time) {
        match self {
            Leg::Socket(s) => {
                if !s.rbuf.is_empty() {
                    feed(session, &s.decoder, &mut s.rbuf, now);
                }
            }
            Leg::Rtp(r) => session.handle_start(now, CallId(r.uuid)),
        }
    }

    /// True when unfinished input is left (for the end reason).
    pub(crate) fn mid_message(&self) -> bool {
        match self {
            Leg::Socket(s) => !s.rbuf.is_empty(),
            Leg::Rtp(_) => false,
        }
    }

    /// Waits for the leg's next input. Cancel-safe: a branch of the
    /// driver's `select!`.
    pub(crate) async fn next(&mut self) -> Input {
        match self {
            Leg::Socket(s) => {
                s.rbuf.reserve(4096);
                match s.stream.read_buf(&mut s.rbuf).await {
                    Ok(0) => Input::Closed,
                    Ok(_) => Input::Read,
                    Err(e) => {
                        debug!("read failed: {e}");
                        Input::Closed
                    }
                }
            }
            Leg::Rtp(r) => r.next().await,
        }
    }

    /// Hands what [`next`](Self::next) brought to the session.
    pub(crate) fn take(&mut self, input: Input, session: &mut Session, now: Time) {
        match (self, input) {
            (Leg::Socket(s), Input::Read) => feed(session, &s.decoder, &mut s.rbuf, now),
            (leg, Input::Closed) => {
                let mid = leg.mid_message();
                session.handle_peer_closed(now, mid);
            }
            (Leg::Rtp(r), Input::Datagram(n, from)) => r.on_datagram(n, from, session, now),
            (Leg::Rtp(r), Input::Tick) => r.on_tick(session, now),
            (Leg::Rtp(r), Input::Media(true)) => {
                if !r.on_media() {
                    session.abort(
                        now,
                        EndReason::Internal("sip media: codec cannot run".into()),
                    );
                }
            }
            // As a byte stream's end: the other side has gone.
            (_, Input::Media(false) | Input::Stop) => session.handle_peer_closed(now, false),
            (_, _) => {}
        }
    }

    /// Sends one frame or the hangup.
    pub(crate) async fn send(&mut self, t: Transmit<'_>) -> Result<(), SendFailed> {
        match self {
            Leg::Socket(s) => {
                let n = t
                    .encode(&mut s.wbuf)
                    .map_err(|e| SendFailed(EndReason::Internal(format!("encode: {e}"))))?;
                trace!(bytes = n, "send");
                match tokio::time::timeout(WRITE_TIMEOUT, s.stream.write_all(&s.wbuf[..n])).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        debug!("write failed: {e}");
                        Err(SendFailed(EndReason::PeerClosed {
                            mid_message: !s.rbuf.is_empty(),
                        }))
                    }
                    Err(_) => Err(SendFailed(EndReason::Internal(
                        "peer stopped reading".into(),
                    ))),
                }
            }
            Leg::Rtp(r) => {
                if let Transmit::Audio(f) = t {
                    r.send(f);
                }
                Ok(())
            }
        }
    }

    /// Closes the leg once the call is over: the byte stream is shut down
    /// (after `durable`, the end on disk); an RTP leg tells its signalling.
    pub(crate) async fn close(self, durable: Option<crate::recording::DurableEnd>) {
        if let Some(d) = durable {
            let _ = tokio::time::timeout(Duration::from_secs(2), d.wait()).await;
        }
        match self {
            Leg::Socket(mut s) => {
                let _ = tokio::time::timeout(Duration::from_millis(200), s.stream.shutdown()).await;
            }
            Leg::Rtp(r) => (*r).close(),
        }
    }
}

/// Decodes every whole message in `rbuf` into the session, keeping a partial tail.
fn feed(session: &mut Session, decoder: &Decoder, rbuf: &mut Vec<u8>, now: Time) {
    let mut used = 0;
    while !session.is_closed() {
        match decoder.decode(&rbuf[used..]) {
            Ok((message, n)) => {
                session.handle_message(now, message);
                used += n;
            }
            Err(e) if e.is_incomplete() => break,
            Err(e) => {
                warn!("closing call: {e}");
                session.handle_protocol_error(now, e);
                break;
            }
        }
    }
    rbuf.drain(..used);
}

/// How an RTP leg's media is controlled.
pub(crate) enum Control {
    /// A SIP call: re-INVITEs change the media; packets only from `allow`.
    Sip {
        media: watch::Receiver<Negotiated>,
        allow: AllowList,
    },
    /// Stasis external media: µ-law, fixed, from Asterisk.
    Stasis,
}

/// The current media, both directions.
struct Stream {
    media: Negotiated,
    codec: MediaCodec,
    /// SIP only: Stasis media is paced by Asterisk on loopback.
    jitter: Option<JitterBuffer>,
    frame_samples: usize,
    /// Resamples the session's audio when it is not at the codec's rate.
    adapt: Option<Resampler>,
}

impl Stream {
    fn new(media: Negotiated, jitter: bool) -> Result<Stream, String> {
        let codec = MediaCodec::new(media.codec).map_err(|e| e.to_string())?;
        let ptime = ptime(&media);
        let frame_samples = codec.rate().samples_in(ptime);
        let jitter = jitter
            .then(|| JitterBuffer::new(ptime, media.codec.clock_rate(), JITTER_MIN, JITTER_MAX));
        Ok(Stream {
            media,
            codec,
            jitter,
            frame_samples,
            adapt: None,
        })
    }
}

fn ptime(media: &Negotiated) -> Duration {
    Duration::from_millis(u64::from(media.ptime.clamp(10, 60)))
}

/// The media of Stasis external media: µ-law at 20 ms, no events.
fn stasis_media() -> Negotiated {
    Negotiated {
        codec: Codec::Pcmu,
        payload_type: PT_PCMU,
        alternatives: Vec::new(),
        telephone_event: None,
        telephone_event_rate: 8_000,
        remote: SocketAddr::from(([0, 0, 0, 0], 0)),
        direction: Direction::SendRecv,
        ptime: 20,
        stream: 0,
        offered: Vec::new(),
    }
}

/// RTP over UDP, for one call.
pub(crate) struct RtpLeg {
    socket: UdpSocket,
    uuid: uuid::Uuid,
    control: Control,
    stop: oneshot::Receiver<()>,
    /// Told once the call is over (a SIP call's BYE).
    on_close: Option<Box<dyn FnOnce() + Send>>,
    stream: Stream,
    sender: RtpSender,
    first_out: bool,
    dtmf: DtmfReceiver,
    /// Where frames go: the SDP address until the peer's first packet,
    /// then where its packets come from.
    remote: Option<SocketAddr>,
    heard_from: Option<SocketAddr>,
    ssrc: Option<u32>,
    /// When the next frame is due out of the jitter buffer.
    next_tick: Instant,
    late_ticks: u64,
    /// The leg's clock for the jitter buffer.
    epoch: Instant,
    datagram: Vec<u8>,
    pcm: Vec<i16>,
    adapted: Vec<i16>,
    payload: Vec<u8>,
    packet: Vec<u8>,
}

impl RtpLeg {
    /// A SIP call's media on `socket`.
    pub(crate) fn sip(
        socket: UdpSocket,
        uuid: uuid::Uuid,
        mut media: watch::Receiver<Negotiated>,
        allow: AllowList,
        stop: oneshot::Receiver<()>,
        on_close: Box<dyn FnOnce() + Send>,
    ) -> Result<RtpLeg, String> {
        let now = media.borrow_and_update().clone();
        let remote = Some(now.remote);
        let stream = Stream::new(now, true)?;
        Ok(Self::with(
            socket,
            uuid,
            Control::Sip { media, allow },
            stop,
            Some(on_close),
            stream,
            remote,
        ))
    }

    /// Stasis external media on `socket` (Asterisk's address comes with
    /// its first packet).
    pub(crate) fn stasis(
        socket: UdpSocket,
        uuid: uuid::Uuid,
        stop: oneshot::Receiver<()>,
    ) -> Result<RtpLeg, String> {
        let stream = Stream::new(stasis_media(), false)?;
        Ok(Self::with(
            socket,
            uuid,
            Control::Stasis,
            stop,
            None,
            stream,
            None,
        ))
    }

    fn with(
        socket: UdpSocket,
        uuid: uuid::Uuid,
        control: Control,
        stop: oneshot::Receiver<()>,
        on_close: Option<Box<dyn FnOnce() + Send>>,
        stream: Stream,
        remote: Option<SocketAddr>,
    ) -> RtpLeg {
        let seed = uuid::Uuid::new_v4().as_u128();
        let now = Instant::now();
        RtpLeg {
            socket,
            uuid,
            control,
            stop,
            on_close,
            next_tick: now + ptime(&stream.media),
            stream,
            sender: RtpSender::new((seed ^ (seed >> 64)) as u64),
            first_out: true,
            dtmf: DtmfReceiver::default(),
            remote,
            heard_from: None,
            ssrc: None,
            late_ticks: 0,
            epoch: now,
            datagram: vec![0u8; MAX_DATAGRAM],
            pcm: Vec::with_capacity(4096),
            adapted: Vec::with_capacity(4096),
            payload: Vec::with_capacity(1500),
            packet: Vec::with_capacity(1500),
        }
    }

    fn label(&self) -> &'static str {
        match self.control {
            Control::Sip { .. } => "sip media",
            Control::Stasis => "ari media",
        }
    }

    fn holding(&self) -> bool {
        matches!(self.control, Control::Sip { .. }) && self.stream.media.on_hold()
    }

    async fn next(&mut self) -> Input {
        let ticking = self.stream.jitter.is_some();
        let next_tick = self.next_tick;
        let control = &mut self.control;
        let media = async move {
            match control {
                Control::Sip { media, .. } => media.changed().await.is_ok(),
                Control::Stasis => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut self.stop => Input::Stop,
            changed = media => Input::Media(changed),
            () = tokio::time::sleep_until(next_tick), if ticking => Input::Tick,
            got = self.socket.recv_from(&mut self.datagram) => match got {
                Ok((n, from)) => Input::Datagram(n, from),
                // An ICMP error from an earlier send: not this datagram's fault.
                Err(_) => Input::Datagram(0, SocketAddr::from(([0, 0, 0, 0], 0))),
            },
        }
    }

    /// A re-INVITE's media; false when its codec cannot run.
    fn on_media(&mut self) -> bool {
        let Control::Sip { media, .. } = &mut self.control else {
            return true;
        };
        let media = media.borrow_and_update().clone();
        info!(codec = ?media.codec, remote = %media.remote, hold = media.on_hold(), "sip media changed");
        if media.codec != self.stream.media.codec || media.ptime != self.stream.media.ptime {
            if !self.restart(media) {
                return false;
            }
        } else {
            self.stream.media = media;
        }
        if Some(self.stream.media.remote) != self.remote && !self.stream.media.on_hold() {
            self.remote = Some(self.stream.media.remote);
            self.heard_from = None;
        }
        true
    }

    /// Both directions on new media (another codec or packet time).
    fn restart(&mut self, media: Negotiated) -> bool {
        match Stream::new(media, self.stream.jitter.is_some()) {
            Ok(s) => self.stream = s,
            Err(e) => {
                warn!("{}: {e}", self.label());
                return false;
            }
        }
        self.next_tick = Instant::now() + ptime(&self.stream.media);
        self.first_out = true;
        self.ssrc = None;
        true
    }

    fn on_datagram(&mut self, n: usize, from: SocketAddr, session: &mut Session, now: Time) {
        if n == 0 {
            return;
        }
        if let Control::Sip { allow, .. } = &self.control
            && !allow.contains(from.ip())
        {
            return;
        }
        let datagram = std::mem::take(&mut self.datagram);
        self.packet_in(&datagram[..n], from, session, now);
        self.datagram = datagram;
    }

    fn packet_in(&mut self, datagram: &[u8], from: SocketAddr, session: &mut Session, now: Time) {
        let Ok(p) = rtp::parse(datagram) else {
            trace!(bytes = datagram.len(), "not RTP: dropped");
            return;
        };
        if self.heard_from != Some(from) {
            debug!(%from, "RTP from a new address: replying there");
            self.heard_from = Some(from);
            self.remote = Some(from);
        }
        if p.payload_type != self.stream.media.payload_type
            && let Some(media) = self.stream.media.switch_to(p.payload_type)
        {
            // The offerer chose another codec of our answer: follow it
            // both ways (it may not be able to translate ours).
            info!(codec = ?media.codec, "sip peer sends another answered codec: switching to it");
            if !self.restart(media) {
                session.abort(
                    now,
                    EndReason::Internal("sip media: codec cannot run".into()),
                );
                return;
            }
        }
        if p.payload_type == self.stream.media.payload_type {
            if self.ssrc.is_some_and(|s| s != p.ssrc) {
                // A new stream (the peer's media was re-anchored).
                debug!(ssrc = p.ssrc, "new RTP source: jitter buffer restarted");
                if let Some(j) = self.stream.jitter.as_mut() {
                    j.reset();
                }
            }
            self.ssrc = Some(p.ssrc);
            let clock = Time::from_micros(self.epoch.elapsed().as_micros() as u64);
            match self.stream.jitter.as_mut() {
                Some(j) => j.handle_packet(clock, p.sequence, p.timestamp, p.marker, p.payload),
                None => {
                    // Stasis: µ-law straight to the session (comfort
                    // noise and empty packets are not audio).
                    if p.payload.is_empty() {
                        return;
                    }
                    self.pcm.clear();
                    self.pcm
                        .extend(p.payload.iter().map(|&b| g711::ulaw_to_linear(b)));
                    session.handle_audio(now, Frame::new(SampleRate::HZ_8000, &self.pcm));
                }
            }
        } else if Some(p.payload_type) == self.stream.media.telephone_event
            && let Some(d) = self.dtmf.handle(p.timestamp, p.payload)
        {
            session.handle_dtmf(now, d as u8);
        }
    }

    /// One frame out of the jitter buffer into the session.
    fn on_tick(&mut self, session: &mut Session, now: Time) {
        let period = ptime(&self.stream.media);
        let late = self.next_tick.elapsed();
        if late > period {
            self.late_ticks += 1;
            // As a delayed interval: the next frame a period from now.
            self.next_tick = Instant::now() + period;
        } else {
            self.next_tick += period;
        }
        let Some(jitter) = self.stream.jitter.as_mut() else {
            return;
        };
        self.pcm.clear();
        let coded = match jitter.poll_frame() {
            Playout::Frame(p) => self.stream.codec.decode(&p, &mut self.pcm),
            Playout::Lost => self
                .stream
                .codec
                .conceal(self.stream.frame_samples, &mut self.pcm),
            Playout::Waiting => Ok(()),
        };
        if let Err(e) = coded {
            debug!("{}: {e}: frame dropped", self.label());
            return;
        }
        if !self.pcm.is_empty() {
            session.handle_audio(now, Frame::new(self.stream.codec.rate(), &self.pcm));
        }
    }

    /// Encodes one frame of the session's and sends it at once.
    fn send(&mut self, frame: Frame<'_>) {
        if self.holding() {
            return;
        }
        let Some(remote) = self.remote else {
            // Stasis: Asterisk's address comes with its first packet.
            return;
        };
        let want = self.stream.codec.rate();
        let input: &[i16] = if frame.rate == want {
            frame.samples
        } else {
            let fits = self
                .stream
                .adapt
                .as_ref()
                .is_some_and(|r| r.from_rate() == frame.rate && r.to_rate() == want);
            if !fits {
                self.stream.adapt = Resampler::new(frame.rate, want).ok();
            }
            self.adapted.clear();
            let Some(r) = self.stream.adapt.as_mut() else {
                return;
            };
            if r.process(frame.samples, &mut self.adapted).is_err() {
                return;
            }
            &self.adapted
        };
        let pt = self.stream.media.payload_type;
        let (sender, packet, socket, first_out) = (
            &mut self.sender,
            &mut self.packet,
            &self.socket,
            &mut self.first_out,
        );
        let result = self
            .stream
            .codec
            .encode(input, &mut self.payload, |data, ticks| {
                if sender.packet(pt, *first_out, data, ticks, packet).is_ok() {
                    if *first_out {
                        debug!(%remote, bytes = packet.len(), ticks, "first RTP packet sent");
                    }
                    *first_out = false;
                    // A full socket buffer drops the packet, as the network would.
                    let _ = socket.try_send_to(packet, remote);
                }
            });
        if let Err(e) = result {
            debug!("{}: {e}: frame not sent", self.label());
        }
    }

    fn close(mut self) {
        if let Some(s) = self.stream.jitter.as_ref().map(JitterBuffer::stats) {
            info!(
                received = s.received,
                played = s.played,
                lost = s.lost,
                late = s.late,
                restarts = s.restarts,
                duplicates = s.duplicates,
                underruns = s.underruns,
                late_ticks = self.late_ticks,
                "sip media ended"
            );
        }
        if let Some(tell) = self.on_close.take() {
            tell();
        }
    }
}
