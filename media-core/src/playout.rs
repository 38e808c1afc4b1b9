//! Outbound pacing: one 20 ms frame per tick, on the driver's clock.
//!
//! Asterisk plays what it receives as soon as it arrives and does not pace it,
//! and audio already sent cannot be taken back. So hark holds outgoing audio
//! here and releases it frame by frame on a fixed 20 ms grid, at most
//! `send_ahead` frames before real time (so a barge-in flush is heard at once).
//!
//! The grid is anchored when audio arrives at an idle queue. A short gap (less
//! than one frame) keeps the grid, so a producer that delivers just in time
//! still gets perfectly even output; a longer gap lets the grid lapse and the
//! next audio starts a new one. A driver that wakes up late does not get a
//! burst: missed slots are skipped, and the audio is delayed rather than
//! crammed. A partial frame is held until either more audio completes it or a
//! whole slot passes, then it leaves as a short frame.
//!
//! With [`Playout::keep_alive`] the grid never lapses: a slot with nothing
//! queued gets a frame of silence. `AudioSocket()` gives up after 2000 ms in
//! which neither side sent a frame (`app_audiosocket.c`,
//! `MAX_WAIT_TIMEOUT_MSEC`), and a silent Local channel or a DTX phone sends
//! nothing, so the server must keep the clock going for the whole call.
//! Silence is never sent ahead of its slot, so audio that arrives while the
//! line is idle still leaves at once. While a reply is playing and the
//! producer is late, the slot gets a whole slot's grace before silence fills
//! it (an underrun), so a just-in-time producer is not chopped.

use std::collections::VecDeque;
use std::time::Duration;

use crate::frame::{FRAME_DURATION, SampleRate, Time};

/// The most frames that may be released ahead of their slot.
pub const MAX_SEND_AHEAD: u8 = 2;

/// Counters a call reports at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Frames released.
    pub frames_sent: u64,
    /// Times the queue ran dry for a whole slot while playing.
    pub underruns: u64,
    /// Slots skipped because the driver woke up too late for them.
    pub late_slots: u64,
    /// Samples refused because the queue was full.
    pub overflow_samples: u64,
    /// Samples dropped by [`Playout::flush`].
    pub flushed_samples: u64,
    /// Frames of silence sent to keep the line alive (not in `frames_sent`).
    pub silence_frames: u64,
}

#[derive(Debug, Clone, Copy)]
struct Grid {
    anchor: Time,
    /// Frames released since `anchor`; the next frame's slot is `anchor + sent * 20 ms`.
    sent: u64,
}

impl Grid {
    fn slot(&self, index: u64) -> Time {
        self.anchor + FRAME_DURATION * u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// Slots that have started by `now`.
    fn started(&self, now: Time) -> u64 {
        let elapsed = now.saturating_since(self.anchor).as_micros();
        (elapsed / FRAME_DURATION.as_micros()) as u64 + 1
    }
}

/// A paced queue of outgoing audio for one call.
///
/// Contract: push audio with [`push`](Self::push); call
/// [`poll_frame`](Self::poll_frame) until it returns `None`, then sleep until
/// [`poll_timeout`](Self::poll_timeout) (or until more audio is pushed).
#[derive(Debug)]
pub struct Playout {
    rate: SampleRate,
    frame: usize,
    capacity: usize,
    send_ahead: u8,
    queue: VecDeque<i16>,
    grid: Option<Grid>,
    /// End of the last slot used: a new grid never starts before it, so
    /// frames never leave closer than 20 ms apart (plus send-ahead).
    resume_at: Time,
    /// The producer said no more audio follows: a short last frame leaves
    /// on its own slot instead of waiting for the rest.
    ended: bool,
    /// Samples released since the queue was created: the position of the
    /// queue's front in the stream of everything ever played.
    released: u64,
    /// Fill idle slots with silence; the grid never lapses.
    keepalive: bool,
    /// Audio was released and the producer has not said it is done: a dry
    /// slot is an underrun, not the end of an utterance.
    playing: bool,
    /// Applied to every sample as it leaves (1.0: as queued). Ducking
    /// while the caller may be cutting in.
    gain: f32,
    stats: PlayoutStats,
}

impl Playout {
    /// A queue for audio at `rate` holding at most `capacity` of audio,
    /// releasing up to `send_ahead` (clamped to [`MAX_SEND_AHEAD`]) frames early.
    pub fn new(rate: SampleRate, capacity: Duration, send_ahead: u8) -> Self {
        let frame = rate.frame_samples().max(1);
        Self {
            rate,
            frame,
            capacity: rate.samples_in(capacity).max(frame),
            send_ahead: send_ahead.min(MAX_SEND_AHEAD),
            queue: VecDeque::new(),
            grid: None,
            resume_at: Time::ZERO,
            ended: false,
            released: 0,
            keepalive: false,
            playing: false,
            gain: 1.0,
            stats: PlayoutStats::default(),
        }
    }

