//! The AudioSocket wire format, as Asterisk 22 speaks it.
//!
//! Every message is `kind (1 byte) | payload length (u16, big endian) | payload`.
//! The decoder works on whatever bytes the socket has delivered so far: it
//! either returns one whole message and how many bytes it used, or reports
//! [`DecodeError::Incomplete`] without consuming anything, so the caller simply
//! reads more and tries again. Decoded messages borrow from the input buffer and
//! the encoder writes into a buffer the caller owns, so no frame allocates.

use uuid::Uuid;

use crate::frame::SampleRate;

/// Bytes before the payload: kind and big-endian length.
pub const HEADER_LEN: usize = 3;

/// Largest payload the length field can express.
pub const MAX_WIRE_PAYLOAD: usize = u16::MAX as usize;

/// The payload size hark accepts by default: 100 ms of 48 kHz slin (9,600
/// bytes) with room to spare. Asterisk sends 20 or 30 ms frames; anything far
/// larger is a broken or hostile peer.
pub const DEFAULT_MAX_PAYLOAD: usize = 16_384;

const KIND_HANGUP: u8 = 0x00;
const KIND_UUID: u8 = 0x01;
const KIND_DTMF: u8 = 0x03;
const KIND_SLIN_FIRST: u8 = 0x10;
const KIND_SLIN_LAST: u8 = 0x18;
const KIND_ERROR: u8 = 0xff;

/// Signed-linear kinds in wire order: 0x10 + index.
const SLIN_RATES: [u32; 9] = [
    8_000, 12_000, 16_000, 24_000, 32_000, 44_100, 48_000, 96_000, 192_000,
];

/// The message kinds AudioSocket defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0x00: end of the call (sent by hark, it makes `AudioSocket()` return).
    Hangup,
    /// 0x01: the call's UUID, 16 raw bytes.
    Uuid,
    /// 0x03: one DTMF digit as an ASCII byte.
    Dtmf,
    /// 0x10..=0x18: signed 16-bit little-endian mono audio at a given rate.
    Audio(SampleRate),
    /// 0xff: an error, with an optional application-specific code.
    Error,
}

impl Kind {
    /// The kind byte for this kind.
    pub fn byte(self) -> u8 {
        match self {
            Kind::Hangup => KIND_HANGUP,
            Kind::Uuid => KIND_UUID,
            Kind::Dtmf => KIND_DTMF,
            Kind::Audio(rate) => slin_kind(rate).unwrap_or(KIND_SLIN_FIRST),
            Kind::Error => KIND_ERROR,
        }
    }

    /// Parses a kind byte; `None` for a kind AudioSocket does not define.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            KIND_HANGUP => Some(Kind::Hangup),
            KIND_UUID => Some(Kind::Uuid),
            KIND_DTMF => Some(Kind::Dtmf),
            KIND_SLIN_FIRST..=KIND_SLIN_LAST => Some(Kind::Audio(SampleRate::from_hz_unchecked(
                SLIN_RATES[usize::from(byte - KIND_SLIN_FIRST)],
            ))),
            KIND_ERROR => Some(Kind::Error),
            _ => None,
        }
    }
}

/// The slin kind byte for a sample rate, if AudioSocket has one.
pub fn slin_kind(rate: SampleRate) -> Option<u8> {
    SLIN_RATES
        .iter()
        .position(|&hz| hz == rate.hz())
        // The table has 9 entries, so the index fits in a u8.
        .map(|i| KIND_SLIN_FIRST + i as u8)
}

/// One decoded message. Audio borrows its bytes from the decoder's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// The peer ends the call.
    Hangup,
    /// The call's UUID (Asterisk sends it first).
    Uuid(Uuid),
    /// A DTMF digit, as the ASCII byte Asterisk sent.
    Dtmf(u8),
    /// Signed 16-bit little-endian samples at `rate`; always an even number of bytes.
    Audio {
        /// The rate the kind byte announced.
        rate: SampleRate,
        /// Raw little-endian sample bytes.
        pcm: &'a [u8],
    },
    /// An error report; the payload is an optional application-specific
    /// code (Asterisk sends one byte: 0x01 hangup, 0x02 frame forwarding,
    /// 0x04 memory).
    Error(&'a [u8]),
}

