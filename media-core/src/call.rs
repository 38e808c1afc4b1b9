//! The call's protocol half of a [`Session`](crate::Session): frames and
//! DTMF in, paced frames out.
//!
//! A `Call` owns one call's protocol state, its endpointer, its agent and
//! its playout; the session around it owns the turns on their way through
//! STT and the speech on its way into playout, and is the only thing that
//! drives it. It takes the transport's input as frames and digits
//! (`handle_start`, `handle_audio`, `handle_dtmf`, `handle_hangup`;
//! `handle_message` adapts an AudioSocket message), gives frames to send
//! as [`Transmit`], and hands the session its events and turns.
//!
//! Timers never depend on inbound frames: a Local channel sends nothing during
//! silence, so a call with no input still plays out and times out on time.
//! Outbound frames do not either: from the UUID on, a frame leaves every
//! 20 ms (silence when the agent has nothing to say), because `AudioSocket()`
//! ends a call after 2000 ms in which neither side sent one.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use crate::agent::{Agent, AgentAction, Digit};
use crate::audiosocket::{self, DecodeError, EncodeError, HEADER_LEN, Message};
use crate::dialog::{Heard, ReplyInput, UtteranceId};
use crate::endpointing::{EndpointEvent, Endpointer, Turn};
pub use crate::event::{CallStats, EndReason, Event};
use crate::frame::{Frame, SampleRate, Time};
use crate::playout::Playout;

/// Largest message [`Transmit::encode`] writes: 20 ms at 192 kHz plus header.
pub const MAX_TRANSMIT: usize = HEADER_LEN + 2 * 3_840;

/// The call's identity: the UUID Asterisk sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(pub Uuid);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Builds a call's [`Endpointer`] for the caller's sample rate.
pub struct Ears(pub Box<dyn Fn(SampleRate) -> Endpointer + Send>);

impl fmt::Debug for Ears {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ears")
    }
}

/// Per-call settings (the engine builds them from `hark.toml`).
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// How long a new connection may take to send its UUID.
    pub uuid_timeout: Duration,
    /// Longest call before hark hangs up; `None` for no limit.
    pub max_duration: Option<Duration>,
    /// Frames playout may release ahead of real time (at most 2).
    pub send_ahead: u8,
    /// Most outgoing audio queued per call (bounds memory).
    pub playout_capacity: Duration,
    /// Rate assumed until the caller's first audio says otherwise.
    pub default_rate: SampleRate,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            // Asterisk sends the UUID immediately; 5 s covers a loaded box.
            uuid_timeout: Duration::from_secs(5),
            max_duration: None,
            // One frame of slack absorbs a driver wake-up that is a little late
            // without making barge-in audibly late.
            send_ahead: 1,
            // Enough for a long sentence of TTS; 80 kB at 8 kHz.
            playout_capacity: Duration::from_secs(5),
            default_rate: SampleRate::HZ_8000,
        }
    }
}

/// What the call hands its session: an event, or a turn to transcribe.
#[derive(Debug)]
pub(crate) enum Out {
    Event(Event),
    /// A finished caller turn.
    Turn(Turn),
    /// A paused turn that may be the whole turn.
    Preview(Turn),
    /// A window for the VAD that runs elsewhere.
    Score(SampleRate, Vec<i16>),
}

/// A frame or the hangup, for the transport to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit<'a> {
    /// 20 ms of audio (the agent's, or silence to keep the line alive).
    Audio(Frame<'a>),
    /// hark hangs up (AudioSocket 0x00; a BYE on SIP).
    Hangup,
}

impl Transmit<'_> {
    /// Encodes this as an AudioSocket message at the start of `out` (at
    /// least [`MAX_TRANSMIT`] bytes); returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            Transmit::Audio(f) => audiosocket::encode_samples(f.rate, f.samples, out),
            Transmit::Hangup => audiosocket::encode(&Message::Hangup, out),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingUuid,
    Active,
    /// The agent is done: play out what is queued, then hang up.
    Draining,
    /// Send 0x00 next, then close.
    SendHangup,
    Closed,
}