    /// Scales the audio from the next frame on (1.0: as queued; frames
    /// already released keep their level).
    pub fn set_gain(&mut self, gain: f32) {
        self.gain = if gain.is_finite() {
            gain.clamp(0.0, 1.0)
        } else {
            1.0
        };
    }

    /// The gain applied to outgoing audio.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// From `now` on, every slot gets a frame: audio when queued, else
    /// silence (see the module docs). Never turned off for the call's life.
    pub fn keep_alive(&mut self, now: Time) {
        self.keepalive = true;
        if self.grid.is_none() {
            self.grid = Some(Grid {
                anchor: now.max(self.resume_at),
                sent: 0,
            });
        }
    }

    /// Samples released so far. A reply's text is mapped onto these
    /// positions, so the call knows how much of it the caller has heard.
    pub fn position(&self) -> u64 {
        self.released
    }

    /// The position the next pushed sample will have.
    pub fn end_position(&self) -> u64 {
        self.released + self.queue.len() as u64
    }

    /// The rate of the queued audio.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Samples in one full frame.
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    /// Audio queued and not yet released.
    pub fn queued(&self) -> Duration {
        self.rate.duration_of(self.queue.len())
    }

    /// True when nothing is queued and no audio is playing (a kept-alive
    /// line sending silence is idle).
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && (self.grid.is_none() || (self.keepalive && !self.playing))
    }

    /// Counters so far.
    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    /// Queues `samples`; returns how many were taken (fewer when full).
    pub fn push(&mut self, now: Time, samples: &[i16]) -> usize {
        self.lapse_if_stale(now);
        if !samples.is_empty() {
            self.ended = false;
        }
        if self.grid.is_none() && !samples.is_empty() {
            self.grid = Some(Grid {
                anchor: now.max(self.resume_at),
                sent: 0,
            });
        }
        let room = self.capacity - self.queue.len();
        let take = samples.len().min(room);
        self.queue.extend(&samples[..take]);
        self.stats.overflow_samples += (samples.len() - take) as u64;
        take
    }

    /// Queues `duration` of silence; returns the samples taken.
    pub fn push_silence(&mut self, now: Time, duration: Duration) -> usize {
        const ZEROS: [i16; 256] = [0; 256];
        let mut left = self.rate.samples_in(duration);
        let mut taken = 0;
        while left > 0 {
            let n = left.min(ZEROS.len());
            let t = self.push(now, &ZEROS[..n]);
            taken += t;
            if t < n {
                break;
            }
            left -= n;
        }
        taken
    }

    /// No more audio follows for now (a reply is complete): a short last
    /// frame is sent on its slot rather than held for the rest. The next
    /// [`push`](Self::push) clears this.
    pub fn mark_end(&mut self) {
        self.ended = true;
        if self.queue.is_empty() {
            self.playing = false;
        }
    }

    /// Drops everything queued (barge-in). Frames already released are gone.
    /// Returns the samples dropped.
    pub fn flush(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        self.playing = false;
        if !self.keepalive {
            self.end_grid();
        }
        self.stats.flushed_samples += n as u64;
        n
    }

    /// Drops queued audio and switches to a new rate.
    pub fn reset_rate(&mut self, rate: SampleRate) {
        let capacity = self.rate.duration_of(self.capacity);
        self.flush();
        self.rate = rate;
        self.frame = rate.frame_samples().max(1);
        self.capacity = rate.samples_in(capacity).max(self.frame);
    }