impl Message<'_> {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hangup => Kind::Hangup,
            Message::Uuid(_) => Kind::Uuid,
            Message::Dtmf(_) => Kind::Dtmf,
            Message::Audio { rate, .. } => Kind::Audio(*rate),
            Message::Error(_) => Kind::Error,
        }
    }

    /// Bytes this message takes on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Message::Hangup => 0,
                Message::Uuid(_) => 16,
                Message::Dtmf(_) => 1,
                Message::Error(code) => code.len(),
                Message::Audio { pcm, .. } => pcm.len(),
            }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not enough bytes yet for a whole message; nothing was consumed.
    #[error("incomplete message: need {needed} bytes, have {have}")]
    Incomplete {
        /// Bytes the whole message needs (header only, until the header is complete).
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The kind byte is not one AudioSocket defines.
    #[error("unknown AudioSocket kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The payload is longer than the configured maximum.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced payload length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// Signed-linear audio with an odd number of bytes (half a sample).
    #[error("audio payload of {0} bytes is not a whole number of 16-bit samples")]
    OddAudioLength(usize),
    /// A fixed-size message (hangup, UUID, DTMF) had the wrong length.
    #[error("{kind:?} payload must be {expected} bytes, got {len}")]
    BadLength {
        /// Kind of the message.
        kind: Kind,
        /// Length the kind requires.
        expected: usize,
        /// Length announced.
        len: usize,
    },
}

impl DecodeError {
    /// True when more bytes may complete the message (not a protocol error).
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete { .. })
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small for the message.
    #[error("output buffer of {have} bytes is too small, need {needed}")]
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// Audio longer than the 16-bit length field allows.
    #[error("payload of {0} bytes does not fit the 16-bit length field")]
    PayloadTooLong(usize),
    /// The sample rate has no AudioSocket kind.
    #[error("no AudioSocket kind for {0} Hz")]
    UnsupportedRate(u32),
}

/// Incremental AudioSocket decoder with a payload limit.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    max_payload: usize,
}

