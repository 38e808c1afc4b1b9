//! An adaptive jitter buffer for one RTP stream of fixed-length frames.
//!
//! Packets go in as they arrive ([`JitterBuffer::handle_packet`]); one
//! frame comes out per frame interval ([`JitterBuffer::poll_frame`]), in
//! sequence order. A frame that has not arrived when its turn comes, while
//! later ones have, is reported [`Playout::Lost`] so the decoder can
//! conceal it (G.711: repeat the last frame, fading; Opus: its own loss
//! concealment); it is not waited for again. When the buffer runs dry the
//! stream re-buffers to a deeper target instead of skipping ahead, so a
//! late burst is played, not dropped.
//!
//! The target depth follows the interarrival jitter of RFC 3550 §6.4.1,
//! `J += (|D| - J) / 16`, kept in microseconds: two jitters plus one frame,
//! rounded up to whole frames, between `min` and `max` frames.
//!
//! A sender with silence suppression (DTX; Asterisk bridging a Local
//! channel that sends nothing in silence) stops sending in a pause and
//! starts the next talkspurt with the marker bit and a timestamp jump
//! (RFC 3551 §4.1). A buffer that ran dry and then gets such a packet (or
//! one whose timestamp moved on further than its sequence number) starts a
//! new talkspurt: play resumes at its first packet, the pause is neither an
//! underrun (the depth does not grow) nor a loss (a sender that counted
//! sequence numbers through the pause is followed, not concealed until its
//! first packets overflow), and no jitter is measured across the pause.
//!
//! Sequence numbers are extended to 64 bits across the 16-bit wrap, so the
//! order is right at 65535 -> 0. A jump of more than [`MAX_JUMP`] (a new
//! sender, an SSRC change the caller did not report) restarts the buffer,
//! and so do [`MAX_LATE_RUN`] late packets in a row (a sender that went
//! back in sequence). The caller restarts it on an SSRC change
//! ([`JitterBuffer::reset`]).
//!
//! Pure: time is an input (`now`), nothing here reads a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use media_core::Time;

/// A sequence jump larger than this restarts the stream (about 10 s of
/// 20 ms frames).
pub const MAX_JUMP: u64 = 500;

/// This many late packets in a row mean the sender went back in sequence
/// (a restarted stream under the same SSRC), not a few stragglers: the
/// buffer restarts on the next one instead of dropping the stream.
pub const MAX_LATE_RUN: u32 = 10;

/// What the next frame interval plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The frame's payload.
    Frame(Vec<u8>),
    /// The frame was lost: conceal it.
    Lost,
    /// Nothing to play yet (buffering, or run dry): play silence or
    /// concealment, the stream has not moved on.
    Waiting,
}

/// Counters for the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets accepted.
    pub received: u64,
    /// Frames played from a packet.
    pub played: u64,
    /// Frames reported lost.
    pub lost: u64,
    /// Packets that arrived after their turn.
    pub late: u64,
    /// Packets already buffered or played.
    pub duplicates: u64,
    /// Packets dropped because the buffer was over its maximum.
    pub overflow: u64,
    /// Times the buffer ran dry and re-buffered (a pause that turned out
    /// to be a talkspurt boundary is not counted).
    pub underruns: u64,
    /// Talkspurts started after the sender paused.
    pub talkspurts: u64,
    /// Restarts after a sequence jump.
    pub restarts: u64,
}

/// The buffer. See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    frame: Duration,
    /// RTP clock ticks per second.
    clock: u32,
    min: usize,
    max: usize,
    target: usize,
    /// Buffered packets: (RTP timestamp, payload) by extended sequence.
    packets: BTreeMap<u64, (u32, Vec<u8>)>,
    /// The extended sequence number of the next frame to play; `None`
    /// before the first packet.
    next: Option<u64>,
    /// The highest extended sequence number seen.
    highest: Option<u64>,
    buffering: bool,
    /// A frame has been played or declared lost since the (re)start: older
    /// packets are late from then on.
    started: bool,
    /// Interarrival jitter, µs.
    jitter_us: f64,
    /// (arrival, RTP timestamp) of the previous packet, for the jitter.
    previous: Option<(Time, u32)>,
    /// Late packets in a row.
    late_run: u32,
    /// The buffer ran dry: the target before it grew for that, and the
    /// last played packet's (extended sequence, timestamp), to tell a
    /// sender's pause (a new talkspurt) from a late sender.
    dry: Option<Dry>,
    /// Timestamp of the packet played last.
    played_ts: Option<(u64, u32)>,
    stats: JitterStats,
}