/// One call's state machine. See the module docs for the driving contract.
#[derive(Debug)]
pub(crate) struct Call {
    config: CallConfig,
    state: State,
    started: Time,
    id: Option<CallId>,
    rate_known: bool,
    agent: Box<dyn Agent>,
    /// Turn detection, for agents that listen.
    endpointer: Option<Endpointer>,
    /// Builds the endpointer once the caller's rate is known.
    ears: Option<Ears>,
    /// Scores still to come for windows of an endpointer since replaced
    /// (they come first, in order, and are dropped).
    stale_scores: usize,
    playout: Playout,
    /// Reused for inbound PCM -> samples.
    scratch: Vec<i16>,
    /// Reused for the outbound frame.
    frame_out: Vec<i16>,
    events: VecDeque<Out>,
    /// The latest `now` seen, for ends that happen without one.
    last_now: Time,
    end: Option<EndReason>,
    stats: CallStats,
}

impl Call {
    /// A call accepted at `now`, talking to `agent`.
    pub(crate) fn new(now: Time, config: CallConfig, agent: Box<dyn Agent>) -> Self {
        let playout = Playout::new(
            config.default_rate,
            config.playout_capacity,
            config.send_ahead,
        );
        Self {
            state: State::AwaitingUuid,
            started: now,
            id: None,
            rate_known: false,
            agent,
            endpointer: None,
            ears: None,
            stale_scores: 0,
            playout,
            scratch: Vec::with_capacity(MAX_TRANSMIT / 2),
            frame_out: vec![0; MAX_TRANSMIT / 2],
            events: VecDeque::with_capacity(4),
            last_now: now,
            end: None,
            stats: CallStats::default(),
            config,
        }
    }

    /// Adds turn detection: caller audio goes through `endpointer`, and
    /// finished turns come out as [`Event::Turn`].
    pub(crate) fn with_endpointer(mut self, endpointer: Endpointer) -> Self {
        self.endpointer = Some(endpointer);
        self
    }

    /// Adds turn detection built for the caller's rate when their first
    /// audio arrives (and rebuilt if the rate changes).
    pub(crate) fn with_ears(mut self, ears: Ears) -> Self {
        self.ears = Some(ears);
        self
    }

    /// The call's UUID, once received.
    pub(crate) fn id(&self) -> Option<CallId> {
        self.id
    }

    /// The rate outbound audio is sent at.
    pub(crate) fn rate(&self) -> SampleRate {
        self.playout.rate()
    }

    /// True once nothing more will be transmitted; the driver closes the socket.
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> CallStats {
        CallStats {
            playout: self.playout.stats(),
            ..self.stats
        }
    }

    /// Feeds one decoded AudioSocket message (the AudioSocket leg's
    /// adapter onto the handlers below).
    pub(crate) fn handle_message(&mut self, now: Time, message: Message<'_>) {
        match message {
            Message::Hangup => self.handle_hangup(now),
            Message::Error(code) => self.handle_peer_error(now, code.first().copied()),
            Message::Uuid(uuid) => self.handle_start(now, CallId(uuid)),
            Message::Audio { rate, pcm } => {
                let mut samples = std::mem::take(&mut self.scratch);
                samples.clear();
                audiosocket::pcm_to_samples(pcm, &mut samples);
                self.handle_audio(now, Frame::new(rate, &samples));
                self.scratch = samples;
            }
            Message::Dtmf(byte) => self.handle_dtmf(now, byte),
        }
    }

    /// The peer hung up.
    pub(crate) fn handle_hangup(&mut self, now: Time) {
        self.last_now = self.last_now.max(now);
        if !matches!(self.state, State::SendHangup | State::Closed) {
            self.finish(EndReason::PeerHangup);
        }
    }

    /// The peer reported an error (`code`, if it gave one).
    pub(crate) fn handle_peer_error(&mut self, now: Time, code: Option<u8>) {
        self.last_now = self.last_now.max(now);
        if !matches!(self.state, State::SendHangup | State::Closed) {
            self.finish(EndReason::PeerError(code));
        }
    }

    /// The call's identity arrived: the call is live. A repeat changes nothing.
    pub(crate) fn handle_start(&mut self, now: Time, id: CallId) {
        self.last_now = self.last_now.max(now);
        if self.state != State::AwaitingUuid {
            return;
        }
        self.id = Some(id);
        self.state = State::Active;
        // From the UUID to the hangup a frame leaves every 20 ms,
        // silence when there is nothing to say: `AudioSocket()`
        // hangs up after 2 s without a frame either way.
        self.playout.keep_alive(now);
        self.push(Event::Started(id));
        self.agent.handle_start(now);
        self.drain_agent();
    }

