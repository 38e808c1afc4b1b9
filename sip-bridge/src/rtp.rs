//! RTP packets (RFC 3550) through the webrtc-rs `rtp` crate, behind our own
//! types, and RFC 4733 telephone-events turned into DTMF digits.
//!
//! The crate parses and writes; this module checks what it does not (the
//! version), keeps its types out of the rest of hark, and owns the sending
//! side's sequence number and timestamp.

use bytes::Bytes;
use webrtc_util::marshal::{Marshal, MarshalSize, Unmarshal};

/// RTP version 2.
const VERSION: u8 = 2;

/// One received RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// The payload type.
    pub payload_type: u8,
    /// The marker bit (start of a talkspurt, or of a DTMF event).
    pub marker: bool,
    /// The sequence number.
    pub sequence: u16,
    /// The media timestamp.
    pub timestamp: u32,
    /// The sender's source id.
    pub ssrc: u32,
    /// The payload, padding removed.
    pub payload: Bytes,
}

/// Why a datagram is not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Not version 2 (RTCP muxed on the port, STUN, garbage).
    #[error("RTP version {0}, not 2")]
    Version(u8),
    /// Too short, or its lengths do not add up.
    #[error("malformed RTP: {0}")]
    Malformed(String),
}

/// Parses one datagram.
pub fn parse(datagram: &[u8]) -> Result<RtpPacket, RtpError> {
    if let Some(&first) = datagram.first()
        && first >> 6 != VERSION
    {
        return Err(RtpError::Version(first >> 6));
    }
    let bytes = without_extension(datagram)?;
    let mut buf: &[u8] = &bytes;
    let p =
        rtp::packet::Packet::unmarshal(&mut buf).map_err(|e| RtpError::Malformed(e.to_string()))?;
    Ok(RtpPacket {
        payload_type: p.header.payload_type,
        marker: p.header.marker,
        sequence: p.header.sequence_number,
        timestamp: p.header.timestamp,
        ssrc: p.header.ssrc,
        payload: p.payload,
    })
}