/// What the buffer knew when it ran dry.
#[derive(Debug, Clone, Copy)]
struct Dry {
    target: usize,
    last: Option<(u64, u32)>,
}

impl JitterBuffer {
    /// A buffer for frames of `frame` at an RTP clock of `clock` Hz,
    /// holding between `min` and `max` frames (at least 1 and `min`).
    pub fn new(frame: Duration, clock: u32, min: usize, max: usize) -> JitterBuffer {
        let min = min.max(1);
        JitterBuffer {
            frame,
            clock: clock.max(1),
            min,
            max: max.max(min),
            target: min,
            packets: BTreeMap::new(),
            next: None,
            highest: None,
            buffering: true,
            started: false,
            jitter_us: 0.0,
            previous: None,
            late_run: 0,
            dry: None,
            played_ts: None,
            stats: JitterStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The depth the buffer aims for, in frames.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Frames buffered now.
    pub fn depth(&self) -> usize {
        self.packets.len()
    }

    /// The interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_micros(self.jitter_us as u64)
    }

    /// Takes a packet that arrived at `now`; `marker` is its RTP marker
    /// bit (set on the first packet of a talkspurt).
    pub fn handle_packet(
        &mut self,
        now: Time,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        let ext = self.extend(sequence);
        if let Some(h) = self.highest
            && ext.abs_diff(h) > MAX_JUMP
        {
            self.restart();
            self.stats.restarts += 1;
            return self.handle_packet(now, sequence, timestamp, marker, payload);
        }
        if let Some(dry) = self.dry
            && self.packets.is_empty()
            && let Some(n) = self.next
            && (ext > n || (ext == n && (marker || self.paused(dry, ext, timestamp))))
        {
            // Frames skipped in sequence while dry were never sent (a
            // sender counting through its pause) or are gone: concealing
            // them one per interval would only hold back the new speech.
            // The sender paused: a new talkspurt starts at this packet.
            self.dry = None;
            self.target = dry.target;
            self.stats.underruns = self.stats.underruns.saturating_sub(1);
            self.stats.talkspurts += 1;
            self.next = Some(ext);
            self.previous = None;
        }
        self.update_jitter(now, timestamp);
        if self.started && self.next.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            self.late_run += 1;
            if self.late_run >= MAX_LATE_RUN {
                self.restart();
                self.stats.restarts += 1;
            }
            return;
        }
        self.late_run = 0;
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.received += 1;
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.packets.insert(ext, (timestamp, payload.to_vec()));
        if !self.started && self.next.is_none_or(|n| ext < n) {
            // Before play starts, it starts at the oldest packet.
            self.next = Some(ext);
        }
        while self.packets.len() > self.max {
            // Over the maximum: the oldest frames go, and play moves on.
            if let Some((&oldest, _)) = self.packets.first_key_value() {
                self.packets.remove(&oldest);
                self.stats.overflow += 1;
                self.next = self.packets.keys().next().copied();
            }
        }
    }

    /// The frame for the interval starting now. Call once per frame
    /// interval.
    #[must_use]
    pub fn poll_frame(&mut self) -> Playout {
        let Some(next) = self.next else {
            return Playout::Waiting;
        };
        if self.buffering {
            if self.packets.len() < self.target {
                return Playout::Waiting;
            }
            self.buffering = false;
            self.started = true;
        }
        if let Some((ts, payload)) = self.packets.remove(&next) {
            self.next = Some(next + 1);
            self.stats.played += 1;
            self.dry = None;
            self.played_ts = Some((next, ts));
            return Playout::Frame(payload);
        }
        if self.packets.is_empty() {
            // Run dry: the sender is late, not lossy (wait deeper), unless
            // it paused, which its next packet tells (`handle_packet`).
            if self.dry.is_none() {
                self.dry = Some(Dry {
                    target: self.target,
                    last: self.played_ts,
                });
            }
            self.buffering = true;
            self.stats.underruns += 1;
            self.target = (self.target + 1).min(self.max);
            return Playout::Waiting;
        }
        // Later frames are here and this one is not: it is lost.
        self.next = Some(next + 1);
        self.stats.lost += 1;
        Playout::Lost
    }

    /// Starts over, as for a new stream (the sender's SSRC changed).
    pub fn reset(&mut self) {
        self.restart();
        self.stats.restarts += 1;
    }