    /// One frame of the caller's audio.
    pub(crate) fn handle_audio(&mut self, now: Time, frame: Frame<'_>) {
        self.last_now = self.last_now.max(now);
        let rate = frame.rate;
        match self.state {
            State::SendHangup | State::Closed => return,
            State::AwaitingUuid => return self.finish(EndReason::MissingUuid),
            State::Active | State::Draining => {}
        }
        self.stats.frames_in += 1;
        self.stats.samples_in += frame.samples.len() as u64;
        if !self.rate_known || rate != self.playout.rate() {
            self.rate_known = true;
            if rate != self.playout.rate() {
                self.playout.reset_rate(rate);
            }
            if self.ears.is_some() {
                if let Some(e) = self.endpointer.as_mut() {
                    self.stale_scores += e.scores_awaited();
                    e.finish(now);
                }
                self.drain_endpointer();
                self.endpointer = self.ears.as_ref().map(|ears| (ears.0)(rate));
            }
            self.push(Event::Format(rate));
        }
        if self.state == State::Active {
            if let Some(e) = self.endpointer.as_mut() {
                e.handle_audio(now, frame);
            }
            self.agent.handle_audio(now, frame, &mut self.playout);
            self.drain_endpointer();
            // Windows scored elsewhere are heard when their scores come.
            if let Some(e) = self.endpointer.as_ref()
                && !e.awaiting_scores()
            {
                let voiced = e.window_voiced();
                self.agent.handle_hearing(now, voiced, &mut self.playout);
            }
            if let Some(voice) = self.endpointer.as_ref().and_then(Endpointer::voice) {
                self.agent.handle_voice(now, voice, &mut self.playout);
            }
        }
        self.drain_agent();
    }

    /// The speech probability of the oldest window the VAD elsewhere was
    /// given (`None`: it failed on it).
    pub(crate) fn handle_score(&mut self, now: Time, p: Option<f32>) {
        self.last_now = self.last_now.max(now);
        if self.stale_scores > 0 {
            self.stale_scores -= 1;
            return;
        }
        if matches!(self.state, State::SendHangup | State::Closed) {
            return;
        }
        let Some(e) = self.endpointer.as_mut() else {
            return;
        };
        e.handle_score(p);
        let voiced = e.window_voiced();
        self.drain_endpointer();
        if self.state == State::Active {
            self.agent.handle_hearing(now, voiced, &mut self.playout);
        }
        if self.state == State::Active
            && let Some(voice) = self.endpointer.as_ref().and_then(Endpointer::voice)
        {
            self.agent.handle_voice(now, voice, &mut self.playout);
        }
        self.drain_agent();
    }

    /// The pause that began at `speech_end` ends the caller's turn (see
    /// [`Endpointer::end_if_still_paused`]); false when it is stale.
    pub(crate) fn end_turn_if_paused(&mut self, now: Time, speech_end: Time) -> bool {
        self.last_now = self.last_now.max(now);
        if self.state != State::Active {
            return false;
        }
        let Some(e) = self.endpointer.as_mut() else {
            return false;
        };
        let ended = e.end_if_still_paused(now, speech_end);
        self.drain_endpointer();
        ended
    }

    /// The caller pressed a key (`byte` is its ASCII: 0-9, *, #, A-D).
    pub(crate) fn handle_dtmf(&mut self, now: Time, byte: u8) {
        self.last_now = self.last_now.max(now);
        match self.state {
            State::SendHangup | State::Closed => return,
            State::AwaitingUuid => return self.finish(EndReason::MissingUuid),
            State::Active | State::Draining => {}
        }
        self.stats.digits_in += 1;
        match Digit::from_ascii(byte) {
            Some(digit) => {
                self.push(Event::Dtmf(digit));
                if self.state == State::Active {
                    self.agent.handle_dtmf(now, digit, &mut self.playout);
                }
            }
            None => self.push(Event::BadDtmf(byte)),
        }
        self.drain_agent();
    }

    /// The connection closed (EOF or reset). `mid_message` when unfinished
    /// bytes were left in the read buffer.
    pub(crate) fn handle_peer_closed(&mut self, now: Time, mid_message: bool) {
        self.last_now = self.last_now.max(now);
        if self.state != State::Closed {
            self.finish(EndReason::PeerClosed { mid_message });
        }
    }

