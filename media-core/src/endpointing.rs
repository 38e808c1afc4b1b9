//! Endpointing: when a caller's turn starts and when it has ended.
//!
//! The [`Endpointer`] cuts the caller's audio into VAD windows, asks its
//! [`Vad`] for a speech probability per window, and decides:
//!
//! - **Speech start** once voiced windows add up to `min_speech`, so a cough,
//!   a click or a short tone is not a turn.
//! - **Turn end** after `hangover` of silence, counted from the end of the
//!   caller's audible speech: the last window within 30 dB of the turn's
//!   loudest, but never more than 160 ms before the VAD's last voiced
//!   window (a VAD's probability trails the speech by about that much;
//!   softer speech still holds the turn). Without any level to judge
//!   (digital silence), from the VAD's last voiced window. This is judged
//!   on the driver's clock (through [`Endpointer::poll_timeout`]), not on
//!   inbound frames, because a Local channel sends nothing during silence.
//! - **Pre-roll**: the turn's audio starts `pre_roll` before the first voiced
//!   window, so the first syllable is not cut.
//! - **Maximum turn**: a turn is cut at `max_turn` and a new one begins if the
//!   caller is still talking.
//!
//! Two thresholds give hysteresis: a window must reach `speech_threshold` to
//! start speech, but only `silence_threshold` to keep it going.
//!
//! Contract: feed audio with [`handle_audio`](Endpointer::handle_audio), call
//! [`handle_timeout`](Endpointer::handle_timeout) at
//! [`poll_timeout`](Endpointer::poll_timeout), and drain
//! [`poll_event`](Endpointer::poll_event) after each.

use std::collections::VecDeque;
use std::time::Duration;

use crate::frame::{Frame, SampleRate, Time};
use crate::resample::Resampler;
use crate::vad::Vad;

/// Endpointing settings (per agent in `hark.toml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointConfig {
    /// Probability that starts speech.
    pub speech_threshold: f32,
    /// Probability below which speech counts as paused (hysteresis).
    pub silence_threshold: f32,
    /// Voiced audio needed before a turn starts.
    pub min_speech: Duration,
    /// Silence that ends a turn.
    pub hangover: Duration,
    /// Audio kept from before the first voiced window.
    pub pre_roll: Duration,
    /// Longest turn before it is cut.
    pub max_turn: Duration,
    /// After this much silence (less than `hangover`), the turn so far is
    /// offered as a [`EndpointEvent::Preview`], so STT can start while the
    /// endpointer still waits to be sure the caller has finished. `None`:
    /// no previews.
    pub preview: Option<Duration>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            // Silero's own recommended operating point.
            speech_threshold: 0.5,
            silence_threshold: 0.35,
            // Longer than a click or a DTMF digit (40-100 ms), shorter than "no".
            min_speech: Duration::from_millis(200),
            // Long enough for a breath between phrases; each 100 ms here is
            // 100 ms more before the agent can answer.
            hangover: Duration::from_millis(700),
            // Silero fires a window or two into a word; 300 ms covers the onset.
            pre_roll: Duration::from_millis(300),
            // Whisper's window is 30 s; a longer turn is a monologue or noise.
            max_turn: Duration::from_secs(30),
            preview: None,
        }
    }
}

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEnd {
    /// `hangover` of silence.
    Silence,
    /// The turn reached `max_turn`.
    MaxLength,
    /// The call ended while the caller was talking.
    Finished,
}

/// A complete caller turn, ready for STT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Rate of `samples` (the VAD's rate).
    pub rate: SampleRate,
    /// The turn's audio, pre-roll included, trailing silence trimmed.
    pub samples: Vec<i16>,
    /// When the first voiced window began.
    pub speech_start: Time,
    /// When the last voiced window ended.
    pub speech_end: Time,
    /// When the end was decided (`speech_end + hangover` for silence).
    pub decided_at: Time,
    /// Why it ended.
    pub reason: TurnEnd,
}

impl Turn {
    /// A turn made from a recording rather than a live call (tests, tools):
    /// its times are zero and it ended on silence.
    pub fn from_recording(rate: SampleRate, samples: Vec<i16>) -> Self {
        Self {
            rate,
            samples,
            speech_start: Time::ZERO,
            speech_end: Time::ZERO,
            decided_at: Time::ZERO,
            reason: TurnEnd::Silence,
        }
    }

    /// Length of the turn's audio.
    pub fn duration(&self) -> Duration {
        self.rate.duration_of(self.samples.len())
    }
}

