//! A simulated AudioSocket peer on a simulated clock, shared by the scenario tests.
//!
//! The peer writes bytes into the session at chosen times; `run_until` steps
//! the clock from deadline to deadline, and records every message the
//! session transmits (encoded as the AudioSocket leg does) with the time it left.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use media_core::audiosocket::{self, Decoder, Message};
use media_core::{Agent, CallConfig, Event, MAX_TRANSMIT, Session, Time};
use uuid::Uuid;

pub const MS: Duration = Duration::from_millis(1);

pub fn at_ms(ms: u64) -> Time {
    Time::from_micros(ms * 1_000)
}

pub struct Sim {
    pub session: Session,
    pub now: Time,
    /// Every message the call transmitted, with when, but the silence it
    /// sent to keep the line alive (see `keepalive`).
    pub sent: Vec<(Time, Vec<u8>)>,
    /// When the call sent a frame of keep-alive silence (nothing of the
    /// agent's was due): `AudioSocket()` hangs up after 2 s without one.
    pub keepalive: Vec<Time>,
    pub events: Vec<Event>,
    /// Bytes the peer wrote that are not yet a whole message.
    pending: Vec<u8>,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl Sim {
    pub fn new(config: CallConfig, agent: Box<dyn Agent>) -> Self {
        Self {
            session: Session::new(Time::ZERO, config, agent),
            now: Time::ZERO,
            sent: Vec::new(),
            keepalive: Vec::new(),
            events: Vec::new(),
            pending: Vec::new(),
            decoder: Decoder::default(),
            buf: vec![0; MAX_TRANSMIT],
        }
    }

    /// The peer writes `bytes` at `at` (which may split messages anywhere).
    pub fn write(&mut self, at: Time, bytes: &[u8]) {
        self.run_until(at);
        self.pending.extend_from_slice(bytes);
        loop {
            match self.decoder.decode(&self.pending) {
                Ok((message, used)) => {
                    self.session.handle_message(self.now, message);
                    self.pending.drain(..used);
                }
                Err(e) if e.is_incomplete() => break,
                Err(e) => {
                    self.session.handle_protocol_error(self.now, e);
                    break;
                }
            }
            self.drain();
        }
        self.drain();
    }

    /// The peer's connection closes at `at`.
    pub fn close(&mut self, at: Time) {
        self.run_until(at);
        let mid = !self.pending.is_empty();
        self.session.handle_peer_closed(self.now, mid);
        self.drain();
    }

    /// Steps the clock through every deadline up to `until`.
    pub fn run_until(&mut self, until: Time) {
        let mut spins = 0;
        loop {
            self.drain();
            match self.session.poll_timeout() {
                Some(next) if next <= until => {
                    let before = (
                        self.now,
                        self.sent.len() + self.keepalive.len(),
                        self.events.len(),
                    );
                    self.now = self.now.max(next);
                    self.session.handle_timeout(self.now);
                    self.drain();
                    let after = (
                        self.now,
                        self.sent.len() + self.keepalive.len(),
                        self.events.len(),
                    );
                    if after == before {
                        spins += 1;
                        assert!(spins < 100, "call livelocks at {:?}", self.now);
                    } else {
                        spins = 0;
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            let silent = self.session.stats().playout.silence_frames;
            let Some(n) = self
                .session
                .poll_transmit(self.now)
                .map(|t| t.encode(&mut self.buf).expect("encodes"))
            else {
                break;
            };
            if self.session.stats().playout.silence_frames > silent {
                assert!(
                    self.buf[3..n].iter().all(|&b| b == 0),
                    "keep-alive frames are silence"
                );
                self.keepalive.push(self.now);
            } else {
                self.sent.push((self.now, self.buf[..n].to_vec()));
            }
        }
        while let Some(e) = self.session.poll_event() {
            self.events.push(e);
        }
    }

    /// Audio the call sent: (time, samples) per frame.
    pub fn sent_audio(&self) -> Vec<(Time, Vec<i16>)> {
        self.sent
            .iter()
            .filter_map(|(t, bytes)| match Decoder::default().decode(bytes) {
                Ok((Message::Audio { pcm, .. }, _)) => {
                    let mut s = Vec::new();
                    audiosocket::pcm_to_samples(pcm, &mut s);
                    Some((*t, s))
                }
                _ => None,
            })
            .collect()
    }

    /// When every frame left, the agent's and the keep-alive silence.
    pub fn frame_times(&self) -> Vec<Time> {
        let mut t: Vec<Time> = self
            .sent_audio()
            .into_iter()
            .map(|(t, _)| t)
            .chain(self.keepalive.iter().copied())
            .collect();
        t.sort();
        t
    }

    /// All sent samples, concatenated.
    pub fn sent_samples(&self) -> Vec<i16> {
        self.sent_audio().into_iter().flat_map(|(_, s)| s).collect()
    }

    /// True if the call sent AudioSocket hangup (0x00).
    pub fn sent_hangup(&self) -> bool {
        self.sent
            .iter()
            .any(|(_, b)| b.as_slice() == [0x00, 0x00, 0x00])
    }

    pub fn ended(&self) -> Option<&media_core::EndReason> {
        self.events.iter().find_map(|e| match e {
            Event::Ended { reason, .. } => Some(reason),
            _ => None,
        })
    }
}

pub fn uuid_msg(uuid: Uuid) -> Vec<u8> {
    let mut b = vec![0x01, 0x00, 0x10];
    b.extend_from_slice(uuid.as_bytes());
    b
}

/// An audio message of `kind` (0x10 = 8 kHz, 0x12 = 16 kHz ...) with `samples`.
pub fn audio_msg(kind: u8, samples: &[i16]) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(&((samples.len() * 2) as u16).to_be_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

pub fn dtmf_msg(d: u8) -> Vec<u8> {
    vec![0x03, 0x00, 0x01, d]
}

/// A recognisable signal: sample `i` of the stream is `i mod 30000`.
pub fn ramp(start: usize, n: usize) -> Vec<i16> {
    (start..start + n).map(|i| (i % 30_000) as i16).collect()
}

/// The samples and rate of a 16-bit mono PCM WAV (the committed fixtures).
pub fn wav(bytes: &[u8]) -> (media_core::SampleRate, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF", "not a WAV");
    let mut pos = 12;
    let mut rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM");
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit");
            rate = media_core::SampleRate::new(u32::from_le_bytes(
                body[4..8].try_into().expect("4 bytes"),
            ));
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate.expect("fmt before data"), samples);
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}
pub mod voice;
