//! hark's SIP endpoint: lets an SBC or Asterisk's `Dial(PJSIP/...)` reach
//! hark directly over SIP and RTP.
//!
//! Everything here is pure (no I/O, no clock), like `media-core`; the
//! engine drives it from one socket task and a media task per call:
//! - [`uas`]: the user agent server over datagrams: INVITE, ACK, BYE,
//!   CANCEL, OPTIONS, re-INVITE (hold, codec change), the refusals, and
//!   hark's own BYE.
//! - [`transaction`]: server transactions and hark's BYE client transaction
//!   over UDP with RFC 3261 timers (E, F, G, H, I, J, and RFC 6026's L),
//!   and the 2xx retransmission of the UAS core.
//! - [`sdp`]: session descriptions parsed and written, and the offer/answer
//!   choice among PCMU, PCMA, Opus and telephone-event (RFC 3264, RFC 4733),
//!   including hold (sendonly, inactive, `c=0.0.0.0`).
//! - [`jitter`]: the adaptive jitter buffer: reordering, loss, duplicates,
//!   late packets, the 16-bit sequence wrap, depth from RFC 3550 jitter.
//! - [`codec`]: payloads to PCM and back (G.711; Opus at 48 kHz resampled
//!   to 16 kHz), with loss concealment.
//! - [`message`]: SIP messages parsed by rsip into our own types (compact
//!   headers, required headers, CSeq and Content-Length checked), and
//!   responses written as RFC 3261 §8.2.6 says.
//! - [`rtp`]: RTP packets (one borrowing parser for every leg, fuzzed), the
//!   sending side's sequence and timestamp, RFC 4733 DTMF.
#![forbid(unsafe_code)]

pub mod codec;
pub mod jitter;
pub mod message;
pub mod rtp;
pub mod sdp;
pub mod transaction;
pub mod uas;