/// What the endpointer tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// The caller started talking (speech confirmed; `at` is its onset).
    SpeechStarted {
        /// When the first voiced window began.
        at: Time,
    },
    /// A turn is complete.
    TurnEnded(Turn),
    /// The caller has paused for `preview`: the turn so far, in case it is
    /// complete. If the turn then ends with the same `speech_start` and
    /// `speech_end`, its audio is this audio (plus trailing silence).
    Preview(Turn),
    /// A window for a VAD that runs elsewhere (an endpointer made with
    /// [`Endpointer::scored_elsewhere`]): score it and report the speech
    /// probability with [`Endpointer::handle_score`], in order.
    Score {
        /// The window's rate (the VAD's).
        rate: SampleRate,
        /// The window.
        samples: Vec<i16>,
    },
}

/// Where a window's speech probability comes from.
enum Scoring {
    /// A VAD called in place (the energy VAD; tools and tests).
    Inline(Box<dyn Vad>),
    /// A VAD on inference threads: windows wait here, in order, with the
    /// time they came, until their scores come back.
    Elsewhere(VecDeque<(Time, Vec<i16>)>),
}

impl std::fmt::Debug for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scoring::Inline(v) => f.debug_tuple("Inline").field(v).finish(),
            Scoring::Elsewhere(q) => f.debug_tuple("Elsewhere").field(&q.len()).finish(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Silence,
    /// Voiced windows seen, not yet `min_speech` of them.
    Candidate {
        start_pos: u64,
        start_at: Time,
        voiced: Duration,
        last_voiced_at: Time,
    },
    Speaking {
        /// Stream position where the turn's audio starts (pre-roll included).
        turn_pos: u64,
        speech_start: Time,
        last_voiced_at: Time,
        last_voiced_pos: u64,
        /// Windows at or above `speech_threshold` in this turn, summed.
        voiced: Duration,
        /// The end of the last window loud enough to be the caller's speech
        /// (within [`LOUD_RANGE_DB`] of the turn's loudest), if any was.
        last_loud_at: Option<Time>,
        /// The turn's loudest window, dBFS.
        peak_db: f32,
    },
}

/// The caller's speech so far in the current turn: what barge-in is
/// judged on, so a cough or a click never cuts the agent off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voice {
    /// When the first voiced window began.
    pub onset: Time,
    /// Voiced audio in the turn so far (pauses not counted).
    pub voiced: Duration,
}

/// Decides turn boundaries from a [`Vad`]. See the module docs.
#[derive(Debug)]
pub struct Endpointer {
    config: EndpointConfig,
    scoring: Scoring,
    rate: SampleRate,
    window: usize,
    window_len: Duration,
    /// Samples not yet a whole window.
    pending: Vec<i16>,
    /// Recent audio while not speaking, for pre-roll.
    history: VecDeque<i16>,
    history_cap: usize,
    turn: Vec<i16>,
    state: State,
    /// Samples seen so far (at the VAD rate).
    pos: u64,
    resampler: Option<Resampler>,
    scratch: Vec<i16>,
    events: VecDeque<EndpointEvent>,
    vad_errors: u64,
    last_probability: f32,
    /// `last_voiced_at` of the pause last previewed.
    previewed: Option<Time>,
}

/// A candidate ends if no voiced window comes for this long.
const CANDIDATE_GAP: Duration = Duration::from_millis(300);
/// Silence kept after the last voiced window when a turn is trimmed.
const TAIL: Duration = Duration::from_millis(150);
/// A VAD's probability trails the end of speech: Silero's stays high for
/// 100-200 ms after the last audible sound (170 ms on average over the
/// voice bench's real prompts), because it judges a window by its context.
/// 200 ms here measured worse than 160 in the voice bench (voice-to-voice
/// p95 805 vs 611 ms).
/// The pause (hangover, preview) is counted from the end of the caller's
/// audible speech instead, but never from more than this before the VAD's
/// last voiced window, so speech too soft to count as loud still holds the
/// turn.
const VAD_TAIL: Duration = Duration::from_millis(160);
/// A window within this much of the turn's loudest is speech, not its
/// fading tail or the line's noise.
const LOUD_RANGE_DB: f32 = 30.0;
/// Quieter than this is never speech on a phone line.
const LOUD_FLOOR_DB: f32 = -55.0;

/// A window's level, dBFS (-100 for digital silence).
fn level_db(window: &[i16]) -> f32 {
    if window.is_empty() {
        return -100.0;
    }
    let energy: f64 = window.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / window.len() as f64).sqrt() / 32_768.0;
    if rms <= 1e-5 {
        -100.0
    } else {
        (20.0 * rms.log10()) as f32
    }
}

/// Where the current pause is counted from: the end of audible speech,
/// at most [`VAD_TAIL`] before the VAD's last voiced window; the VAD's
/// last voiced window itself when no window was loud (no level to judge).
fn pause_anchor(last_voiced_at: Time, last_loud_at: Option<Time>) -> Time {
    match last_loud_at {
        None => last_voiced_at,
        Some(loud) => {
            let floor = Time::from_micros(
                last_voiced_at
                    .as_micros()
                    .saturating_sub(VAD_TAIL.as_micros() as u64),
            );
            loud.max(floor).min(last_voiced_at)
        }
    }
}