    /// True when a packet `ext` with `timestamp`, arriving at a dry buffer,
    /// moved on in time further than in sequence since the last played
    /// packet: the sender stopped sending in a pause (DTX without a marker).
    fn paused(&self, dry: Dry, ext: u64, timestamp: u32) -> bool {
        let Some((seq, ts)) = dry.last else {
            return false;
        };
        let packets = ext.saturating_sub(seq);
        let ticks = u64::from(timestamp.wrapping_sub(ts));
        // Frame length in RTP ticks.
        let frame = self.frame.as_micros() as u64 * u64::from(self.clock) / 1_000_000;
        // A timestamp that went back wraps to a huge value: not a pause.
        ticks < u64::from(self.clock) * 3_600 && ticks > (packets + 1) * frame.max(1)
    }

    fn restart(&mut self) {
        self.late_run = 0;
        self.dry = None;
        self.played_ts = None;
        self.packets.clear();
        self.next = None;
        self.highest = None;
        self.buffering = true;
        self.started = false;
        self.previous = None;
        self.jitter_us = 0.0;
        self.target = self.min;
    }

    /// The extended sequence number nearest the highest seen.
    fn extend(&self, sequence: u16) -> u64 {
        let Some(h) = self.highest else {
            // Start well above zero so a reordered predecessor still fits.
            return (1 << 16) + u64::from(sequence);
        };
        let cycle = h & !0xffff;
        let candidates = [
            cycle.wrapping_sub(1 << 16) | u64::from(sequence),
            cycle | u64::from(sequence),
            (cycle + (1 << 16)) | u64::from(sequence),
        ];
        candidates
            .into_iter()
            .min_by_key(|c| c.abs_diff(h))
            .unwrap_or(cycle | u64::from(sequence))
    }