    /// Copies the frame due at `now` into `out` and returns its length, or
    /// `None` when no frame is due. `out` must hold a full frame.
    #[must_use]
    pub fn poll_frame(&mut self, now: Time, out: &mut [i16]) -> Option<usize> {
        self.lapse_if_stale(now);
        let frame = self.frame;
        let ahead = u64::from(self.send_ahead);
        let grid = self.grid.as_mut()?;
        let started = grid.started(now);
        if self.queue.is_empty() {
            if !self.keepalive || grid.sent >= started {
                return None;
            }
            // A producer that is still playing gets one whole slot of grace.
            if self.playing {
                if now < grid.slot(grid.sent) + FRAME_DURATION {
                    return None;
                }
                self.stats.underruns += 1;
                self.playing = false;
            }
            if grid.sent + 1 < started {
                self.stats.late_slots += started - 1 - grid.sent;
            }
            grid.sent = started;
            let n = frame.min(out.len());
            out[..n].fill(0);
            self.stats.silence_frames += 1;
            return Some(n);
        }
        // Released frames may run at most `ahead` slots before real time.
        if grid.sent >= started + ahead {
            return None;
        }
        let n = if self.queue.len() >= frame || self.ended {
            // The driver overslept: skip the missed slots rather than burst.
            if grid.sent + 1 < started {
                self.stats.late_slots += started - 1 - grid.sent;
                grid.sent = started - 1;
            }
            frame.min(self.queue.len())
        } else if now >= grid.slot(grid.sent) + FRAME_DURATION {
            // A partial frame that waited a whole slot for the rest leaves
            // short, in the slot that is current now.
            grid.sent = started - 1;
            self.queue.len()
        } else {
            return None;
        };
        let n = n.min(out.len());
        if self.gain < 1.0 {
            let g = self.gain;
            for (o, s) in out.iter_mut().zip(self.queue.drain(..n)) {
                *o = (f32::from(s) * g) as i16;
            }
        } else {
            for (o, s) in out.iter_mut().zip(self.queue.drain(..n)) {
                *o = s;
            }
        }
        grid.sent += 1;
        self.released += n as u64;
        self.stats.frames_sent += 1;
        self.playing = !self.ended || !self.queue.is_empty();
        Some(n)
    }