impl Endpointer {
    /// An endpointer over `vad`, called in place for each window.
    pub fn new(config: EndpointConfig, vad: Box<dyn Vad>) -> Self {
        let (rate, window) = (vad.rate(), vad.window_samples());
        Self::with(config, rate, window, Scoring::Inline(vad))
    }

    /// An endpointer whose VAD runs elsewhere (on inference threads, off
    /// the driver's): each window of `window` samples at `rate` comes out
    /// as [`EndpointEvent::Score`], and its probability goes back in with
    /// [`handle_score`](Self::handle_score). Decisions are the same as with
    /// the VAD in place: each window is judged at the time it came, and
    /// pauses wait for the scores of the windows before them.
    pub fn scored_elsewhere(config: EndpointConfig, rate: SampleRate, window: usize) -> Self {
        Self::with(config, rate, window, Scoring::Elsewhere(VecDeque::new()))
    }

    fn with(config: EndpointConfig, rate: SampleRate, window: usize, scoring: Scoring) -> Self {
        let window = window.max(1);
        // Room for the pre-roll plus the longest possible candidate phase.
        let candidate_max = config.min_speech.as_secs_f64()
            / rate.duration_of(window).as_secs_f64()
            * (CANDIDATE_GAP + rate.duration_of(window)).as_secs_f64();
        let history_cap = rate.samples_in(config.pre_roll)
            + rate.samples_in(Duration::from_secs_f64(candidate_max.min(10.0)))
            + 2 * window;
        Self {
            config,
            rate,
            window,
            window_len: rate.duration_of(window),
            scoring,
            pending: Vec::with_capacity(window),
            history: VecDeque::with_capacity(history_cap),
            history_cap,
            turn: Vec::new(),
            state: State::Silence,
            pos: 0,
            resampler: None,
            scratch: Vec::new(),
            events: VecDeque::new(),
            vad_errors: 0,
            last_probability: 0.0,
            previewed: None,
        }
    }

    /// True while the caller is in a confirmed turn.
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// The current turn's speech so far, while the caller is in one.
    pub fn voice(&self) -> Option<Voice> {
        match self.state {
            State::Speaking {
                speech_start,
                voiced,
                ..
            } => Some(Voice {
                onset: speech_start,
                voiced,
            }),
            _ => None,
        }
    }

    /// The last window's speech probability.
    pub fn last_probability(&self) -> f32 {
        self.last_probability
    }

    /// Windows the VAD failed on (scored as silence).
    pub fn vad_errors(&self) -> u64 {
        self.vad_errors
    }

