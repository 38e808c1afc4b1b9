//! SDP (RFC 4566) for audio calls, and the offer/answer choice (RFC 3264).
//!
//! Parsing is strict about the lines it needs (`v=`, `o=`, `c=` where the
//! media needs one, `m=`) and tolerant of everything else: unknown
//! attributes and line types are kept out of the way, not errors. Lines may
//! end in CRLF or LF. Nothing here panics on input; every rejection says
//! which line and why.
//!
//! [`negotiate`] picks the first codec in our preference order that the
//! offer's first audio stream carries, plus telephone-event (at the codec's
//! clock rate if offered, as RFC 4733 §2.1 asks, else at 8 kHz, which is
//! all many UAs offer beside Opus), and the direction to answer with. [`answer`]
//! writes the SDP answer for that choice.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Most SDP accepted, in bytes: an audio offer is well under 2 KiB.
pub const MAX_SDP: usize = 16 * 1024;

/// A codec hark can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law, 8 kHz, static payload type 0.
    Pcmu,
    /// G.711 A-law, 8 kHz, static payload type 8.
    Pcma,
    /// Opus, 48 kHz clock (RFC 7587), dynamic payload type.
    Opus,
}

impl Codec {
    /// The `rtpmap` encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8_000,
            Codec::Opus => 48_000,
        }
    }

    /// The static payload type, if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0x00),
            Codec::Pcma => Some(0x08),
            Codec::Opus => None,
        }
    }

    /// Parses a configured codec name (`pcmu`, `pcma`, `opus`).
    pub fn from_config(name: &str) -> Option<Codec> {
        match name.to_ascii_lowercase().as_str() {
            "pcmu" | "ulaw" => Some(Codec::Pcmu),
            "pcma" | "alaw" => Some(Codec::Pcma),
            "opus" => Some(Codec::Opus),
            _ => None,
        }
    }
}

/// Which way media flows, from the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// The writer only sends (it puts the other side on hold).
    SendOnly,
    /// The writer only receives.
    RecvOnly,
    /// No media either way.
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction to answer an offer of `self` with (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// One `a=rtpmap` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type.
    pub payload_type: u8,
    /// The encoding name as written.
    pub encoding: String,
    /// The clock rate.
    pub clock_rate: u32,
    /// Channels, if given.
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    /// The RTP port (0: the stream is refused or removed).
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, ...
    pub proto: String,
    /// Payload types in the offerer's preference order.
    pub formats: Vec<u8>,
    /// `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines: payload type and parameters.
    pub fmtps: Vec<(u8, String)>,
    /// The media-level `c=` address, if any.
    pub connection: Option<IpAddr>,
    /// The direction (session-level if the media has none).
    pub direction: Direction,
    /// `a=ptime`, in ms.
    pub ptime: Option<u32>,
}

impl Media {
    /// The encoding of payload type `pt`: its rtpmap, else the static
    /// assignment (RFC 3551) for 0 and 8.
    fn encoding(&self, pt: u8) -> Option<(String, u32)> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.payload_type == pt) {
            return Some((m.encoding.to_ascii_lowercase(), m.clock_rate));
        }
        match pt {
            0x00 => Some(("pcmu".into(), 8_000)),
            0x08 => Some(("pcma".into(), 8_000)),
            _ => None,
        }
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` version.
    pub version: u64,
    /// The session-level `c=` address, if any.
    pub connection: Option<IpAddr>,
    /// The `m=` sections, in order.
    pub media: Vec<Media>,
}

/// Why an SDP body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP`].
    #[error("SDP of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The body is not UTF-8.
    #[error("SDP is not UTF-8")]
    NotUtf8,
    /// A line is malformed.
    #[error("SDP line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A required line is missing.
    #[error("SDP has no {0} line")]
    Missing(&'static str),
}

/// Why an offer cannot be answered (SIP 488 Not Acceptable Here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// No `m=audio` with a port other than 0 over RTP/AVP.
    #[error("the offer has no usable RTP/AVP audio stream")]
    NoAudio,
    /// None of our codecs is offered.
    #[error("no codec in common (offered: {0})")]
    NoCommonCodec(String),
    /// The audio stream has no address to send to.
    #[error("the audio stream has no connection address")]
    NoAddress,
}