    /// When [`poll_frame`](Self::poll_frame) next has something, if audio is queued.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let grid = self.grid.as_ref()?;
        if self.queue.is_empty() {
            return match (self.keepalive, self.playing) {
                (false, _) => None,
                (true, false) => Some(grid.slot(grid.sent)),
                (true, true) => Some(grid.slot(grid.sent) + FRAME_DURATION),
            };
        }
        let slot = grid.sent.saturating_sub(u64::from(self.send_ahead));
        if self.queue.len() >= self.frame || self.ended {
            Some(grid.slot(slot))
        } else {
            Some(grid.slot(grid.sent) + FRAME_DURATION)
        }
    }

    fn end_grid(&mut self) {
        if let Some(grid) = self.grid.take() {
            self.resume_at = grid.slot(grid.sent);
        }
    }

    /// Ends the grid once the queue has been empty through a whole slot.
    fn lapse_if_stale(&mut self, now: Time) {
        if let Some(grid) = self.grid
            && !self.keepalive
            && self.queue.is_empty()
            && now >= grid.slot(grid.sent) + FRAME_DURATION
        {
            // Running dry after the producer's marked end is the end of
            // an utterance, not an underrun.
            if grid.sent > 0 && !self.ended {
                self.stats.underruns += 1;
            }
            self.end_grid();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    fn t(ms: u64) -> Time {
        Time::from_micros(ms * MS)
    }

    fn ramp(n: usize) -> Vec<i16> {
        (0..n).map(|i| i as i16).collect()
    }

    /// Steps a simulated clock through deadlines, returning (time, len) per frame.
    fn drain(p: &mut Playout, from: Time, until: Time) -> Vec<(Time, usize)> {
        let mut out = vec![0i16; p.frame_samples()];
        let mut now = from;
        let mut sent = Vec::new();
        loop {
            while let Some(n) = p.poll_frame(now, &mut out) {
                sent.push((now, n));
            }
            match p.poll_timeout() {
                Some(next) if next <= until => now = next.max(now),
                _ => return sent,
            }
        }
    }

    #[test]
    fn one_frame_per_tick_exactly() {
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        assert_eq!(p.push(t(1000), &ramp(1600)), 1600);
        let sent = drain(&mut p, t(1000), t(5000));
        assert_eq!(sent.len(), 10);
        for (i, (at, n)) in sent.iter().enumerate() {
            assert_eq!(*n, 160);
            assert_eq!(*at, t(1000 + 20 * i as u64));
        }
        assert!(p.is_idle() || p.queued().is_zero());
    }

    #[test]
    fn send_ahead_is_bounded() {
        for ahead in 0..=4u8 {
            let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), ahead);
            p.push(t(0), &ramp(1600));
            let mut out = [0i16; 160];
            let mut burst = 0;
            while p.poll_frame(t(0), &mut out).is_some() {
                burst += 1;
            }
            assert_eq!(burst, 1 + usize::from(ahead.min(MAX_SEND_AHEAD)));
        }
    }

    #[test]
    fn samples_come_out_in_order() {
        let mut p = Playout::new(SampleRate::HZ_16000, Duration::from_secs(5), 1);
        let input = ramp(3200);
        p.push(t(0), &input);
        let mut got = Vec::new();
        let mut out = vec![0i16; 320];
        let mut now = t(0);
        loop {
            while let Some(n) = p.poll_frame(now, &mut out) {
                got.extend_from_slice(&out[..n]);
            }
            match p.poll_timeout() {
                Some(next) => now = next,
                None => break,
            }
        }
        assert_eq!(got, input);
    }

    #[test]
    fn flush_drops_everything_and_stops_at_once() {
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        p.push(t(0), &ramp(8000));
        let mut out = [0i16; 160];
        assert!(p.poll_frame(t(0), &mut out).is_some());
        assert!(p.poll_frame(t(20), &mut out).is_some());
        assert_eq!(p.flush(), 8000 - 320);
        assert_eq!(p.poll_frame(t(40), &mut out), None);
        assert_eq!(p.poll_timeout(), None);
        assert!(p.is_idle());
        assert_eq!(p.stats().flushed_samples, 7680);
        // New audio starts a fresh grid immediately.
        p.push(t(47), &ramp(160));
        assert_eq!(p.poll_frame(t(47), &mut out), Some(160));
    }

    #[test]
    fn just_in_time_producer_keeps_the_grid() {
        // Frames pushed 1-15 ms after their slot: output stays on the grid.
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        let mut out = [0i16; 160];
        let mut times = Vec::new();
        for k in 0..50u64 {
            let jitter = (k * 7) % 15;
            let now = t(20 * k + jitter);
            p.push(now, &ramp(160));
            while p.poll_frame(now, &mut out).is_some() {
                times.push(now);
            }
            if let Some(d) = p.poll_timeout()
                && d < t(20 * (k + 1))
            {
                while p.poll_frame(d, &mut out).is_some() {
                    times.push(d);
                }
            }
        }
        assert_eq!(times.len(), 50);
        assert_eq!(p.stats().underruns, 0);
    }

    #[test]
    fn a_late_driver_gets_no_burst() {
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        p.push(t(0), &ramp(1600));
        let mut out = [0i16; 160];
        assert!(p.poll_frame(t(0), &mut out).is_some());
        // Wake up 65 ms late: one frame, not four.
        let mut n = 0;
        while p.poll_frame(t(85), &mut out).is_some() {
            n += 1;
        }
        assert_eq!(n, 1);
        assert_eq!(p.stats().late_slots, 3);
        assert_eq!(p.poll_timeout(), Some(t(100)));
    }

    #[test]
    fn partial_frame_waits_one_slot_then_leaves_short() {
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        p.push(t(0), &ramp(240)); // 30 ms
        let mut out = [0i16; 160];
        assert_eq!(p.poll_frame(t(0), &mut out), Some(160));
        assert_eq!(p.poll_frame(t(20), &mut out), None);
        assert_eq!(p.poll_timeout(), Some(t(40)));
        assert_eq!(p.poll_frame(t(40), &mut out), Some(80));
        // Completed in time, it leaves whole on its slot.
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        p.push(t(0), &ramp(240));
        assert_eq!(p.poll_frame(t(0), &mut out), Some(160));
        p.push(t(25), &ramp(240));
        assert_eq!(p.poll_frame(t(25), &mut out), Some(160));
        assert_eq!(p.poll_frame(t(40), &mut out), Some(160));
    }

    #[test]
    fn a_short_last_frame_leaves_on_its_slot_once_the_producer_is_done() {
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        p.push(t(0), &ramp(200)); // one frame and 40 samples
        p.mark_end();
        let mut out = [0i16; 160];
        assert_eq!(p.poll_frame(t(0), &mut out), Some(160));
        assert_eq!(p.poll_timeout(), Some(t(20)));
        assert_eq!(p.poll_frame(t(20), &mut out), Some(40));
        // More audio clears the mark: a partial waits for the rest again.
        p.push(t(30), &ramp(100));
        assert_eq!(p.poll_frame(t(40), &mut out), None);
    }

    #[test]
    fn capacity_bounds_memory() {
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_millis(100), 0);
        assert_eq!(p.push(t(0), &ramp(1000)), 800);
        assert_eq!(p.stats().overflow_samples, 200);
        assert_eq!(p.push_silence(t(0), Duration::from_secs(1)), 0);
    }

    #[test]
    fn a_long_gap_lapses_the_grid() {
        let mut p = Playout::new(SampleRate::HZ_8000, Duration::from_secs(5), 0);
        let mut out = [0i16; 160];
        p.push(t(0), &ramp(160));
        assert!(p.poll_frame(t(0), &mut out).is_some());
        // Silence for 5 s (a Local channel sends nothing), then audio again.
        p.push(t(5000), &ramp(320));
        assert_eq!(p.stats().underruns, 1);
        assert_eq!(p.poll_frame(t(5000), &mut out), Some(160));
        assert_eq!(p.poll_timeout(), Some(t(5020)));
    }
}
