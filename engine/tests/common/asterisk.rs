//! An AudioSocket peer that behaves as Asterisk 22's `AudioSocket()`
//! application does, for the tests that cannot run a real Asterisk:
//!
//! - `res/res_audiosocket.c` (`ast_audiosocket_init`): the UUID first
//!   (kind 0x01, 16 raw bytes), then audio as the channel produces it;
//! - `apps/app_audiosocket.c` (`audiosocket_run`): a caller in silence (a
//!   Local channel, a DTX phone) produces no frames, and when neither the
//!   channel nor the socket produced a frame for `MAX_WAIT_TIMEOUT_MSEC`
//!   (2000 ms) the application gives up and the channel is hung up;
//! - `res/res_audiosocket.c` (`ast_audiosocket_receive_frame_with_hangup`):
//!   from the server only hangup (0x00) and the audio kinds 0x10-0x18 are
//!   taken; 0x00 or a closed socket returns 0 (the dialplan goes on); any
//!   other kind, 0xff included, is "Received AudioSocket message other than
//!   hangup or audio" and hangs the caller up.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// `MAX_WAIT_TIMEOUT_MSEC` in `apps/app_audiosocket.c`.
pub const MAX_WAIT: Duration = Duration::from_millis(2_000);

/// How `AudioSocket()` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnd {
    /// The server sent 0x00 or closed the socket: `AudioSocket()` returned
    /// 0 and the dialplan goes on to the next priority.
    Continue,
    /// 2000 ms without a frame either way: the channel is hung up.
    Timeout,
    /// The server sent this kind, which Asterisk does not take: the
    /// channel is hung up.
    Rejected(u8),
    /// The caller hung up (Asterisk closes the socket, sending nothing).
    CallerHungUp,
    /// The connection could not be made: `AudioSocket()` returns -1.
    ConnectFailed,
}

/// What one call saw.
#[derive(Debug, Clone)]
pub struct AppReport {
    pub end: AppEnd,
    /// Audio frames received from the server.
    pub frames: usize,
    /// Samples received.
    pub audio: Vec<i16>,
    /// The longest time between two frames from the server (from the UUID).
    pub max_gap: Duration,
    /// When the server's first frame came, from the UUID.
    pub first_frame: Option<Duration>,
    /// How long the call lasted.
    pub lasted: Duration,
}

/// A caller: frames to send at given offsets from the UUID (none in
/// silence), then a hangup at `hang_up_at` (if the call is still up).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub frames: Vec<(Duration, Vec<i16>)>,
    pub hang_up_at: Duration,
    /// Kind of the audio frames (0x10 slin 8 kHz, 0x12 slin16).
    pub kind: u8,
}

impl Caller {
    /// A caller who says nothing for `secs` and hangs up.
    pub fn silent(secs: u64) -> Caller {
        Caller {
            frames: Vec::new(),
            hang_up_at: Duration::from_secs(secs),
            kind: 0x10,
        }
    }

    /// A caller who plays `samples` (8 kHz) in 20 ms frames from `at`.
    pub fn speaking(mut self, at: Duration, samples: &[i16]) -> Caller {
        for (i, chunk) in samples.chunks(160).enumerate() {
            self.frames
                .push((at + Duration::from_millis(20 * i as u64), chunk.to_vec()));
        }
        self.frames.sort_by_key(|f| f.0);
        self
    }
}

/// Runs `AudioSocket(uuid, addr)` with `caller` on the channel side.
pub async fn audiosocket_app(addr: SocketAddr, uuid: uuid::Uuid, caller: &Caller) -> AppReport {
    let mut report = AppReport {
        end: AppEnd::ConnectFailed,
        frames: 0,
        audio: Vec::new(),
        max_gap: Duration::ZERO,
        first_frame: None,
        lasted: Duration::ZERO,
    };
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return report;
    };
    let _ = s.set_nodelay(true);
    let mut hello = vec![0x01, 0x00, 0x10];
    hello.extend_from_slice(uuid.as_bytes());
    if s.write_all(&hello).await.is_err() {
        report.end = AppEnd::Continue;
        return report;
    }
    let start = Instant::now();
    let mut activity = start;
    let mut last_frame = start;
    let mut next = 0usize;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let hang_up = start + caller.hang_up_at;
    report.end = loop {
        let due = caller.frames.get(next).map(|f| start + f.0);
        let wake = [Some(activity + MAX_WAIT), Some(hang_up), due]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(hang_up);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= hang_up {
                    break AppEnd::CallerHungUp;
                }
                if due.is_some_and(|d| now >= d) {
                    let samples = &caller.frames[next].1;
                    next += 1;
                    let mut f = vec![caller.kind];
                    f.extend_from_slice(&((samples.len() * 2) as u16).to_be_bytes());
                    for x in samples {
                        f.extend_from_slice(&x.to_le_bytes());
                    }
                    if s.write_all(&f).await.is_err() {
                        break AppEnd::Continue;
                    }
                    activity = now;
                } else if now >= activity + MAX_WAIT {
                    break AppEnd::Timeout;
                }
            }
            read = s.read_buf(&mut buf) => {
                let now = Instant::now();
                match read {
                    Ok(0) | Err(_) => break AppEnd::Continue,
                    Ok(_) => {}
                }
                let mut end = None;
                while buf.len() >= 3 {
                    let kind = buf[0];
                    let len = usize::from(u16::from_be_bytes([buf[1], buf[2]]));
                    if kind == 0x00 {
                        end = Some(AppEnd::Continue);
                        break;
                    }
                    if !(0x10..=0x18).contains(&kind) {
                        end = Some(AppEnd::Rejected(kind));
                        break;
                    }
                    if buf.len() < 3 + len {
                        break;
                    }
                    for pair in buf[3..3 + len].chunks_exact(2) {
                        report.audio.push(i16::from_le_bytes([pair[0], pair[1]]));
                    }
                    buf.drain(..3 + len);
                    report.frames += 1;
                    report.first_frame.get_or_insert(now - start);
                    report.max_gap = report.max_gap.max(now - last_frame);
                    last_frame = now;
                    activity = now;
                }
                if let Some(e) = end {
                    break e;
                }
            }
        }
    };
    report.lasted = start.elapsed();
    report
}
