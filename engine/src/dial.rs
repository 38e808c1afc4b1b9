//! `hark dial`: a real AudioSocket client, as Asterisk would connect.
//!
//! It connects, sends the UUID, streams audio paced in real time (one frame
//! per frame interval on an absolute schedule, so it does not drift), records
//! everything the server sends back with arrival times, and reports timing
//! statistics. It is how a newcomer calls hark without Asterisk, and what the
//! end-to-end tests and the load generator are built on.

use std::net::SocketAddr;
use std::time::Duration;

use media_core::audiosocket::{self, Decoder, HEADER_LEN, Message};
use media_core::{Digit, SampleRate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use uuid::Uuid;

use crate::stats::Percentiles;

/// What to send and how.
#[derive(Debug, Clone)]
pub struct DialOptions {
    /// hark's AudioSocket address.
    pub address: SocketAddr,
    /// The UUID to announce (the call id).
    pub uuid: Uuid,
    /// The slin rate to send (its AudioSocket kind: 8 kHz -> 0x10, 16 kHz -> 0x12 ...).
    pub rate: SampleRate,
    /// Audio at `rate`.
    pub audio: Vec<i16>,
    /// Length of each sent frame (Asterisk: 20 ms, or 30 ms from some SIP peers).
    pub frame: Duration,
    /// DTMF digits sent after the audio.
    pub dtmf: Vec<Digit>,
    /// How long to keep listening after the last frame.
    pub tail: Duration,
    /// Send AudioSocket hangup at the end (`false`: just close, as Asterisk does).
    pub hangup: bool,
    /// Largest payload accepted from the server.
    pub max_payload: usize,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
}

impl DialOptions {
    /// Options for sending `audio` at `rate` to `address`, with the defaults
    /// Asterisk would use: 20 ms frames, close without hangup, 1 s tail.
    pub fn new(address: SocketAddr, rate: SampleRate, audio: Vec<i16>) -> Self {
        Self {
            address,
            uuid: Uuid::new_v4(),
            rate,
            audio,
            frame: Duration::from_millis(20),
            dtmf: Vec::new(),
            tail: Duration::from_secs(1),
            hangup: false,
            max_payload: audiosocket::DEFAULT_MAX_PAYLOAD,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a dial failed before a call could happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The TCP connection failed or timed out.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// Where.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The rate has no AudioSocket kind.
    #[error("{0} has no AudioSocket slin kind")]
    Rate(SampleRate),
    /// The frame length is not 10 to 100 ms.
    #[error("frame length {0:?} is out of range: use 10 to 100 ms")]
    Frame(Duration),
    /// Writing to the server failed mid-call.
    #[error("write failed after {sent} frames: {source}")]
    Write {
        /// Frames sent before it failed.
        sent: u64,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialEnd {
    /// The server sent AudioSocket hangup (0x00): hand-off or goodbye.
    ServerHangup,
    /// The server sent hangup (0x00) before any audio: hark refused the
    /// call (at capacity, shutting down, or a UUID already in a call). An
    /// accepted call always gets a frame first, silence at least.
    Refused,
    /// The server sent an error frame (with its code, if any).
    ServerError(Option<u8>),
    /// The server closed the connection without a message.
    ServerClosed,
    /// The server's byte stream was corrupt.
    Protocol,
    /// We finished and hung up (or closed).
    Finished,
}

/// One frame received from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// When it arrived, after the first frame was sent.
    pub at: Duration,
    /// Where its samples start in [`DialReport::received`].
    pub offset: usize,
    /// How many samples it carried.
    pub len: usize,
}

/// What happened on the call.
#[derive(Debug, Clone)]
pub struct DialReport {
    /// Frames sent.
    pub sent_frames: u64,
    /// Every sample received, in order.
    pub received: Vec<i16>,
    /// The rate of the received audio (from its kind byte).
    pub received_rate: Option<SampleRate>,
    /// Each received audio frame.
    pub arrivals: Vec<Arrival>,
    /// How it ended.
    pub end: DialEnd,
    /// Time to connect.
    pub connect_time: Duration,
}

impl DialReport {
    /// Gaps between consecutive received frames.
    pub fn intervals(&self) -> Percentiles {
        Percentiles::from_durations(self.arrivals.windows(2).map(|w| w[1].at - w[0].at))
    }

    /// When the first audio frame arrived, after the first frame was sent.
    pub fn first_audio(&self) -> Option<Duration> {
        self.arrivals.first().map(|a| a.at)
    }
}

/// Places one call and returns what happened.
pub async fn dial(opts: &DialOptions) -> Result<DialReport, DialError> {
    let kind_ok = audiosocket::slin_kind(opts.rate).is_some();
    if !kind_ok {
        return Err(DialError::Rate(opts.rate));
    }
    if opts.frame < Duration::from_millis(10) || opts.frame > Duration::from_millis(100) {
        return Err(DialError::Frame(opts.frame));
    }
    let connect_start = Instant::now();
    let mut stream =
        match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(opts.address)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(DialError::Connect {
                    address: opts.address,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(DialError::Connect {
                    address: opts.address,
                    reason: format!("timed out after {:?}", opts.connect_timeout),
                });
            }
        };
    let connect_time = connect_start.elapsed();
    let _ = stream.set_nodelay(true);

    let per_frame = opts.rate.samples_in(opts.frame).max(1);
    let frames: Vec<&[i16]> = opts.audio.chunks(per_frame).collect();
    let mut wbuf = vec![0u8; HEADER_LEN + per_frame * 2];
    let decoder = Decoder::new(opts.max_payload);
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut report = DialReport {
        sent_frames: 0,
        received: Vec::with_capacity(opts.audio.len() * 2),
        received_rate: None,
        arrivals: Vec::new(),
        end: DialEnd::Finished,
        connect_time,
    };

    let mut uuid_msg = [0u8; HEADER_LEN + 16];
    let n = audiosocket::encode(&Message::Uuid(opts.uuid), &mut uuid_msg)
        .expect("a UUID message is 19 bytes and the buffer holds 19");
    write(&mut stream, &uuid_msg[..n], 0).await?;

    let start = Instant::now();
    let mut next = 0usize;
    let tail_end = start + opts.frame * u32::try_from(frames.len()).unwrap_or(u32::MAX) + opts.tail;
    loop {
        let send_at = start + opts.frame * u32::try_from(next).unwrap_or(u32::MAX);
        rbuf.reserve(8192);
        tokio::select! {
            biased;
            read = stream.read_buf(&mut rbuf) => {
                let at = start.elapsed();
                match read {
                    Ok(0) | Err(_) => {
                        report.end = DialEnd::ServerClosed;
                        break;
                    }
                    Ok(_) => {
                        if let Some(end) = take_messages(&decoder, &mut rbuf, at, &mut report) {
                            report.end = end;
                            break;
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(send_at), if next < frames.len() => {
                let n = audiosocket::encode_samples(opts.rate, frames[next], &mut wbuf)
                    .expect("the buffer holds one frame at this rate");
                write(&mut stream, &wbuf[..n], report.sent_frames).await?;
                report.sent_frames += 1;
                next += 1;
                if next == frames.len() {
                    for d in &opts.dtmf {
                        let msg = [0x03, 0x00, 0x01, d.as_char() as u8];
                        write(&mut stream, &msg, report.sent_frames).await?;
                    }
                }
            }
            () = tokio::time::sleep_until(tail_end), if next >= frames.len() => {
                if opts.hangup {
                    write(&mut stream, &[0x00, 0x00, 0x00], report.sent_frames).await?;
                }
                report.end = DialEnd::Finished;
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
    Ok(report)
}

async fn write(stream: &mut TcpStream, bytes: &[u8], sent: u64) -> Result<(), DialError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|source| DialError::Write { sent, source })
}

/// Decodes every whole message; returns how the call ended if it did.
fn take_messages(
    decoder: &Decoder,
    rbuf: &mut Vec<u8>,
    at: Duration,
    report: &mut DialReport,
) -> Option<DialEnd> {
    let mut used = 0;
    let mut end = None;
    loop {
        match decoder.decode(&rbuf[used..]) {
            Ok((message, n)) => {
                used += n;
                match message {
                    Message::Audio { rate, pcm } => {
                        report.received_rate = Some(rate);
                        let offset = report.received.len();
                        audiosocket::pcm_to_samples(pcm, &mut report.received);
                        report.arrivals.push(Arrival {
                            at,
                            offset,
                            len: pcm.len() / 2,
                        });
                    }
                    Message::Hangup => {
                        end = Some(if report.arrivals.is_empty() {
                            DialEnd::Refused
                        } else {
                            DialEnd::ServerHangup
                        });
                        break;
                    }
                    Message::Error(code) => {
                        end = Some(DialEnd::ServerError(code.first().copied()));
                        break;
                    }
                    Message::Uuid(_) | Message::Dtmf(_) => {}
                }
            }
            Err(e) if e.is_incomplete() => break,
            Err(_) => {
                end = Some(DialEnd::Protocol);
                break;
            }
        }
    }
    rbuf.drain(..used);
    end
}
