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
//! - **Judged complete**: whoever judges a pause (the session, from an
//!   end-of-turn model and the preview's words) may end the turn before
//!   `hangover` with [`Endpointer::end_if_still_paused`], for the pause it
//!   judged only: if the caller has spoken since, nothing happens.
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
    /// A pause shorter than `hangover`, judged the end of the turn (see
    /// [`Endpointer::end_if_still_paused`]).
    Complete,
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
    /// A pause judged the turn's end, by where it began (its
    /// `speech_end`): the turn ends once that pause is still the current
    /// one with every window before it scored.
    judged_complete: Option<Time>,
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
            judged_complete: None,
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

    /// True when the last window scored is speech (`speech_threshold`).
    pub fn window_voiced(&self) -> bool {
        self.last_probability >= self.config.speech_threshold
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
            } if self.judged_complete == Some(pause_anchor(last_voiced_at, last_loud_at)) => {
                self.end_turn(now, TurnEnd::Complete);
            }
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
                let anchor = pause_anchor(last_voiced_at, last_loud_at);
                if self.judged_complete == Some(anchor) {
                    // Judged over: due now (the anchor is in the past).
                    return Some(anchor);
                }
                let end = anchor + self.config.hangover;
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

    /// The pause that began at `speech_end` (a [`Turn::speech_end`] of
    /// this turn's preview) is the end of the turn: the turn ends at once
    /// if the caller is still in that pause, or as soon as the windows
    /// before it are scored and it still is. Returns false when the caller
    /// has already spoken again (the judgement is stale and dropped).
    pub fn end_if_still_paused(&mut self, now: Time, speech_end: Time) -> bool {
        let State::Speaking {
            last_voiced_at,
            last_loud_at,
            ..
        } = self.state
        else {
            return false;
        };
        if pause_anchor(last_voiced_at, last_loud_at) != speech_end {
            return false;
        }
        self.judged_complete = Some(speech_end);
        if !self.awaiting_scores() {
            self.end_turn(now, TurnEnd::Complete);
        }
        true
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
        self.judged_complete = None;
    }
}

#[cfg(test)]
mod tests;