/// The datagram with its header extension (if any) removed, after checking
/// that the fixed header, the CSRCs and the extension block fit.
///
/// hark uses no header extension, and the `rtp` crate (0.17.2) panics on
/// RFC 8285 elements that run past their block (found by the `rtp_parse`
/// fuzz target): the crate never sees one.
fn without_extension(datagram: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, RtpError> {
    const FIXED: usize = 12;
    let short = |what: &str| RtpError::Malformed(format!("{what} runs past the end"));
    if datagram.len() < FIXED {
        return Err(short("the fixed header"));
    }
    let head = FIXED + 4 * usize::from(datagram[0] & 0x0f);
    if datagram.len() < head {
        return Err(short("the CSRC list"));
    }
    if datagram[0] & 0x10 == 0 {
        return Ok(std::borrow::Cow::Borrowed(datagram));
    }
    let ext = datagram
        .get(head..head + 4)
        .ok_or_else(|| short("the extension header"))?;
    let end = head + 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    if datagram.len() < end {
        return Err(short("the extension"));
    }
    let mut out = Vec::with_capacity(datagram.len() - (end - head));
    out.extend_from_slice(&datagram[..head]);
    out[0] &= !0x10;
    out.extend_from_slice(&datagram[end..]);
    Ok(std::borrow::Cow::Owned(out))
}

/// The sending side of one stream: its SSRC, sequence and timestamp.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl RtpSender {
    /// A stream starting at random-looking `seed`-derived values, as
    /// RFC 3550 asks (the caller supplies the randomness).
    pub fn new(seed: u64) -> RtpSender {
        RtpSender {
            ssrc: seed as u32,
            sequence: (seed >> 32) as u16,
            timestamp: (seed >> 16) as u32,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Writes a packet of `payload` with `payload_type` into `out`
    /// (replacing its contents), then advances the timestamp by `ticks`.
    pub fn packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
        ticks: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), RtpError> {
        let p = rtp::packet::Packet {
            header: rtp::header::Header {
                version: VERSION,
                marker,
                payload_type,
                sequence_number: self.sequence,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        out.clear();
        out.resize(p.marshal_size(), 0);
        let n = p
            .marshal_to(out)
            .map_err(|e| RtpError::Malformed(e.to_string()))?;
        out.truncate(n);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(ticks);
        Ok(())
    }
}

/// RFC 4733 §2.3: event, end bit, volume, duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// 0-9, 10 = `*`, 11 = `#`, 12-15 = A-D, 16 = flash.
    pub event: u8,
    /// The last packets of the event carry the end bit.
    pub end: bool,
    /// Power level, -dBm0.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the 4-byte payload (longer payloads carry redundant events;
    /// the first block is the current one).
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The DTMF character, if the event is a DTMF key.
    pub fn digit(self) -> Option<char> {
        match self.event {
            0..=9 => Some(char::from(b'0' + self.event)),
            10 => Some('*'),
            11 => Some('#'),
            12..=15 => Some(char::from(b'A' + self.event - 12)),
            _ => None,
        }
    }
}

/// Turns a stream of telephone-event packets into digits, once each: an
/// event is resent many times with the same timestamp (and its end three
/// times), so a digit is reported on the first packet of a timestamp.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last: Option<u32>,
}

impl DtmfReceiver {
    /// A packet of the telephone-event payload type.
    pub fn handle(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = TelephoneEvent::parse(payload)?;
        if self.last == Some(timestamp) {
            return None;
        }
        self.last = Some(timestamp);
        ev.digit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_send_parses_back() {
        let mut tx = RtpSender::new(0x1234_5678_9abc_def0);
        let mut out = Vec::new();
        tx.packet(0, true, &[0xff; 160], 160, &mut out)
            .expect("marshal");
        assert_eq!(out.len(), 12 + 160);
        let p = parse(&out).expect("parses");
        assert_eq!((p.payload_type, p.marker, p.ssrc), (0, true, tx.ssrc()));
        let first = p.sequence;
        tx.packet(0, false, &[0x7f; 160], 160, &mut out)
            .expect("marshal");
        let q = parse(&out).expect("parses");
        assert_eq!(q.sequence, first.wrapping_add(1));
        assert_eq!(q.timestamp, p.timestamp.wrapping_add(160));
        assert_eq!(&q.payload[..], &[0x7f; 160][..]);
    }

    #[test]
    fn the_sequence_wraps_when_sending() {
        let mut tx = RtpSender::new(0xffff_0000_0000);
        let mut out = Vec::new();
        tx.packet(8, false, &[1], 160, &mut out).expect("marshal");
        assert_eq!(parse(&out).expect("ok").sequence, 0xffff);
        tx.packet(8, false, &[1], 160, &mut out).expect("marshal");
        assert_eq!(parse(&out).expect("ok").sequence, 0);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(parse(&[]), Err(RtpError::Malformed(_))));
        assert_eq!(parse(&[0x40; 20]), Err(RtpError::Version(1)));
        assert_eq!(parse(&[0x00, 0x01]), Err(RtpError::Version(0)));
        assert!(parse(&[0x80, 0, 0, 1]).is_err());
        // CSRC count past the end.
        assert!(parse(&[0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Padding longer than the payload.
        assert!(parse(&[0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9]).is_err());
        // The fuzz target's find: an RFC 8285 one-byte element longer than
        // its block made the rtp crate panic.
        let crash = [
            0xb1, 0xe5, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0x09, 0xbe, 0xde, 0x00,
            0x01, 0x10, 0x20, 0x1c, 0x10, 0x20, 0x30, 0xe5, 0x00, 0x01, 0x02, 0x7f,
        ];
        // Its padding byte (127) is longer than its payload: an error now,
        // not a panic.
        assert!(matches!(parse(&crash), Err(RtpError::Malformed(_))));
        let mut fixed = crash;
        fixed[0] &= !0x20;
        assert_eq!(
            parse(&fixed)
                .expect("without padding it parses")
                .payload_type,
            0x65
        );
        // An extension block longer than the datagram.
        assert!(parse(&[0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9, 1]).is_err());
    }

    #[test]
    fn extensions_and_csrcs_are_skipped() {
        let mut d = vec![0x90 | 0x02, 0x00, 0, 7, 0, 0, 0, 160, 0, 0, 0, 1];
        d.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3]); // two CSRCs
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one word
        d.extend_from_slice(&[0x55; 160]);
        let p = parse(&d).expect("parses");
        assert_eq!((p.sequence, p.timestamp, p.ssrc), (7, 160, 1));
        assert_eq!(&p.payload[..], &[0x55; 160][..]);
    }

    #[test]
    fn telephone_events_become_one_digit_each() {
        let mut rx = DtmfReceiver::default();
        let ev = |event: u8, end: bool, dur: u16| {
            let mut p = vec![event, if end { 0x80 | 10 } else { 10 }];
            p.extend_from_slice(&dur.to_be_bytes());
            p
        };
        let mut got = Vec::new();
        // '5': start, two updates, three end packets, all at timestamp 1000.
        for (e, end, d) in [
            (5, false, 160),
            (5, false, 320),
            (5, false, 480),
            (5, true, 640),
            (5, true, 640),
            (5, true, 640),
        ] {
            got.extend(rx.handle(1000, &ev(e, end, d)));
        }
        // '#', then '*', then 'D', at new timestamps.
        got.extend(rx.handle(3000, &ev(11, false, 160)));
        got.extend(rx.handle(3000, &ev(11, true, 800)));
        got.extend(rx.handle(5000, &ev(10, true, 800)));
        got.extend(rx.handle(7000, &ev(15, false, 160)));
        // Flash and short payloads give nothing.
        got.extend(rx.handle(9000, &ev(16, false, 160)));
        got.extend(rx.handle(9500, &[1, 2]));
        assert_eq!(got, ['5', '#', '*', 'D']);
    }
}