    /// Feeds the caller's audio, received at `now`. Audio at another rate
    /// than the VAD's is resampled.
    pub fn handle_audio(&mut self, now: Time, frame: Frame<'_>) {
        if frame.rate == self.rate {
            self.take_samples(now, frame.samples);
            return;
        }
        let needs_new = self
            .resampler
            .as_ref()
            .is_none_or(|r| r.from_rate() != frame.rate);
        if needs_new {
            self.resampler = Resampler::new(frame.rate, self.rate).ok();
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let ok = self
            .resampler
            .as_mut()
            .is_some_and(|r| r.process(frame.samples, &mut scratch).is_ok());
        if ok {
            self.take_samples(now, &scratch);
        } else {
            self.vad_errors += 1;
        }
        self.scratch = scratch;
    }

    /// Wake-up at or after [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Time) {
        if self.awaiting_scores() {
            return;
        }
        match self.state {
            State::Speaking {
                last_voiced_at,
                last_loud_at,
                ..
            } if now >= pause_anchor(last_voiced_at, last_loud_at) + self.config.hangover => {
                self.end_turn(now, TurnEnd::Silence);
            }
            State::Speaking {
                last_voiced_at,
                last_loud_at,
                ..
            } if self
                .preview_due(last_voiced_at, last_loud_at)
                .is_some_and(|t| now >= t) =>
            {
                self.previewed = Some(last_voiced_at);
                if let Some(turn) = self.snapshot(now) {
                    self.events.push_back(EndpointEvent::Preview(turn));
                }
            }
            State::Candidate { last_voiced_at, .. } if now >= last_voiced_at + CANDIDATE_GAP => {
                self.state = State::Silence;
            }
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.awaiting_scores() {
            // The next decision waits for the windows before it.
            return None;
        }
        match self.state {
            State::Silence => None,
            State::Candidate { last_voiced_at, .. } => Some(last_voiced_at + CANDIDATE_GAP),
            State::Speaking {
                last_voiced_at,
                last_loud_at,
                ..
            } => {
                let end = pause_anchor(last_voiced_at, last_loud_at) + self.config.hangover;
                Some(
                    self.preview_due(last_voiced_at, last_loud_at)
                        .map_or(end, |t| t.min(end)),
                )
            }
        }
    }

    /// When the pause after `last_voiced_at` is due for a preview, if it is.
    fn preview_due(&self, last_voiced_at: Time, last_loud_at: Option<Time>) -> Option<Time> {
        let p = self.config.preview?;
        (p < self.config.hangover && self.previewed != Some(last_voiced_at))
            .then(|| pause_anchor(last_voiced_at, last_loud_at) + p)
    }

    /// The call is over: a turn in progress ends now (nothing is lost;
    /// windows still being scored are not waited for).
    pub fn finish(&mut self, now: Time) {
        if let Scoring::Elsewhere(q) = &mut self.scoring {
            q.clear();
        }
        if self.is_speaking() {
            self.end_turn(now, TurnEnd::Finished);
        }
        self.state = State::Silence;
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    fn take_samples(&mut self, now: Time, mut samples: &[i16]) {
        while !samples.is_empty() {
            let need = self.window - self.pending.len();
            let n = need.min(samples.len());
            self.pending.extend_from_slice(&samples[..n]);
            samples = &samples[n..];
            if self.pending.len() == self.window {
                let window = std::mem::take(&mut self.pending);
                self.on_window(now, &window);
                self.pending = window;
                self.pending.clear();
            }
        }
    }

    /// Windows handed out for scoring whose scores have not come back.
    pub fn awaiting_scores(&self) -> bool {
        self.scores_awaited() > 0
    }

    /// How many windows wait for their scores.
    pub fn scores_awaited(&self) -> usize {
        match &self.scoring {
            Scoring::Elsewhere(q) => q.len(),
            Scoring::Inline(_) => 0,
        }
    }

    /// The score of the oldest window handed out with
    /// [`EndpointEvent::Score`]: its speech probability, or `None` when the
    /// VAD failed on it (scored as silence).
    pub fn handle_score(&mut self, p: Option<f32>) {
        let Scoring::Elsewhere(q) = &mut self.scoring else {
            return;
        };
        let Some((at, window)) = q.pop_front() else {
            return;
        };
        let p = p.unwrap_or_else(|| {
            self.vad_errors += 1;
            0.0
        });
        self.on_scored(at, &window, p.clamp(0.0, 1.0));
    }

    fn on_window(&mut self, now: Time, window: &[i16]) {
        let p = match &mut self.scoring {
            Scoring::Inline(vad) => match vad.probability(window) {
                Ok(p) => p,
                Err(_) => {
                    self.vad_errors += 1;
                    0.0
                }
            },
            Scoring::Elsewhere(q) => {
                q.push_back((now, window.to_vec()));
                self.events.push_back(EndpointEvent::Score {
                    rate: self.rate,
                    samples: window.to_vec(),
                });
                return;
            }
        };
        self.on_scored(now, window, p);
    }

    fn on_scored(&mut self, now: Time, window: &[i16], p: f32) {
        let start_pos = self.pos;
        self.pos += window.len() as u64;
        self.last_probability = p;
        let window_start = Time::from_micros(
            now.as_micros()
                .saturating_sub(self.window_len.as_micros() as u64),
        );
        match self.state {
            State::Silence => {
                self.remember(window);
                if p >= self.config.speech_threshold {
                    self.state = State::Candidate {
                        start_pos,
                        start_at: window_start,
                        voiced: self.window_len,
                        last_voiced_at: now,
                    };
                    self.maybe_start();
                }
            }
            State::Candidate {
                start_pos,
                start_at,
                voiced,
                last_voiced_at,
            } => {
                self.remember(window);
                if p >= self.config.speech_threshold {
                    self.state = State::Candidate {
                        start_pos,
                        start_at,
                        voiced: voiced + self.window_len,
                        last_voiced_at: now,
                    };
                    self.maybe_start();
                } else if now >= last_voiced_at + CANDIDATE_GAP {
                    self.state = State::Silence;
                }
            }
            State::Speaking {
                turn_pos,
                speech_start,
                last_voiced_at,
                last_voiced_pos,
                voiced,
                last_loud_at,
                peak_db,
            } => {
                self.turn.extend_from_slice(window);
                let db = level_db(window);
                let peak_db = if p >= self.config.speech_threshold {
                    peak_db.max(db)
                } else {
                    peak_db
                };
                let loud = db > LOUD_FLOOR_DB && db >= peak_db - LOUD_RANGE_DB;
                let last_loud_at = if loud { Some(now) } else { last_loud_at };
                let voiced = if p >= self.config.speech_threshold {
                    voiced + self.window_len
                } else {
                    voiced
                };
                let (last_voiced_at, last_voiced_pos) = if p >= self.config.silence_threshold {
                    (now, self.pos)
                } else {
                    (last_voiced_at, last_voiced_pos)
                };
                self.state = State::Speaking {
                    turn_pos,
                    speech_start,
                    last_voiced_at,
                    last_voiced_pos,
                    voiced,
                    last_loud_at,
                    peak_db,
                };
                if self.rate.duration_of(self.turn.len()) >= self.config.max_turn {
                    self.end_turn(now, TurnEnd::MaxLength);
                    if p >= self.config.speech_threshold {
                        // Still talking: the next turn starts right here.
                        self.state = State::Candidate {
                            start_pos: self.pos,
                            start_at: now,
                            voiced: Duration::ZERO,
                            last_voiced_at: now,
                        };
                    }
                } else if now >= pause_anchor(last_voiced_at, last_loud_at) + self.config.hangover {
                    self.end_turn(now, TurnEnd::Silence);
                }
            }
        }
    }

    fn remember(&mut self, window: &[i16]) {
        self.history.extend(window);
        let excess = self.history.len().saturating_sub(self.history_cap);
        self.history.drain(..excess);
    }

    fn maybe_start(&mut self) {
        let State::Candidate {
            start_pos,
            start_at,
            voiced,
            last_voiced_at,
        } = self.state
        else {
            return;
        };
        if voiced < self.config.min_speech {
            return;
        }
        let history_start = self.pos - self.history.len() as u64;
        let want = start_pos.saturating_sub(self.rate.samples_in(self.config.pre_roll) as u64);
        let from = want.max(history_start);
        self.turn.clear();
        self.turn
            .extend(self.history.iter().skip((from - history_start) as usize));
        self.history.clear();
        // The candidate's audio sets the turn's first level.
        let window = self.window;
        let recent = self.turn.len().saturating_sub(window);
        let peak_db = level_db(&self.turn[recent..]);
        let loud = peak_db > LOUD_FLOOR_DB;
        self.state = State::Speaking {
            turn_pos: from,
            speech_start: start_at,
            last_voiced_at,
            last_voiced_pos: self.pos,
            voiced,
            last_loud_at: loud.then_some(last_voiced_at),
            peak_db,
        };
        self.events
            .push_back(EndpointEvent::SpeechStarted { at: start_at });
    }

    /// The turn so far, trimmed as [`end_turn`](Self::end_turn) would trim it.
    fn snapshot(&self, now: Time) -> Option<Turn> {
        let State::Speaking {
            turn_pos,
            speech_start,
            last_voiced_at,
            last_voiced_pos,
            last_loud_at,
            ..
        } = self.state
        else {
            return None;
        };
        let keep = (last_voiced_pos.saturating_sub(turn_pos) as usize) + self.rate.samples_in(TAIL);
        Some(Turn {
            rate: self.rate,
            samples: self.turn[..keep.min(self.turn.len())].to_vec(),
            speech_start,
            speech_end: pause_anchor(last_voiced_at, last_loud_at),
            decided_at: now,
            reason: TurnEnd::Silence,
        })
    }

    fn end_turn(&mut self, now: Time, reason: TurnEnd) {
        let State::Speaking {
            turn_pos,
            speech_start,
            last_voiced_at,
            last_voiced_pos,
            last_loud_at,
            ..
        } = self.state
        else {
            return;
        };
        let keep = (last_voiced_pos.saturating_sub(turn_pos) as usize) + self.rate.samples_in(TAIL);
        let mut samples = std::mem::take(&mut self.turn);
        samples.truncate(keep);
        self.events.push_back(EndpointEvent::TurnEnded(Turn {
            rate: self.rate,
            samples,
            speech_start,
            speech_end: pause_anchor(last_voiced_at, last_loud_at),
            decided_at: now,
            reason,
        }));
        self.state = State::Silence;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vad::VadError;

    /// A VAD that replays a script of probabilities, one per window.
    #[derive(Debug)]
    struct Scripted {
        probs: Vec<f32>,
        next: usize,
    }

    impl Vad for Scripted {
        fn rate(&self) -> SampleRate {
            SampleRate::HZ_8000
        }
        fn window_samples(&self) -> usize {
            256
        }
        fn probability(&mut self, _w: &[i16]) -> Result<f32, VadError> {
            let p = self.probs.get(self.next).copied().unwrap_or(0.0);
            self.next += 1;
            Ok(p)
        }
        fn reset(&mut self) {}
    }

    /// Runs `probs` (one per 32 ms window) through an endpointer, window
    /// index as the sample value, then 3 s of nothing. Returns the events.
    fn run(probs: &[f32], config: EndpointConfig) -> Vec<EndpointEvent> {
        let mut e = Endpointer::new(
            config,
            Box::new(Scripted {
                probs: probs.to_vec(),
                next: 0,
            }),
        );
        let mut events = Vec::new();
        let mut t = 0u64;
        for i in 0..probs.len() {
            t += 32_000;
            let w = vec![i as i16; 256];
            e.handle_audio(Time::from_micros(t), Frame::new(SampleRate::HZ_8000, &w));
            while let Some(ev) = e.poll_event() {
                events.push(ev);
            }
        }
        // The line goes quiet with no frames at all: timers end the turn.
        let end = Time::from_micros(t + 3_000_000);
        while let Some(d) = e.poll_timeout() {
            if d > end {
                break;
            }
            e.handle_timeout(d);
        }
        e.finish(end);
        while let Some(ev) = e.poll_event() {
            events.push(ev);
        }
        events
    }

    /// Like [`run`], with window `i`'s samples at amplitude `amps[i]`
    /// (a square wave, so its level is exact).
    fn run_levels(probs: &[f32], amps: &[i16], config: EndpointConfig) -> Vec<EndpointEvent> {
        let mut e = Endpointer::new(
            config,
            Box::new(Scripted {
                probs: probs.to_vec(),
                next: 0,
            }),
        );
        let mut events = Vec::new();
        let mut t = 0u64;
        for &a in amps.iter().take(probs.len()) {
            t += 32_000;
            let w: Vec<i16> = (0..256).map(|k| if k % 2 == 0 { a } else { -a }).collect();
            e.handle_audio(Time::from_micros(t), Frame::new(SampleRate::HZ_8000, &w));
            while let Some(ev) = e.poll_event() {
                events.push(ev);
            }
            if let Some(d) = e.poll_timeout().filter(|d| d.as_micros() <= t) {
                e.handle_timeout(d);
            }
        }
        let end = Time::from_micros(t + 3_000_000);
        while let Some(d) = e.poll_timeout() {
            if d > end {
                break;
            }
            e.handle_timeout(d);
            while let Some(ev) = e.poll_event() {
                events.push(ev);
            }
        }
        events
    }

    #[test]
    fn the_pause_counts_from_the_end_of_audible_speech() {
        let config = EndpointConfig {
            hangover: Duration::from_millis(400),
            ..EndpointConfig::default()
        };
        let ms = |t: Time| t.as_micros() / 1_000;
        // Loud speech in windows 10..40 (ends at 40 x 32 = 1280 ms); the
        // VAD trails on, quieter than 30 dB below the speech.
        let mut amps = vec![0i16; 10];
        amps.extend(vec![8_000; 30]);
        amps.extend(vec![30; 60]);
        // A short VAD tail (windows 40, 41: to 1344 ms): the pause counts
        // from the loud end, 1280 ms.
        let mut p = vec![0.0; 10];
        p.extend(vec![0.9; 32]);
        p.extend(vec![0.0; 58]);
        let t = run_levels(&p, &amps, config);
        let turn = turns(&t)[0];
        assert_eq!(ms(turn.speech_end), 1_280, "old rule: 1344");
        assert!(ms(turn.decided_at) >= 1_680 && ms(turn.decided_at) < 1_680 + 32);
        // A long VAD tail (to window 47: 1536 ms): never more than 160 ms
        // before the VAD's end, so the pause counts from 1376 ms.
        let mut p = vec![0.0; 10];
        p.extend(vec![0.9; 38]);
        p.extend(vec![0.0; 52]);
        let t = run_levels(&p, &amps, config);
        let turn = turns(&t)[0];
        assert_eq!(ms(turn.speech_end), 1_536 - 160);
        assert!(ms(turn.decided_at) >= 1_776);
        // Digital silence (no level to judge): the VAD's end, as before.
        let t = run_levels(&p, &[0i16; 100], config);
        assert_eq!(ms(turns(&t)[0].speech_end), 1_536);
    }

    fn turns(events: &[EndpointEvent]) -> Vec<&Turn> {
        events
            .iter()
            .filter_map(|e| match e {
                EndpointEvent::TurnEnded(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Events of an endpointer whose VAD runs elsewhere: each window's
    /// score comes back `lag` after the window (while the next frames keep
    /// coming), from the same script.
    fn run_elsewhere(probs: &[f32], config: EndpointConfig, lag: u64) -> Vec<EndpointEvent> {
        let mut e = Endpointer::scored_elsewhere(config, SampleRate::HZ_8000, 256);
        let mut vad = Scripted {
            probs: probs.to_vec(),
            next: 0,
        };
        let mut due: VecDeque<(u64, Vec<i16>)> = VecDeque::new();
        let mut events = Vec::new();
        let mut t = 0u64;
        let end = 32_000 * probs.len() as u64 + 3_000_000;
        let mut next_window = 32_000;
        while t <= end {
            // The next thing: a window, a score, or the endpointer's timer.
            let timer = e.poll_timeout().map(|d| d.as_micros());
            let score = due.front().map(|d| d.0);
            let window = (next_window <= 32_000 * probs.len() as u64).then_some(next_window);
            let Some(at) = [timer, score, window].into_iter().flatten().min() else {
                break;
            };
            t = at;
            let now = Time::from_micros(t);
            if score == Some(t) {
                let (_, w) = due.pop_front().expect("due");
                e.handle_score(vad.probability(&w).ok());
            } else if window == Some(t) {
                let i = (t / 32_000 - 1) as i16;
                e.handle_audio(now, Frame::new(SampleRate::HZ_8000, &[i; 256]));
                next_window += 32_000;
            } else {
                e.handle_timeout(now);
            }
            while let Some(ev) = e.poll_event() {
                match ev {
                    EndpointEvent::Score { samples, .. } => due.push_back((t + lag, samples)),
                    other => events.push(other),
                }
            }
        }
        e.finish(Time::from_micros(end));
        while let Some(ev) = e.poll_event() {
            events.push(ev);
        }
        events
    }

    #[test]
    fn a_vad_elsewhere_gives_the_turns_of_the_vad_in_place() {
        // Speech, a pause shorter than the hangover, speech, a long pause,
        // a blip, speech to the end.
        let mut probs = vec![0.0; 5];
        probs.extend([0.9; 20]);
        probs.extend([0.1; 6]);
        probs.extend([0.9; 15]);
        probs.extend([0.0; 30]);
        probs.extend([0.9; 2]);
        probs.extend([0.0; 20]);
        probs.extend([0.9; 12]);
        let config = EndpointConfig::default();
        let inline = run(&probs, config);
        let turns = |ev: &[EndpointEvent]| -> Vec<(Time, Time, TurnEnd, Vec<i16>)> {
            ev.iter()
                .filter_map(|e| match e {
                    EndpointEvent::TurnEnded(t) => {
                        Some((t.speech_start, t.speech_end, t.reason, t.samples.clone()))
                    }
                    _ => None,
                })
                .collect()
        };
        assert_eq!(turns(&inline).len(), 2, "the blip is no turn");
        // Scores a moment late, or more than a window late: the same turns.
        for lag in [300, 20_000, 45_000] {
            let elsewhere = run_elsewhere(&probs, config, lag);
            assert!(
                turns(&elsewhere) == turns(&inline),
                "lag {lag} us: other turns"
            );
            let starts = |ev: &[EndpointEvent]| {
                ev.iter()
                    .filter(|e| matches!(e, EndpointEvent::SpeechStarted { .. }))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(starts(&elsewhere), starts(&inline), "lag {lag} us");
        }
    }

    #[test]
    fn a_short_blip_is_not_a_turn() {
        // 2 voiced windows = 64 ms < 200 ms.
        let mut p = vec![0.0; 20];
        p.extend([0.9, 0.9]);
        p.extend(vec![0.0; 30]);
        assert!(run(&p, EndpointConfig::default()).is_empty());
    }

    #[test]
    fn a_turn_has_pre_roll_and_ends_after_the_hangover() {
        let mut p = vec![0.0; 20];
        p.extend(vec![0.9; 30]); // windows 20..50 voiced (960 ms)
        p.extend(vec![0.1; 40]);
        let events = run(&p, EndpointConfig::default());
        assert_eq!(
            events[0],
            EndpointEvent::SpeechStarted {
                at: Time::from_micros(20 * 32_000)
            }
        );
        let t = turns(&events);
        assert_eq!(t.len(), 1);
        let turn = t[0];
        assert_eq!(turn.reason, TurnEnd::Silence);
        // Pre-roll: 300 ms = 2400 samples = 9.4 windows before window 20.
        assert_eq!(turn.samples[0], 10);
        // Last voiced window is 49; the trimmed tail keeps 150 ms after it.
        let last_voiced_sample = turn.samples.iter().rposition(|&s| s == 49).unwrap();
        assert_eq!(turn.samples.len() - 1 - last_voiced_sample, 1_200);
        assert_eq!(turn.speech_end, Time::from_micros(50 * 32_000));
        // Decided one hangover (700 ms, rounded up to whole windows) later.
        let delay = turn.decided_at - turn.speech_end;
        assert!(delay >= Duration::from_millis(700) && delay < Duration::from_millis(740));
    }

    #[test]
    fn hysteresis_keeps_a_soft_middle_in_the_turn() {
        let mut p = vec![0.9; 10];
        p.extend(vec![0.4; 40]); // above the silence threshold: still talking
        p.extend(vec![0.9; 5]);
        let t = run(&p, EndpointConfig::default());
        assert_eq!(turns(&t).len(), 1);
    }

    #[test]
    fn a_pause_shorter_than_the_hangover_does_not_split_the_turn() {
        let mut p = vec![0.9; 10];
        p.extend(vec![0.0; 15]); // 480 ms pause
        p.extend(vec![0.9; 10]);
        let events = run(&p, EndpointConfig::default());
        assert_eq!(turns(&events).len(), 1);
        let mut p = vec![0.9; 10];
        p.extend(vec![0.0; 30]); // 960 ms pause
        p.extend(vec![0.9; 10]);
        assert_eq!(turns(&run(&p, EndpointConfig::default())).len(), 2);
    }

    #[test]
    fn a_long_monologue_is_cut_at_max_turn_and_goes_on() {
        let config = EndpointConfig {
            max_turn: Duration::from_secs(2),
            ..EndpointConfig::default()
        };
        let p = vec![0.9; 160]; // 5.1 s of speech
        let events = run(&p, config);
        let t = turns(&events);
        assert!(t.len() >= 2, "{} turns", t.len());
        assert_eq!(t[0].reason, TurnEnd::MaxLength);
        assert!(t[0].duration() <= Duration::from_millis(2_100));
    }

    #[test]
    fn hanging_up_mid_turn_keeps_the_turn() {
        let mut e = Endpointer::new(
            EndpointConfig::default(),
            Box::new(Scripted {
                probs: vec![0.9; 20],
                next: 0,
            }),
        );
        for i in 1..=20u64 {
            e.handle_audio(
                Time::from_micros(i * 32_000),
                Frame::new(SampleRate::HZ_8000, &[1; 256]),
            );
        }
        e.finish(Time::from_micros(700_000));
        let mut last = None;
        while let Some(ev) = e.poll_event() {
            last = Some(ev);
        }
        match last {
            Some(EndpointEvent::TurnEnded(t)) => assert_eq!(t.reason, TurnEnd::Finished),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn audio_at_another_rate_is_resampled_for_the_vad() {
        let mut e = Endpointer::new(
            EndpointConfig::default(),
            Box::new(Scripted {
                probs: vec![0.9; 100],
                next: 0,
            }),
        );
        // 1 s of 16 kHz in 20 ms frames: 8000 samples at 8 kHz = 31 windows.
        for i in 1..=50u64 {
            e.handle_audio(
                Time::from_micros(i * 20_000),
                Frame::new(SampleRate::HZ_16000, &[100; 320]),
            );
        }
        assert!(e.is_speaking());
        assert_eq!(e.vad_errors(), 0);
    }

    /// Like `run`, but wakes up at every deadline between windows (as the
    /// driver does), with `gap_after` windows followed by `gap` of no frames.
    fn run_live(probs: &[f32], config: EndpointConfig) -> Vec<(Time, EndpointEvent)> {
        let mut e = Endpointer::new(
            config,
            Box::new(Scripted {
                probs: probs.to_vec(),
                next: 0,
            }),
        );
        let mut out = Vec::new();
        let mut t = 0u64;
        let step = |e: &mut Endpointer, until: Time, out: &mut Vec<(Time, EndpointEvent)>| {
            while let Some(d) = e.poll_timeout().filter(|&d| d <= until) {
                e.handle_timeout(d);
                while let Some(ev) = e.poll_event() {
                    out.push((d, ev));
                }
            }
        };
        for i in 0..probs.len() {
            t += 32_000;
            let now = Time::from_micros(t);
            step(&mut e, now, &mut out);
            e.handle_audio(now, Frame::new(SampleRate::HZ_8000, &[i as i16; 256]));
            while let Some(ev) = e.poll_event() {
                out.push((now, ev));
            }
        }
        step(&mut e, Time::from_micros(t + 3_000_000), &mut out);
        out
    }

    #[test]
    fn a_pause_is_previewed_once_and_matches_the_turn() {
        let config = EndpointConfig {
            hangover: Duration::from_millis(400),
            preview: Some(Duration::from_millis(200)),
            ..EndpointConfig::default()
        };
        // Speech, a 256 ms pause (previewed, not an end), speech, silence.
        let mut probs = vec![0.9; 10];
        probs.extend([0.0; 8]);
        probs.extend([0.9; 10]);
        probs.extend([0.0; 30]);
        let events = run_live(&probs, config);
        let previews: Vec<&Turn> = events
            .iter()
            .filter_map(|(_, e)| match e {
                EndpointEvent::Preview(t) => Some(t),
                _ => None,
            })
            .collect();
        let turns: Vec<&Turn> = events
            .iter()
            .filter_map(|(_, e)| match e {
                EndpointEvent::TurnEnded(t) => Some(t),
                _ => None,
            })
            .collect();
        // One turn; a preview for each pause of 200 ms or more.
        assert_eq!(turns.len(), 1);
        assert_eq!(previews.len(), 2);
        // The first pause's preview is not the turn; the second's is.
        assert_ne!(previews[0].speech_end, turns[0].speech_end);
        assert_eq!(previews[1].speech_start, turns[0].speech_start);
        assert_eq!(previews[1].speech_end, turns[0].speech_end);
        assert_eq!(previews[1].samples, turns[0].samples);
        // The preview came 200 ms before the turn was decided.
        let at = |e: &EndpointEvent| events.iter().find(|(_, x)| x == e).map(|(t, _)| *t);
        let preview_at = at(&EndpointEvent::Preview(previews[1].clone())).unwrap();
        let turn_at = at(&EndpointEvent::TurnEnded(turns[0].clone())).unwrap();
        assert_eq!(turn_at - preview_at, Duration::from_millis(200));
    }
}