    /// The decoder rejected the byte stream: framing is lost, end the call.
    pub(crate) fn handle_protocol_error(&mut self, now: Time, error: DecodeError) {
        self.last_now = self.last_now.max(now);
        if self.state != State::Closed {
            self.finish(EndReason::Protocol(error));
        }
    }

    /// Queues synthesized speech of utterance `id` for paced playout;
    /// returns the samples taken (fewer when the playout queue is full).
    /// Audio of an utterance the agent has cancelled is dropped (all of it
    /// counts as taken), so a barge-in flush is never refilled by audio that
    /// was already on its way. Audio must be at [`rate`](Self::rate).
    pub(crate) fn play(&mut self, now: Time, id: UtteranceId, samples: &[i16]) -> usize {
        self.last_now = self.last_now.max(now);
        if !self.agent.wants_audio(id) {
            return samples.len();
        }
        if matches!(self.state, State::Active | State::Draining) {
            self.playout.push(now, samples)
        } else {
            0
        }
    }

    /// Outgoing audio queued and not yet sent.
    pub(crate) fn queued_audio(&self) -> Duration {
        self.playout.queued()
    }

    /// The next `samples` given to [`play`](Self::play) speak `text`, part
    /// of utterance `id`. Lets the call tell what the caller has heard.
    pub(crate) fn begin_segment(&mut self, now: Time, id: UtteranceId, text: &str, samples: usize) {
        self.last_now = self.last_now.max(now);
        if matches!(self.state, State::Active | State::Draining) {
            let start = self.playout.end_position();
            self.agent
                .handle_segment(now, id, text, start, start + samples as u64);
            self.drain_agent();
        }
    }

    /// Every sample of utterance `id` has been handed to [`play`](Self::play).
    pub(crate) fn handle_utterance_done(&mut self, now: Time, id: UtteranceId) {
        self.last_now = self.last_now.max(now);
        self.playout.mark_end();
        if matches!(self.state, State::Active | State::Draining) {
            self.agent.handle_utterance_done(now, id);
            self.drain_agent();
        }
    }

    /// STT's result for the oldest caller turn not yet reported (every
    /// [`Event::Turn`] gets exactly one, empty text when it had no words).
    pub(crate) fn handle_transcript(&mut self, now: Time, heard: Heard) {
        self.last_now = self.last_now.max(now);
        if self.state == State::Active {
            self.agent.handle_transcript(now, heard, &mut self.playout);
            self.drain_agent();
        }
    }

    /// News about the model reply of utterance `id` (see [`Event::Think`]).
    pub(crate) fn handle_reply(&mut self, now: Time, id: UtteranceId, input: ReplyInput) {
        self.last_now = self.last_now.max(now);
        if matches!(self.state, State::Active | State::Draining) {
            self.agent.handle_reply(now, id, input, &mut self.playout);
            self.drain_agent();
        }
    }

    /// Ends the call at once without sending anything (the connection is
    /// unusable, e.g. the peer stopped reading).
    pub(crate) fn abort(&mut self, now: Time, reason: EndReason) {
        self.last_now = self.last_now.max(now);
        self.finish(reason);
    }

    /// Ends the call from hark's side: send hangup (0x00) at once, then close.
    pub(crate) fn close(&mut self, now: Time, reason: EndReason) {
        self.last_now = self.last_now.max(now);
        match self.state {
            State::Closed | State::SendHangup => {}
            State::AwaitingUuid => self.finish(reason),
            State::Active | State::Draining => {
                self.playout.flush();
                self.end = Some(reason);
                self.state = State::SendHangup;
            }
        }
    }

    /// Wake-up at or after [`poll_timeout`](Self::poll_timeout).
    pub(crate) fn handle_timeout(&mut self, now: Time) {
        self.last_now = self.last_now.max(now);
        match self.state {
            State::AwaitingUuid if now >= self.started + self.config.uuid_timeout => {
                self.finish(EndReason::UuidTimeout);
            }
            State::Active | State::Draining => {
                if let Some(max) = self.config.max_duration
                    && now >= self.started + max
                {
                    self.close(now, EndReason::MaxDuration);
                    return;
                }
                if let Some(e) = self.endpointer.as_mut()
                    && e.poll_timeout().is_some_and(|t| now >= t)
                {
                    e.handle_timeout(now);
                    self.drain_endpointer();
                }
                if self.state == State::Active
                    && self.agent.poll_timeout().is_some_and(|t| now >= t)
                {
                    self.agent.handle_timeout(now, &mut self.playout);
                    self.drain_agent();
                }
            }
            _ => {}
        }
    }

