//! RTP packets (RFC 3550) and RFC 4733 telephone-events turned into DTMF
//! digits.
//!
//! The parser borrows the datagram (one packet every 20 ms per call, so no
//! copy and no allocation), checks every length before it reads, and is the
//! only RTP parser in hark: SIP and Stasis legs both use it, and the
//! `rtp_parse` fuzz target runs it. The sending side owns the stream's
//! sequence number and timestamp.

/// RTP version 2.
const VERSION: u8 = 2;
/// The fixed header: flags, type, sequence, timestamp, SSRC.
const FIXED: usize = 12;

/// One received RTP packet, borrowing its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
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
    /// The payload: CSRCs, header extension and padding skipped.
    pub payload: &'a [u8],
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
    Malformed(&'static str),
}

/// Parses one datagram (RFC 3550 §5.1).
pub fn parse(datagram: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let Some(&first) = datagram.first() else {
        return Err(RtpError::Malformed("the fixed header runs past the end"));
    };
    if first >> 6 != VERSION {
        return Err(RtpError::Version(first >> 6));
    }
    if datagram.len() < FIXED {
        return Err(RtpError::Malformed("the fixed header runs past the end"));
    }
    let mut start = FIXED + 4 * usize::from(first & 0x0f);
    if datagram.len() < start {
        return Err(RtpError::Malformed("the CSRC list runs past the end"));
    }
    if first & 0x10 != 0 {
        let Some(ext) = datagram.get(start..start + 4) else {
            return Err(RtpError::Malformed(
                "the extension header runs past the end",
            ));
        };
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        if datagram.len() < start {
            return Err(RtpError::Malformed("the extension runs past the end"));
        }
    }
    let mut end = datagram.len();
    if first & 0x20 != 0 {
        // The last byte counts the padding, itself included.
        let pad = usize::from(datagram[end - 1]);
        if pad == 0 || pad > end - start {
            return Err(RtpError::Malformed(
                "the padding is longer than the payload",
            ));
        }
        end -= pad;
    }
    Ok(RtpPacket {
        payload_type: datagram[1] & 0x7f,
        marker: datagram[1] & 0x80 != 0,
        sequence: u16::from_be_bytes([datagram[2], datagram[3]]),
        timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
        ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
        payload: &datagram[start..end],
    })
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

    /// Writes a packet of `payload` with `payload_type` (7 bits) into `out`
    /// (replacing its contents), then advances the timestamp by `ticks`.
    pub fn packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
        ticks: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), RtpError> {
        if payload_type > 0x7f {
            return Err(RtpError::Malformed("payload type over 127"));
        }
        out.clear();
        out.push(VERSION << 6);
        out.push(payload_type | if marker { 0x80 } else { 0 });
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
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
        let (first, stamp) = (p.sequence, p.timestamp);
        tx.packet(0, false, &[0x7f; 160], 160, &mut out)
            .expect("marshal");
        let q = parse(&out).expect("parses");
        assert_eq!(q.sequence, first.wrapping_add(1));
        assert_eq!(q.timestamp, stamp.wrapping_add(160));
        assert_eq!(q.payload, &[0x7f; 160][..]);
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
        // The fuzz target's find when webrtc-rs parsed: an RFC 8285
        // one-byte element longer than its block made it panic.
        let crash = [
            0xb1, 0xe5, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0x09, 0xbe, 0xde, 0x00,
            0x01, 0x10, 0x20, 0x1c, 0x10, 0x20, 0x30, 0xe5, 0x00, 0x01, 0x02, 0x7f,
        ];
        // Its padding byte (127) is longer than its payload: an error.
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
        // A padding count of zero counts not even itself.
        assert!(parse(&[0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0]).is_err());
        // Padding the whole payload leaves an empty one.
        let p = parse(&[0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]).expect("parses");
        assert!(p.payload.is_empty());
    }

    #[test]
    fn extensions_and_csrcs_are_skipped() {
        let mut d = vec![0x90 | 0x02, 0x00, 0, 7, 0, 0, 0, 160, 0, 0, 0, 1];
        d.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3]); // two CSRCs
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one word
        d.extend_from_slice(&[0x55; 160]);
        let p = parse(&d).expect("parses");
        assert_eq!((p.sequence, p.timestamp, p.ssrc), (7, 160, 1));
        assert_eq!(p.payload, &[0x55; 160][..]);
    }

    #[test]
    fn csrcs_extension_and_padding_together_are_skipped() {
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
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]); // one word
        p.extend_from_slice(&[0xaa; 5]);
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        assert_eq!(parse(&p).expect("valid").payload, &[0xaa; 5]);
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