/// What an offer and our preferences agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec.
    pub codec: Codec,
    /// Its payload type (the offerer's number for it).
    pub payload_type: u8,
    /// The other codecs both sides have, in our order of preference, with
    /// the offerer's payload types. The answer lists them after `codec`,
    /// so an offerer that cannot translate `codec` (Asterisk without
    /// codec_opus) can pick one of them; a peer that sends one of them is
    /// followed (see `Negotiated::switch_to`).
    pub alternatives: Vec<(Codec, u8)>,
    /// The telephone-event payload type, if offered.
    pub telephone_event: Option<u8>,
    /// Its clock rate: the codec's when offered so, else 8,000.
    pub telephone_event_rate: u32,
    /// Where the offerer wants RTP. An unspecified address (`0.0.0.0`)
    /// means hold: send nothing.
    pub remote: SocketAddr,
    /// The direction to answer with.
    pub direction: Direction,
    /// Packet time to send, in ms (the offer's `ptime`, else 20).
    pub ptime: u32,
    /// Index of the audio stream among the offer's `m=` lines.
    pub stream: usize,
    /// The offer's `m=` lines, for the answer (each must be answered).
    pub offered: Vec<Media>,
}

impl Negotiated {
    /// The same media with the answered codec of `payload_type` as the
    /// one in use (the peer chose it); `None` if it was not answered.
    pub fn switch_to(&self, payload_type: u8) -> Option<Negotiated> {
        let &(codec, pt) = self
            .alternatives
            .iter()
            .find(|(_, pt)| *pt == payload_type)?;
        let mut n = self.clone();
        n.alternatives.retain(|&(_, p)| p != pt);
        n.alternatives.insert(0, (self.codec, self.payload_type));
        n.codec = codec;
        n.payload_type = pt;
        Some(n)
    }

    /// True when the offerer holds the call (it sends only, or nothing, or
    /// gives no address).
    pub fn on_hold(&self) -> bool {
        matches!(self.direction, Direction::RecvOnly | Direction::Inactive)
            || self.remote.ip().is_unspecified()
    }
}

/// Parses an SDP body.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    if body.len() > MAX_SDP {
        return Err(SdpError::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut version = false;
    let mut origin: Option<(u64, u64)> = None;
    let mut connection = None;
    let mut session_direction = Direction::SendRecv;
    let mut media: Vec<Media> = Vec::new();
    // Media directions seen explicitly, per stream.
    let mut explicit: Vec<bool> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let bad = |reason| SdpError::Line {
            line: line_no,
            reason,
        };
        let (kind, value) = match line.as_bytes() {
            [k, b'=', ..] => (*k, &line[2..]),
            _ => return Err(bad("not of the form x=value")),
        };
        match kind {
            b'v' => {
                if value != "0" {
                    return Err(bad("version must be 0"));
                }
                version = true;
            }
            b'o' => {
                let f: Vec<&str> = value.split(' ').collect();
                if f.len() != 6 {
                    return Err(bad("o= needs 6 fields"));
                }
                let id = f[1]
                    .parse()
                    .map_err(|_| bad("o= session id is not a number"))?;
                let ver = f[2]
                    .parse()
                    .map_err(|_| bad("o= version is not a number"))?;
                origin = Some((id, ver));
            }
            b'c' => {
                let addr =
                    parse_connection(value).ok_or_else(|| bad("c= is not IN IP4/IP6 address"))?;
                match media.last_mut() {
                    Some(m) => m.connection = Some(addr),
                    None => connection = Some(addr),
                }
            }
            b'm' => {
                let f: Vec<&str> = value.split(' ').filter(|s| !s.is_empty()).collect();
                if f.len() < 4 {
                    return Err(bad("m= needs media, port, proto and formats"));
                }
                // "port/count" is allowed; hark uses the first port.
                let port = f[1]
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| bad("m= port is not a number"))?;
                let mut formats = Vec::with_capacity(f.len() - 3);
                if f[2].contains("RTP/") {
                    for fmt in &f[3..] {
                        let pt: u8 = fmt
                            .parse()
                            .map_err(|_| bad("m= format is not a payload type"))?;
                        if pt > 127 {
                            return Err(bad("payload type over 127"));
                        }
                        formats.push(pt);
                    }
                }
                media.push(Media {
                    kind: f[0].to_string(),
                    port,
                    proto: f[2].to_string(),
                    formats,
                    rtpmaps: Vec::new(),
                    fmtps: Vec::new(),
                    connection: None,
                    direction: session_direction,
                    ptime: None,
                });
                explicit.push(false);
            }
            b'a' => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                let direction = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                match (media.last_mut(), direction) {
                    (None, Some(d)) => session_direction = d,
                    (Some(m), Some(d)) => {
                        m.direction = d;
                        if let Some(e) = explicit.last_mut() {
                            *e = true;
                        }
                    }
                    (Some(m), None) => match name {
                        "rtpmap" => m
                            .rtpmaps
                            .push(parse_rtpmap(arg).ok_or_else(|| bad("malformed a=rtpmap"))?),
                        "fmtp" => {
                            let (pt, params) = arg.split_once(' ').unwrap_or((arg, ""));
                            let pt = pt
                                .parse()
                                .map_err(|_| bad("a=fmtp payload type is not a number"))?;
                            m.fmtps.push((pt, params.to_string()));
                        }
                        "ptime" => {
                            let p: u32 = arg
                                .trim()
                                .parse()
                                .map_err(|_| bad("a=ptime is not a number"))?;
                            if !(10..=120).contains(&p) {
                                return Err(bad("a=ptime out of 10..=120 ms"));
                            }
                            m.ptime = Some(p);
                        }
                        _ => {}
                    },
                    (None, None) => {}
                }
            }
            // s=, t=, b=, i=, u=, e=, p=, z=, k=, r= and others: not needed.
            k if k.is_ascii_lowercase() => {}
            _ => return Err(bad("line type is not a lowercase letter")),
        }
    }
    // A session-level direction after the first m= never happens in valid
    // SDP; directions given before any m= apply to streams without one.
    for (m, e) in media.iter_mut().zip(&explicit) {
        if !e && m.direction == Direction::SendRecv {
            m.direction = session_direction;
        }
    }
    if !version {
        return Err(SdpError::Missing("v="));
    }
    let (session_id, version) = origin.ok_or(SdpError::Missing("o="))?;
    Ok(SessionDescription {
        session_id,
        version,
        connection,
        media,
    })
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    let f: Vec<&str> = value.split(' ').collect();
    if f.len() != 3 || f[0] != "IN" {
        return None;
    }
    // Multicast "addr/ttl" is not for calls; the address part is enough.
    let addr = f[2].split('/').next()?;
    match f[1] {
        "IP4" => addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        "IP6" => addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    }
}