    fn update_jitter(&mut self, now: Time, timestamp: u32) {
        if let Some((then, ts)) = self.previous {
            let arrival = now.as_micros() as f64 - then.as_micros() as f64;
            let ticks = f64::from(timestamp.wrapping_sub(ts) as i32);
            let sent = ticks * 1e6 / f64::from(self.clock);
            let d = (arrival - sent).abs();
            self.jitter_us += (d - self.jitter_us) / 16.0;
            let frame = self.frame.as_micros().max(1) as f64;
            let want = ((2.0 * self.jitter_us + frame) / frame).ceil() as usize;
            // The target only grows here; underruns grow it too. It comes
            // back down when the jitter has been low for a while.
            let want = want.clamp(self.min, self.max);
            if want > self.target || (want < self.target && self.jitter_us < frame / 4.0) {
                self.target = want;
            }
        }
        self.previous = Some((now, timestamp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    fn at(ms: u64) -> Time {
        Time::from_micros(ms * 1000)
    }

    /// Feeds `(arrival ms, seq)` packets of 160 ticks each and polls one
    /// frame every 20 ms from `start` ms, for `polls` frames; returns what
    /// was played, as sequence numbers (payload byte 0..2) or "L"/"W".
    fn run(
        packets: &[(u64, u16)],
        start: u64,
        polls: usize,
        min: usize,
    ) -> (Vec<String>, JitterStats) {
        let mut jb = JitterBuffer::new(FRAME, 8000, min, 10);
        let mut out = Vec::new();
        let mut i = 0;
        for p in 0..polls as u64 {
            let now = start + p * 20;
            while i < packets.len() && packets[i].0 <= now {
                let (t, seq) = packets[i];
                // Timestamps advance with the frames, not with the 16-bit
                // sequence number (they wrap at 2^32, not 2^16).
                let ts = u32::from(seq.wrapping_sub(packets[0].1)) * 160;
                jb.handle_packet(at(t), seq, ts, false, &seq.to_be_bytes());
                i += 1;
            }
            out.push(match jb.poll_frame() {
                Playout::Frame(b) => u16::from_be_bytes([b[0], b[1]]).to_string(),
                Playout::Lost => "L".into(),
                Playout::Waiting => "W".into(),
            });
        }
        (out, jb.stats())
    }

    fn steady(seqs: &[u16]) -> Vec<(u64, u16)> {
        seqs.iter()
            .enumerate()
            .map(|(i, &s)| (i as u64 * 20, s))
            .collect()
    }

    #[test]
    fn in_order_packets_play_in_order() {
        let (out, st) = run(&steady(&[10, 11, 12, 13]), 0, 5, 1);
        assert_eq!(out, ["10", "11", "12", "13", "W"]);
        assert_eq!((st.played, st.lost), (4, 0));
    }

    #[test]
    fn reordered_packets_are_put_back_in_order() {
        let packets = [(0, 1), (20, 3), (21, 2), (40, 4), (60, 5)];
        let (out, st) = run(&packets, 10, 5, 2);
        assert_eq!(out, ["W", "1", "2", "3", "4"]);
        assert_eq!(st.lost, 0);
    }

    #[test]
    fn a_lost_packet_is_reported_once_and_play_goes_on() {
        let packets = [(0, 1), (20, 2), (60, 4), (80, 5), (100, 6)];
        let (out, st) = run(&packets, 30, 5, 1);
        assert_eq!(out, ["1", "2", "L", "4", "5"]);
        assert_eq!(st.lost, 1);
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped() {
        // 3 is declared lost, then arrives; 2 arrives twice.
        let packets = [(0, 1), (20, 2), (21, 2), (40, 4), (60, 5), (75, 3)];
        let (out, st) = run(&packets, 10, 5, 1);
        assert_eq!(out, ["1", "2", "L", "4", "5"]);
        assert_eq!((st.duplicates, st.late, st.lost), (1, 1, 1));
    }

    #[test]
    fn a_sender_that_goes_back_in_sequence_is_followed_not_dropped() {
        // 100..=119 play, then the sender restarts at 50 (same SSRC).
        let mut seqs: Vec<u16> = (100..120).collect();
        seqs.extend(50..90);
        let (out, st) = run(&steady(&seqs), 10, 60, 1);
        assert_eq!(st.late, u64::from(MAX_LATE_RUN));
        assert_eq!(st.restarts, 1);
        assert_eq!(out.last().map(String::as_str), Some("89"), "{out:?}");
        assert!(out.contains(&"60".to_string()), "{out:?}");
        let mut jb = JitterBuffer::new(FRAME, 8000, 1, 10);
        jb.handle_packet(at(0), 7, 0, false, &[1]);
        jb.reset();
        assert_eq!(jb.poll_frame(), Playout::Waiting);
        assert_eq!(jb.stats().restarts, 1);
    }

    #[test]
    fn the_sequence_wraps() {
        let (out, st) = run(&steady(&[65533, 65534, 65535, 0, 1, 2]), 0, 6, 1);
        assert_eq!(out, ["65533", "65534", "65535", "0", "1", "2"]);
        assert_eq!(st.lost, 0);
        // Reordered across the wrap.
        let packets = [(0, 65534), (20, 0), (21, 65535), (40, 1), (60, 2)];
        let (out, _) = run(&packets, 10, 4, 2);
        assert_eq!(out, ["W", "65534", "65535", "0"]);
    }

    #[test]
    fn running_dry_rebuffers_deeper_instead_of_skipping() {
        // A 100 ms gap, then the late packets arrive in a burst.
        let packets = [(0, 1), (20, 2), (140, 3), (141, 4), (142, 5), (143, 6)];
        let (out, st) = run(&packets, 0, 12, 1);
        assert_eq!(&out[..2], ["1", "2"]);
        assert!(
            out[2..].iter().filter(|s| *s == "L").count() == 0,
            "{out:?}"
        );
        let played: Vec<&String> = out.iter().filter(|s| *s != "W").collect();
        assert_eq!(played, ["1", "2", "3", "4", "5", "6"]);
        assert!(st.underruns >= 1);
    }

    #[test]
    fn jittery_arrival_deepens_the_target() {
        let mut jb = JitterBuffer::new(FRAME, 8000, 1, 10);
        for i in 0..200u16 {
            // Every other packet 30 ms late.
            let late = if i % 2 == 1 { 30 } else { 0 };
            jb.handle_packet(
                at(u64::from(i) * 20 + late),
                i,
                u32::from(i) * 160,
                false,
                &[0],
            );
        }
        assert!(jb.jitter() > Duration::from_millis(15), "{:?}", jb.jitter());
        assert!(jb.target() >= 3, "target {}", jb.target());
        let mut calm = JitterBuffer::new(FRAME, 8000, 1, 10);
        for i in 0..200u16 {
            calm.handle_packet(at(u64::from(i) * 20), i, u32::from(i) * 160, false, &[0]);
        }
        assert_eq!(calm.target(), 1);
    }

    #[test]
    fn a_big_jump_restarts_and_overflow_is_bounded() {
        let mut jb = JitterBuffer::new(FRAME, 8000, 1, 4);
        for s in 0..10u16 {
            jb.handle_packet(at(0), s, u32::from(s) * 160, false, &[s as u8]);
        }
        assert_eq!(jb.depth(), 4);
        assert_eq!(jb.stats().overflow, 6);
        assert_eq!(jb.poll_frame(), Playout::Frame(vec![6]));
        jb.handle_packet(at(20), 30_000, 0, false, &[99]);
        assert_eq!(jb.stats().restarts, 1);
        assert_eq!(jb.poll_frame(), Playout::Frame(vec![99]));
    }

    /// A DTX sender (a phone with silence suppression, Asterisk bridging a
    /// Local channel): talkspurts of 1 s with pauses of 2 s in which it
    /// sends nothing; each talkspurt starts with the marker bit and a
    /// timestamp that moved on by the pause. `counts_through` is a sender
    /// whose sequence number also advanced through the pause.
    fn dtx_sender(marker: bool, counts_through: bool) -> Vec<(u64, u16, u32, bool)> {
        let mut out = Vec::new();
        let mut seq = 1000u16;
        for spurt in 0..5u64 {
            let start = spurt * 3_000;
            for i in 0..50u64 {
                let t = start + i * 20;
                out.push((t, seq, (t * 8) as u32, marker && i == 0));
                seq = seq.wrapping_add(1);
            }
            if counts_through {
                seq = seq.wrapping_add(100);
            }
        }
        out
    }

    /// Plays `packets` polling every 20 ms; returns (arrival ms, play ms)
    /// of each packet's payload (its sequence number) and the stats.
    fn play_dtx(packets: &[(u64, u16, u32, bool)]) -> (Vec<(u64, u64)>, JitterStats) {
        let mut jb = JitterBuffer::new(FRAME, 8000, 2, 15);
        let mut played = Vec::new();
        let mut i = 0;
        for tick in 0..(16_000 / 20) {
            let now = tick * 20 + 5;
            while i < packets.len() && packets[i].0 <= now {
                let (t, seq, ts, m) = packets[i];
                jb.handle_packet(at(t), seq, ts, m, &seq.to_be_bytes());
                i += 1;
            }
            if let Playout::Frame(b) = jb.poll_frame() {
                let seq = u16::from_be_bytes([b[0], b[1]]);
                let sent = packets.iter().find(|p| p.1 == seq).map_or(0, |p| p.0);
                played.push((sent, now));
            }
        }
        (played, jb.stats())
    }

    #[test]
    fn a_new_talkspurt_plays_from_its_first_packet_at_the_same_depth() {
        for (marker, counts_through) in [(true, false), (false, false), (true, true), (false, true)]
        {
            let packets = dtx_sender(marker, counts_through);
            let (played, st) = play_dtx(&packets);
            let what = format!("marker {marker}, counts through {counts_through}: {st:?}");
            // Every packet of every talkspurt is played, none concealed.
            assert_eq!(played.len(), packets.len(), "{what}");
            assert_eq!((st.lost, st.overflow, st.late), (0, 0, 0), "{what}");
            assert_eq!(st.talkspurts, 4, "{what}");
            // The 5th talkspurt is delayed no more than the 1st: pauses do
            // not deepen the buffer.
            let delay = |k: usize| played[k * 50].1 - played[k * 50].0;
            assert!(delay(4) <= delay(0), "{what}: {} vs {}", delay(4), delay(0));
            assert!(delay(4) <= 60, "{what}: {} ms", delay(4));
        }
    }

    #[test]
    fn a_late_sender_is_still_an_underrun() {
        // Contiguous timestamps after a 100 ms stall: the network held the
        // packets, the sender did not pause.
        let mut jb = JitterBuffer::new(FRAME, 8000, 1, 10);
        jb.handle_packet(at(0), 1, 0, false, &[1]);
        assert_eq!(jb.poll_frame(), Playout::Frame(vec![1]));
        assert_eq!(jb.poll_frame(), Playout::Waiting);
        jb.handle_packet(at(120), 2, 160, false, &[2]);
        assert_eq!(jb.stats().underruns, 1);
        assert_eq!(jb.stats().talkspurts, 0);
        assert_eq!(jb.target(), 2);
    }
}