impl Decoder {
    /// A decoder that rejects payloads longer than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload: max_payload.min(MAX_WIRE_PAYLOAD),
        }
    }

    /// The payload limit in force.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Decodes the first message in `buf`.
    ///
    /// On success returns the message and the bytes it used; the caller drops
    /// those bytes from its buffer. [`DecodeError::Incomplete`] consumes
    /// nothing. Any other error means the stream is corrupt: framing is lost
    /// and the connection should be closed.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<(Message<'a>, usize), DecodeError> {
        if buf.len() < HEADER_LEN {
            // Check the kind as soon as it is there: garbage is rejected early.
            if let Some(&b) = buf.first() {
                Kind::from_byte(b).ok_or(DecodeError::UnknownKind(b))?;
            }
            return Err(DecodeError::Incomplete {
                needed: HEADER_LEN,
                have: buf.len(),
            });
        }
        let (kind_byte, len) = (buf[0], u16::from_be_bytes([buf[1], buf[2]]));
        let kind = Kind::from_byte(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
        let len = usize::from(len);
        if len > self.max_payload {
            return Err(DecodeError::TooLong {
                len,
                max: self.max_payload,
            });
        }
        check_length(kind, len)?;
        let total = HEADER_LEN + len;
        let Some(payload) = buf.get(HEADER_LEN..total) else {
            return Err(DecodeError::Incomplete {
                needed: total,
                have: buf.len(),
            });
        };
        let message = match kind {
            Kind::Hangup => Message::Hangup,
            Kind::Uuid => {
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(payload);
                Message::Uuid(Uuid::from_bytes(bytes))
            }
            Kind::Dtmf => Message::Dtmf(payload[0]),
            Kind::Error => Message::Error(payload),
            Kind::Audio(rate) => Message::Audio { rate, pcm: payload },
        };
        Ok((message, total))
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

/// Length rules per kind, checked from the header alone so a bad message is
/// rejected before its payload arrives.
fn check_length(kind: Kind, len: usize) -> Result<(), DecodeError> {
    let expected = match kind {
        Kind::Hangup => 0,
        Kind::Uuid => 16,
        Kind::Dtmf => 1,
        // Any length: the code is optional and application specific.
        Kind::Error => return Ok(()),
        Kind::Audio(_) => {
            return if len.is_multiple_of(2) {
                Ok(())
            } else {
                Err(DecodeError::OddAudioLength(len))
            };
        }
    };
    if len == expected {
        Ok(())
    } else {
        Err(DecodeError::BadLength {
            kind,
            expected,
            len,
        })
    }
}

/// Writes `message` at the start of `out`, returning the bytes written.
pub fn encode(message: &Message<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let total = message.wire_len();
    let payload_len = total - HEADER_LEN;
    if payload_len > MAX_WIRE_PAYLOAD {
        return Err(EncodeError::PayloadTooLong(payload_len));
    }
    if out.len() < total {
        return Err(EncodeError::BufferTooSmall {
            needed: total,
            have: out.len(),
        });
    }
    let kind = match message {
        Message::Audio { rate, .. } => {
            slin_kind(*rate).ok_or(EncodeError::UnsupportedRate(rate.hz()))?
        }
        other => other.kind().byte(),
    };
    out[0] = kind;
    // payload_len <= u16::MAX was checked above.
    out[1..HEADER_LEN].copy_from_slice(&(payload_len as u16).to_be_bytes());
    let payload = &mut out[HEADER_LEN..total];
    match message {
        Message::Hangup => {}
        Message::Uuid(uuid) => payload.copy_from_slice(uuid.as_bytes()),
        Message::Dtmf(b) => payload[0] = *b,
        Message::Error(code) => payload.copy_from_slice(code),
        Message::Audio { pcm, .. } => payload.copy_from_slice(pcm),
    }
    Ok(total)
}

/// Writes an audio message straight from samples, converting to little endian
/// on the way, so the caller needs no intermediate byte buffer.
pub fn encode_samples(
    rate: SampleRate,
    samples: &[i16],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let kind = slin_kind(rate).ok_or(EncodeError::UnsupportedRate(rate.hz()))?;
    let payload_len = samples.len() * 2;
    if payload_len > MAX_WIRE_PAYLOAD {
        return Err(EncodeError::PayloadTooLong(payload_len));
    }
    let total = HEADER_LEN + payload_len;
    if out.len() < total {
        return Err(EncodeError::BufferTooSmall {
            needed: total,
            have: out.len(),
        });
    }
    out[0] = kind;
    out[1..HEADER_LEN].copy_from_slice(&(payload_len as u16).to_be_bytes());
    for (dst, s) in out[HEADER_LEN..total].chunks_exact_mut(2).zip(samples) {
        dst.copy_from_slice(&s.to_le_bytes());
    }
    Ok(total)
}

/// Converts little-endian PCM bytes to samples, appending to `out`.
///
/// `out` is the caller's reusable buffer: once it has grown to a frame's size
/// this does not allocate. A trailing odd byte is ignored (the decoder never
/// yields one).
pub fn pcm_to_samples(pcm: &[u8], out: &mut Vec<i16>) {
    out.extend(
        pcm.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec() -> Decoder {
        Decoder::default()
    }

    #[test]
    fn kinds_round_trip_through_their_byte() {
        for byte in 0..=u8::MAX {
            match Kind::from_byte(byte) {
                Some(kind) => assert_eq!(kind.byte(), byte),
                None => assert!(
                    !matches!(byte, 0x00 | 0x01 | 0x03 | 0x10..=0x18 | 0xff),
                    "0x{byte:02x} must be known"
                ),
            }
        }
    }

    #[test]
    fn slin_kinds_carry_their_rates() {
        let expect = [
            (0x10, 8_000),
            (0x11, 12_000),
            (0x12, 16_000),
            (0x13, 24_000),
            (0x14, 32_000),
            (0x15, 44_100),
            (0x16, 48_000),
            (0x17, 96_000),
            (0x18, 192_000),
        ];
        for (byte, hz) in expect {
            let msg = [byte, 0x00, 0x02, 0x34, 0x12];
            let (m, used) = dec().decode(&msg).unwrap();
            assert_eq!(used, 5);
            assert_eq!(
                m,
                Message::Audio {
                    rate: SampleRate::new(hz).unwrap(),
                    pcm: &[0x34, 0x12]
                }
            );
        }
    }

    #[test]
    fn control_vectors() {
        let uuid_bytes: [u8; 16] = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        let mut wire = vec![0x01, 0x00, 0x10];
        wire.extend_from_slice(&uuid_bytes);
        let cases: Vec<(Vec<u8>, Message<'_>)> = vec![
            (vec![0x00, 0x00, 0x00], Message::Hangup),
            (wire, Message::Uuid(Uuid::from_bytes(uuid_bytes))),
            (vec![0x03, 0x00, 0x01, b'5'], Message::Dtmf(b'5')),
            (vec![0x03, 0x00, 0x01, b'#'], Message::Dtmf(b'#')),
            (vec![0xff, 0x00, 0x01, 0x02], Message::Error(&[0x02])),
            (vec![0xff, 0x00, 0x00], Message::Error(&[])),
        ];
        for (bytes, want) in &cases {
            let (got, used) = dec().decode(bytes).unwrap();
            assert_eq!(&got, want);
            assert_eq!(used, bytes.len());
            let mut out = [0u8; 64];
            let n = encode(want, &mut out).unwrap();
            assert_eq!(&out[..n], &bytes[..], "encode {want:?}");
        }
    }

    #[test]
    fn asterisk_frame_sizes_decode() {
        // 240/320/480 bytes at 8 kHz, 640 at 16 kHz, and a short last frame.
        for (kind, len) in [
            (0x10u8, 240usize),
            (0x10, 320),
            (0x10, 480),
            (0x12, 640),
            (0x10, 58),
        ] {
            let mut wire = vec![kind];
            wire.extend_from_slice(&(len as u16).to_be_bytes());
            wire.extend((0..len).map(|i| i as u8));
            // Two messages back to back: the first is returned, the second left.
            let mut two = wire.clone();
            two.extend_from_slice(&[0x00, 0x00, 0x00]);
            let (m, used) = dec().decode(&two).unwrap();
            assert_eq!(used, 3 + len);
            let Message::Audio { pcm, .. } = m else {
                panic!("not audio")
            };
            assert_eq!(pcm.len(), len);
            assert_eq!(dec().decode(&two[used..]).unwrap().0, Message::Hangup);
            // Re-encode from samples gives the same bytes.
            let mut samples = Vec::new();
            pcm_to_samples(pcm, &mut samples);
            let mut out = vec![0u8; 3 + len];
            let rate = match Kind::from_byte(kind) {
                Some(Kind::Audio(r)) => r,
                _ => unreachable!(),
            };
            assert_eq!(encode_samples(rate, &samples, &mut out).unwrap(), 3 + len);
            assert_eq!(out, wire);
        }
    }

    #[test]
    fn truncated_input_is_incomplete_at_every_offset() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&[0x01, 0x00, 0x10]);
        stream.extend_from_slice(&[7u8; 16]);
        stream.extend_from_slice(&[0x10, 0x01, 0x40]);
        stream.extend((0..320).map(|i| i as u8));
        stream.extend_from_slice(&[0x03, 0x00, 0x01, b'1']);
        stream.extend_from_slice(&[0x00, 0x00, 0x00]);
        let boundaries = [0usize, 19, 19 + 323, 19 + 323 + 4, stream.len()];
        for w in boundaries.windows(2) {
            let (start, end) = (w[0], w[1]);
            for cut in start..end {
                let err = dec().decode(&stream[start..cut]).unwrap_err();
                assert!(err.is_incomplete(), "cut at {cut}: {err:?}");
            }
            let (_, used) = dec().decode(&stream[start..end]).unwrap();
            assert_eq!(used, end - start);
        }
    }

    #[test]
    fn protocol_errors_are_typed() {
        assert_eq!(dec().decode(&[0x02]), Err(DecodeError::UnknownKind(0x02)));
        assert_eq!(
            dec().decode(&[0x20, 0, 0]),
            Err(DecodeError::UnknownKind(0x20))
        );
        assert_eq!(
            dec().decode(&[0x10, 0x00, 0x03, 1, 2, 3]),
            Err(DecodeError::OddAudioLength(3))
        );
        // Odd length is caught from the header, before the payload arrives.
        assert_eq!(
            dec().decode(&[0x10, 0x00, 0x03]),
            Err(DecodeError::OddAudioLength(3))
        );
        assert_eq!(
            Decoder::new(320).decode(&[0x10, 0x01, 0x42]),
            Err(DecodeError::TooLong { len: 322, max: 320 })
        );
        assert!(matches!(
            dec().decode(&[0x01, 0x00, 0x04, 1, 2, 3, 4]),
            Err(DecodeError::BadLength {
                expected: 16,
                len: 4,
                ..
            })
        ));
        assert!(matches!(
            dec().decode(&[0x00, 0x00, 0x01, 0]),
            Err(DecodeError::BadLength { expected: 0, .. })
        ));
        assert!(matches!(
            dec().decode(&[0x03, 0x00, 0x02, b'1', b'2']),
            Err(DecodeError::BadLength { expected: 1, .. })
        ));
    }

    #[test]
    fn garbage_never_panics_and_never_overreads() {
        // xorshift: deterministic garbage without a rand dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = vec![0u8; 4096];
        for _ in 0..2_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let len = (x as usize) % buf.len();
            let mut rest = &buf[..len];
            while let Ok((m, used)) = Decoder::new(1024).decode(rest) {
                assert!(used <= rest.len());
                assert_eq!(used, m.wire_len());
                rest = &rest[used..];
            }
        }
    }

    #[test]
    fn encode_reports_small_buffer_and_bad_rate() {
        let mut small = [0u8; 4];
        assert_eq!(
            encode_samples(SampleRate::HZ_8000, &[1, 2], &mut small),
            Err(EncodeError::BufferTooSmall { needed: 7, have: 4 })
        );
        let odd_rate = SampleRate::new(11_025).unwrap();
        assert_eq!(
            encode_samples(odd_rate, &[1], &mut [0u8; 8]),
            Err(EncodeError::UnsupportedRate(11_025))
        );
        let huge = vec![0i16; 40_000];
        assert_eq!(
            encode_samples(SampleRate::HZ_8000, &huge, &mut [0u8; 8]),
            Err(EncodeError::PayloadTooLong(80_000))
        );
    }
}