fn parse_rtpmap(arg: &str) -> Option<RtpMap> {
    let (pt, rest) = arg.split_once(' ')?;
    let payload_type: u8 = pt.parse().ok().filter(|p| *p <= 127)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_string();
    if encoding.is_empty() {
        return None;
    }
    let clock_rate: u32 = parts.next()?.parse().ok().filter(|r| *r > 0)?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    Some(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

/// Chooses the codec for the first usable audio stream of `offer`: the
/// first of `preferences` the offer carries.
pub fn negotiate(
    offer: &SessionDescription,
    preferences: &[Codec],
) -> Result<Negotiated, NegotiationError> {
    let (stream, media) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == "audio" && m.port != 0 && m.proto == "RTP/AVP")
        .ok_or(NegotiationError::NoAudio)?;
    let mut shared = Vec::new();
    for &codec in preferences {
        let found = media.formats.iter().copied().find(|&pt| {
            media.encoding(pt).is_some_and(|(name, rate)| {
                name == codec.name().to_ascii_lowercase() && rate == codec.clock_rate()
            })
        });
        if let Some(pt) = found
            && !shared.iter().any(|&(c, _)| c == codec)
        {
            shared.push((codec, pt));
        }
    }
    let mut shared = shared.into_iter();
    let Some((codec, payload_type)) = shared.next() else {
        let offered: Vec<String> = media
            .formats
            .iter()
            .map(|&pt| {
                media
                    .encoding(pt)
                    .map_or_else(|| pt.to_string(), |(n, r)| format!("{n}/{r}"))
            })
            .collect();
        return Err(NegotiationError::NoCommonCodec(offered.join(", ")));
    };
    let event_at = |rate: u32| {
        media.formats.iter().copied().find(|&pt| {
            media
                .encoding(pt)
                .is_some_and(|(n, r)| n == "telephone-event" && r == rate)
        })
    };
    let (telephone_event, telephone_event_rate) = match event_at(codec.clock_rate()) {
        Some(pt) => (Some(pt), codec.clock_rate()),
        None => (event_at(8_000), 8_000),
    };
    let ip = media
        .connection
        .or(offer.connection)
        .ok_or(NegotiationError::NoAddress)?;
    Ok(Negotiated {
        codec,
        payload_type,
        alternatives: shared.collect(),
        telephone_event,
        telephone_event_rate,
        remote: SocketAddr::new(ip, media.port),
        direction: media.direction.answer(),
        ptime: media.ptime.unwrap_or(20),
        stream,
        offered: offer.media.clone(),
    })
}

/// Writes the answer to the offer `n` was negotiated from: our address and
/// RTP port on the chosen stream; every other offered stream refused with
/// port 0, as RFC 3264 §6 requires.
pub fn answer(n: &Negotiated, local: SocketAddr, session_id: u64, version: u64) -> String {
    let ip = match local.ip() {
        IpAddr::V4(a) => format!("IP4 {a}"),
        IpAddr::V6(a) => format!("IP6 {a}"),
    };
    let mut s = String::with_capacity(512);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=hark {session_id} {version} IN {ip}\r\ns=hark\r\nc=IN {ip}\r\nt=0 0\r\n"
    );
    for (i, m) in n.offered.iter().enumerate() {
        if i != n.stream {
            let fmt = m
                .formats
                .first()
                .map_or_else(|| "0".to_string(), u8::to_string);
            let _ = write!(s, "m={} 0 {} {fmt}\r\n", m.kind, m.proto);
            continue;
        }
        let codecs =
            std::iter::once((n.codec, n.payload_type)).chain(n.alternatives.iter().copied());
        let _ = write!(s, "m=audio {} RTP/AVP", local.port());
        for (_, pt) in codecs.clone() {
            let _ = write!(s, " {pt}");
        }
        if let Some(te) = n.telephone_event {
            let _ = write!(s, " {te}");
        }
        s.push_str("\r\n");
        for (codec, pt) in codecs {
            match codec {
                Codec::Opus => {
                    let _ = write!(s, "a=rtpmap:{pt} opus/48000/2\r\n");
                    let _ = write!(s, "a=fmtp:{pt} useinbandfec=1\r\n");
                }
                c => {
                    let _ = write!(s, "a=rtpmap:{pt} {}/{}\r\n", c.name(), c.clock_rate());
                }
            }
        }
        if let Some(te) = n.telephone_event {
            let _ = write!(
                s,
                "a=rtpmap:{te} telephone-event/{}\r\n",
                n.telephone_event_rate
            );
            let _ = write!(s, "a=fmtp:{te} 0-16\r\n");
        }
        let _ = write!(
            s,
            "a=ptime:{}\r\na={}\r\n",
            n.ptime,
            n.direction.attribute()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASTERISK_OFFER: &str = "v=0\r\n\
o=- 1763800000 1763800000 IN IP4 192.0.2.10\r\n\
s=Asterisk\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 14000 RTP/AVP 107 0 8 101\r\n\
a=rtpmap:107 opus/48000/2\r\n\
a=fmtp:107 useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

    fn offer(text: &str) -> SessionDescription {
        parse(text.as_bytes()).expect("valid SDP")
    }

    #[test]
    fn an_asterisk_offer_parses() {
        let o = offer(ASTERISK_OFFER);
        assert_eq!((o.session_id, o.version), (1_763_800_000, 1_763_800_000));
        let m = &o.media[0];
        assert_eq!(m.formats, vec![107, 0, 8, 101]);
        assert_eq!(m.rtpmaps[0].channels, Some(2));
        assert_eq!(m.ptime, Some(20));
        assert_eq!(m.direction, Direction::SendRecv);
        assert_eq!(o.connection, Some("192.0.2.10".parse().expect("ip")));
    }

    /// The negotiation table: offer's formats and rtpmaps, our preference,
    /// the expected codec and payload type (or a 488).
    #[test]
    fn negotiation_table() {
        let pcmu_first = [Codec::Pcmu, Codec::Pcma, Codec::Opus];
        let opus_first = [Codec::Opus, Codec::Pcmu, Codec::Pcma];
        let alaw_only = [Codec::Pcma];
        let m = |formats: &str, maps: &str| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {formats}\r\n{maps}"
            )
        };
        // (codec, payload type, telephone-event), or None for a 488.
        type Want = Option<(Codec, u8, Option<u8>)>;
        let cases: Vec<(String, &[Codec], Want)> = vec![
            (m("0 8", ""), &pcmu_first, Some((Codec::Pcmu, 0, None))),
            (m("8 0", ""), &pcmu_first, Some((Codec::Pcmu, 0, None))),
            (m("8 0", ""), &alaw_only, Some((Codec::Pcma, 8, None))),
            (m("0", ""), &alaw_only, None),
            (
                m(
                    "107 0 101",
                    "a=rtpmap:107 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n",
                ),
                &opus_first,
                // Only 8 kHz events beside Opus: taken (baresip, older phones).
                Some((Codec::Opus, 107, Some(101))),
            ),
            (
                m(
                    "107 0 101 102",
                    "a=rtpmap:107 OPUS/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:102 telephone-event/48000\r\n",
                ),
                &opus_first,
                Some((Codec::Opus, 107, Some(102))),
            ),
            (
                m(
                    "107 0 101",
                    "a=rtpmap:107 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n",
                ),
                &pcmu_first,
                Some((Codec::Pcmu, 0, Some(101))),
            ),
            // A dynamic number for PCMU is honoured.
            (
                m("96", "a=rtpmap:96 PCMU/8000\r\n"),
                &pcmu_first,
                Some((Codec::Pcmu, 96, None)),
            ),
            // Opus at the wrong clock is not Opus.
            (m("107", "a=rtpmap:107 opus/16000\r\n"), &opus_first, None),
            (m("9 18", "a=rtpmap:9 G722/8000\r\n"), &pcmu_first, None),
            // An unmapped dynamic type is unknown, not guessed.
            (m("100", ""), &pcmu_first, None),
        ];
        for (text, prefs, want) in cases {
            let got = negotiate(&offer(&text), prefs)
                .map(|n| (n.codec, n.payload_type, n.telephone_event));
            match want {
                Some(w) => assert_eq!(got, Ok(w), "{text}"),
                None => assert!(
                    matches!(got, Err(NegotiationError::NoCommonCodec(_))),
                    "{text}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn hold_and_directions() {
        let base = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let n = negotiate(&offer(&format!("{base}a=sendonly\r\n")), &[Codec::Pcmu]).expect("ok");
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(n.on_hold());
        let n = negotiate(&offer(&format!("{base}a=inactive\r\n")), &[Codec::Pcmu]).expect("ok");
        assert_eq!(n.direction, Direction::Inactive);
        // Old-style hold: c=0.0.0.0.
        let old = base.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0");
        assert!(
            negotiate(&offer(&old), &[Codec::Pcmu])
                .expect("ok")
                .on_hold()
        );
        // A session-level direction applies to the stream.
        let session = base.replace("t=0 0\r\n", "t=0 0\r\na=recvonly\r\n");
        let n = negotiate(&offer(&session), &[Codec::Pcmu]).expect("ok");
        assert_eq!(n.direction, Direction::SendOnly);
        let n = negotiate(&offer(base), &[Codec::Pcmu]).expect("ok");
        assert!(!n.on_hold());
    }

    #[test]
    fn the_answer_answers_every_stream() {
        let text = format!("{ASTERISK_OFFER}m=video 0 RTP/AVP 96\r\nm=video 5000 RTP/AVP 97\r\n");
        let n = negotiate(&offer(&text), &[Codec::Opus]).expect("ok");
        let a = answer(&n, "127.0.0.1:30000".parse().expect("addr"), 42, 1);
        let parsed = offer(&a);
        assert_eq!(parsed.media.len(), 3);
        assert_eq!(parsed.media[0].port, 30000);
        // telephone-event is offered at 8 kHz only: answered at 8 kHz.
        assert_eq!(parsed.media[0].formats, vec![107, 101]);
        assert_eq!(parsed.media[1].port, 0);
        assert_eq!(parsed.media[2].port, 0);
        // The answer negotiates to the same codec from our side.
        let back = negotiate(&parsed, &[Codec::Pcmu, Codec::Opus]).expect("ok");
        assert_eq!((back.codec, back.payload_type), (Codec::Opus, 107));
        assert!(a.contains("a=rtpmap:107 opus/48000/2\r\n"));
        assert!(a.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        // With PCMU the 8 kHz telephone-event is answered.
        let n = negotiate(&offer(&text), &[Codec::Pcmu]).expect("ok");
        let a = answer(&n, "127.0.0.1:30000".parse().expect("addr"), 42, 2);
        assert!(a.contains("m=audio 30000 RTP/AVP 0 101\r\n"));
        assert!(a.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
        assert!(a.contains("a=ptime:20\r\na=sendrecv\r\nm=video 0 RTP/AVP 96\r\n"));
    }

    /// Asterisk 22 has no Opus codec of its own (codec_opus is a separate
    /// download): an answer of Opus alone fails there with `Unable to find
    /// a codec translation path`. Every shared codec is answered, in our
    /// order, so the offerer can take one it translates
    /// (`res_pjsip_sdp_rtp.c` picks from the joint capabilities).
    #[test]
    fn the_answer_lists_every_shared_codec_in_our_order() {
        let n = negotiate(
            &offer(ASTERISK_OFFER),
            &[Codec::Opus, Codec::Pcma, Codec::Pcmu],
        )
        .expect("ok");
        assert_eq!((n.codec, n.payload_type), (Codec::Opus, 107));
        assert_eq!(n.alternatives, vec![(Codec::Pcma, 8), (Codec::Pcmu, 0)]);
        let a = answer(&n, "127.0.0.1:30000".parse().expect("addr"), 42, 1);
        assert!(a.contains("m=audio 30000 RTP/AVP 107 8 0 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:8 PCMA/8000\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:0 PCMU/8000\r\n"), "{a}");
        // A codec we do not have is not answered.
        let n = negotiate(&offer(ASTERISK_OFFER), &[Codec::Pcmu]).expect("ok");
        assert!(n.alternatives.is_empty());
        // The peer sends PCMA: both directions follow it, Opus stays answered.
        let n = negotiate(
            &offer(ASTERISK_OFFER),
            &[Codec::Opus, Codec::Pcma, Codec::Pcmu],
        )
        .expect("ok");
        let switched = n.switch_to(8).expect("PCMA was answered");
        assert_eq!((switched.codec, switched.payload_type), (Codec::Pcma, 8));
        assert_eq!(
            switched.alternatives,
            vec![(Codec::Opus, 107), (Codec::Pcmu, 0)]
        );
        assert!(n.switch_to(9).is_none());
    }

    #[test]
    fn refusals_name_the_line() {
        let cases: &[(&str, &str)] = &[
            ("", "v="),
            ("v=0\r\n", "o="),
            ("v=1\r\n", "line 1"),
            ("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n", "line 2"),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 999.1.1.1\r\n",
                "line 3",
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
                "line 3",
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 300\r\n",
                "line 3",
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0\r\n",
                "line 4",
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=ptime:5000\r\n",
                "line 4",
            ),
            ("v=0\r\nnonsense\r\n", "line 2"),
            ("v=0\r\nX=1\r\n", "line 2"),
        ];
        for (text, want) in cases {
            let e = parse(text.as_bytes()).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(matches!(parse(&[0xff, 0xfe]), Err(SdpError::NotUtf8)));
        assert!(matches!(
            parse(&vec![b'a'; MAX_SDP + 1]),
            Err(SdpError::TooLarge(_))
        ));
        // No audio, a refused stream, SRTP only, no address: 488 reasons.
        let head = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n";
        for (m, err) in [
            (
                "m=video 4000 RTP/AVP 96\r\nc=IN IP4 1.2.3.4\r\n",
                NegotiationError::NoAudio,
            ),
            (
                "m=audio 0 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n",
                NegotiationError::NoAudio,
            ),
            (
                "m=audio 4000 RTP/SAVP 0\r\nc=IN IP4 1.2.3.4\r\n",
                NegotiationError::NoAudio,
            ),
            ("m=audio 4000 RTP/AVP 0\r\n", NegotiationError::NoAddress),
        ] {
            assert_eq!(
                negotiate(&offer(&format!("{head}{m}")), &[Codec::Pcmu]),
                Err(err)
            );
        }
    }

    #[test]
    fn lf_only_and_unknown_lines_are_fine() {
        let text =
            ASTERISK_OFFER.replace("\r\n", "\n") + "a=x-unknown:stuff\nb=AS:64\nz=whatever\n";
        let n = negotiate(&offer(&text), &[Codec::Pcma]).expect("ok");
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        assert_eq!(n.remote, "192.0.2.10:14000".parse().expect("addr"));
    }
}