    /// The next frame or the hangup, when one is due at `now`. The
    /// transport sends it (the AudioSocket leg with [`Transmit::encode`]).
    #[must_use]
    pub(crate) fn poll_transmit(&mut self, now: Time) -> Option<Transmit<'_>> {
        self.last_now = self.last_now.max(now);
        if matches!(self.state, State::Active | State::Draining) {
            if let Some(n) = self.playout.poll_frame(now, &mut self.frame_out) {
                self.agent.handle_frame_sent(now, &self.playout);
                self.drain_agent();
                let rate = self.playout.rate();
                return Some(Transmit::Audio(Frame::new(rate, &self.frame_out[..n])));
            }
            if self.state == State::Draining && self.playout.queued().is_zero() {
                self.end = Some(EndReason::AgentHangup);
                self.state = State::SendHangup;
            }
        }
        if self.state == State::SendHangup {
            let reason = self.end.take().unwrap_or(EndReason::AgentHangup);
            self.finish(reason);
            return Some(Transmit::Hangup);
        }
        None
    }

    /// True when [`poll_event`](Self::poll_event) has something.
    #[inline]
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event to log or store, or a turn for the session.
    #[must_use]
    pub(crate) fn poll_event(&mut self) -> Option<Out> {
        self.events.pop_front()
    }

    /// When the call next needs [`handle_timeout`](Self::handle_timeout) or
    /// [`poll_transmit`](Self::poll_transmit); `None` when only input can
    /// move it on.
    #[must_use]
    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        let mut next: Option<Time> = None;
        let mut consider = |t: Option<Time>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        match self.state {
            State::AwaitingUuid => consider(Some(self.started + self.config.uuid_timeout)),
            State::Active | State::Draining => {
                consider(self.config.max_duration.map(|m| self.started + m));
                consider(self.playout.poll_timeout());
                consider(self.endpointer.as_ref().and_then(Endpointer::poll_timeout));
                if self.state == State::Active {
                    consider(self.agent.poll_timeout());
                }
                if self.state == State::Draining && self.playout.queued().is_zero() {
                    consider(Some(self.started));
                }
            }
            // Due at once: the driver's next poll_transmit sends it.
            State::SendHangup => consider(Some(self.started)),
            State::Closed => {}
        }
        next
    }

    fn drain_agent(&mut self) {
        while let Some(action) = self.agent.poll_action() {
            let live = matches!(self.state, State::Active | State::Draining);
            match action {
                AgentAction::Hangup => {
                    if self.state == State::Active {
                        self.state = State::Draining;
                    }
                }
                AgentAction::Speak { id, text } if live => {
                    self.push(Event::Speak { id, text });
                }
                AgentAction::Think { id, history } if live => {
                    self.push(Event::Think { id, history });
                }
                AgentAction::Cancel(id) => self.push(Event::Cancel(id)),
                AgentAction::Record(r) => self.push(Event::Record(r)),
                AgentAction::Speak { .. } | AgentAction::Think { .. } => {}
            }
        }
    }

    fn drain_endpointer(&mut self) {
        let Some(e) = self.endpointer.as_mut() else {
            return;
        };
        while let Some(ev) = e.poll_event() {
            self.events.push_back(match ev {
                EndpointEvent::SpeechStarted { at } => Out::Event(Event::SpeechStarted(at)),
                EndpointEvent::TurnEnded(turn) => {
                    self.agent.handle_turn(self.last_now, &turn);
                    Out::Turn(turn)
                }
                EndpointEvent::Preview(turn) => Out::Preview(turn),
                EndpointEvent::Score { rate, samples } => Out::Score(rate, samples),
            });
        }
    }

    fn push(&mut self, event: Event) {
        self.events.push_back(Out::Event(event));
    }

    fn finish(&mut self, reason: EndReason) {
        if self.state == State::Closed {
            return;
        }
        // A turn in progress is kept: nothing the caller said is lost.
        if let Some(e) = self.endpointer.as_mut() {
            e.finish(self.last_now);
            self.drain_endpointer();
        }
        self.state = State::Closed;
        // What the caller heard of a reply cut off by the end is recorded.
        self.agent.handle_end(self.last_now, &self.playout);
        self.drain_agent();
        let stats = self.stats();
        self.push(Event::Ended { reason, stats });
    }
}
