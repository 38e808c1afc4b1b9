//! The per-call state machine: AudioSocket messages in, paced frames out.
//!
//! A [`Call`] owns one call's protocol state, its agent and its playout. It is
//! driven from outside with the time passed in:
//!
//! 1. Feed every decoded message with [`Call::handle_message`], a dead socket
//!    with [`Call::handle_peer_closed`], a corrupt stream with
//!    [`Call::handle_protocol_error`], and a wake-up with [`Call::handle_timeout`].
//! 2. Then drain [`Call::poll_transmit`] (bytes to write to the socket) and
//!    [`Call::poll_event`] (things to log or store) until both return `None`.
//! 3. Sleep until [`Call::poll_timeout`] or the next input, whichever is first.
//! 4. Stop when [`Call::is_closed`].
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
use crate::dialog::{ChatLine, Heard, Record, ReplyInput, UtteranceId};
use crate::endpointing::{EndpointEvent, Endpointer, Turn};
use crate::frame::{Frame, SampleRate, Time};
use crate::playout::{Playout, PlayoutStats};

/// Largest message [`Call::poll_transmit`] writes: 20 ms at 192 kHz plus header.
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

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The peer sent hangup (0x00).
    PeerHangup,
    /// The peer closed the connection (what Asterisk does at hangup).
    PeerClosed {
        /// Bytes of an unfinished message were left in the buffer.
        mid_message: bool,
    },
    /// The peer sent an error (0xff) with this code (if it gave one).
    PeerError(Option<u8>),
    /// The byte stream was corrupt.
    Protocol(DecodeError),
    /// Audio or DTMF arrived before the UUID.
    MissingUuid,
    /// No UUID arrived in time.
    UuidTimeout,
    /// The agent ended the call (hand-off or goodbye).
    AgentHangup,
    /// The call reached its maximum length.
    MaxDuration,
    /// The daemon is shutting down.
    Shutdown,
    /// An internal error; the message says what.
    Internal(String),
}

impl EndReason {
    /// True when the call ended for a reason that is nobody's fault.
    pub fn is_normal(&self) -> bool {
        matches!(
            self,
            EndReason::PeerHangup
                | EndReason::PeerClosed { mid_message: false }
                | EndReason::AgentHangup
                | EndReason::MaxDuration
                | EndReason::Shutdown
        )
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::PeerHangup => f.write_str("peer sent hangup"),
            EndReason::PeerClosed { mid_message: false } => f.write_str("peer closed"),
            EndReason::PeerClosed { mid_message: true } => {
                f.write_str("peer closed in the middle of a message")
            }
            EndReason::PeerError(Some(code)) => write!(f, "peer sent error 0x{code:02x}"),
            EndReason::PeerError(None) => f.write_str("peer sent an error"),
            EndReason::Protocol(e) => write!(f, "protocol error: {e}"),
            EndReason::MissingUuid => f.write_str("media before UUID"),
            EndReason::UuidTimeout => f.write_str("no UUID in time"),
            EndReason::AgentHangup => f.write_str("agent hung up"),
            EndReason::MaxDuration => f.write_str("maximum call length reached"),
            EndReason::Shutdown => f.write_str("shutdown"),
            EndReason::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

/// Counters for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Audio messages received.
    pub frames_in: u64,
    /// Samples received.
    pub samples_in: u64,
    /// DTMF digits received.
    pub digits_in: u64,
    /// Outbound pacing counters.
    pub playout: PlayoutStats,
}

/// Something the driver should do, log or store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The UUID arrived: the call is live.
    Started(CallId),
    /// The caller's audio rate is known (or changed).
    Format(SampleRate),
    /// The caller pressed a key.
    Dtmf(Digit),
    /// A DTMF byte that is not a DTMF digit; ignored.
    BadDtmf(u8),
    /// The caller started talking (with an endpointer).
    SpeechStarted(Time),
    /// The caller has paused (with an endpointer whose `preview` is set):
    /// the turn so far, which may be the whole turn. STT can start on it;
    /// if the [`Event::Turn`] that follows has the same `speech_start` and
    /// `speech_end`, its transcript is this one's.
    TurnPreview(Turn),
    /// The caller finished a turn (with an endpointer): hand it to STT.
    Turn(Turn),
    /// The agent wants this said: synthesize it, announce each piece with
    /// [`Call::begin_segment`], feed its audio to [`Call::play`], then call
    /// [`Call::handle_utterance_done`].
    Speak {
        /// The utterance.
        id: UtteranceId,
        /// What to say.
        text: String,
    },
    /// The agent wants the model's next line: stream it (reporting with
    /// [`Call::handle_reply`]) and speak it as for `Speak`.
    Think {
        /// The utterance the reply becomes.
        id: UtteranceId,
        /// The conversation so far.
        history: Vec<ChatLine>,
    },
    /// Stop the model and TTS work of this utterance; drop its audio.
    Cancel(UtteranceId),
    /// For the control plane: transcript, latency, usage, outcome.
    Record(Record),
    /// The call is over; nothing more will be transmitted.
    Ended {
        /// Why.
        reason: EndReason,
        /// Final counters.
        stats: CallStats,
    },
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
pub struct Call {
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
    playout: Playout,
    /// Reused for inbound PCM -> samples.
    scratch: Vec<i16>,
    /// Reused for the outbound frame.
    frame_out: Vec<i16>,
    events: VecDeque<Event>,
    /// The latest `now` seen, for ends that happen without one.
    last_now: Time,
    end: Option<EndReason>,
    stats: CallStats,
}

impl Call {
    /// A call accepted at `now`, talking to `agent`.
    pub fn new(now: Time, config: CallConfig, agent: Box<dyn Agent>) -> Self {
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
    pub fn with_endpointer(mut self, endpointer: Endpointer) -> Self {
        self.endpointer = Some(endpointer);
        self
    }

    /// Adds turn detection built for the caller's rate when their first
    /// audio arrives (and rebuilt if the rate changes).
    pub fn with_ears(mut self, ears: Ears) -> Self {
        self.ears = Some(ears);
        self
    }

    /// The call's UUID, once received.
    pub fn id(&self) -> Option<CallId> {
        self.id
    }

    /// The rate outbound audio is sent at.
    pub fn rate(&self) -> SampleRate {
        self.playout.rate()
    }

    /// True once nothing more will be transmitted; the driver closes the socket.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Counters so far.
    pub fn stats(&self) -> CallStats {
        CallStats {
            playout: self.playout.stats(),
            ..self.stats
        }
    }

    /// Feeds one decoded message.
    pub fn handle_message(&mut self, now: Time, message: Message<'_>) {
        self.last_now = self.last_now.max(now);
        match (self.state, message) {
            (State::SendHangup | State::Closed, _) => {}
            (_, Message::Hangup) => self.finish(EndReason::PeerHangup),
            (_, Message::Error(code)) => {
                self.finish(EndReason::PeerError(code.first().copied()));
            }
            (State::AwaitingUuid, Message::Uuid(uuid)) => {
                self.id = Some(CallId(uuid));
                self.state = State::Active;
                // From the UUID to the hangup a frame leaves every 20 ms,
                // silence when there is nothing to say: `AudioSocket()`
                // hangs up after 2 s without a frame either way.
                self.playout.keep_alive(now);
                self.events.push_back(Event::Started(CallId(uuid)));
                self.agent.handle_start(now);
            }
            (State::AwaitingUuid, _) => self.finish(EndReason::MissingUuid),
            // Asterisk sends the UUID once; a repeat changes nothing.
            (_, Message::Uuid(_)) => {}
            (state, Message::Audio { rate, pcm }) => {
                self.stats.frames_in += 1;
                self.stats.samples_in += (pcm.len() / 2) as u64;
                if !self.rate_known || rate != self.playout.rate() {
                    self.rate_known = true;
                    if rate != self.playout.rate() {
                        self.playout.reset_rate(rate);
                    }
                    if self.ears.is_some() {
                        if let Some(e) = self.endpointer.as_mut() {
                            e.finish(now);
                        }
                        self.drain_endpointer();
                        self.endpointer = self.ears.as_ref().map(|ears| (ears.0)(rate));
                    }
                    self.events.push_back(Event::Format(rate));
                }
                if state == State::Active {
                    self.scratch.clear();
                    audiosocket::pcm_to_samples(pcm, &mut self.scratch);
                    let frame = Frame::new(rate, &self.scratch);
                    if let Some(e) = self.endpointer.as_mut() {
                        e.handle_audio(now, frame);
                    }
                    self.agent.handle_audio(now, frame, &mut self.playout);
                    self.drain_endpointer();
                    if let Some(voice) = self.endpointer.as_ref().and_then(Endpointer::voice) {
                        self.agent.handle_voice(now, voice, &mut self.playout);
                    }
                }
            }
            (state, Message::Dtmf(byte)) => {
                self.stats.digits_in += 1;
                match Digit::from_ascii(byte) {
                    Some(digit) => {
                        self.events.push_back(Event::Dtmf(digit));
                        if state == State::Active {
                            self.agent.handle_dtmf(now, digit, &mut self.playout);
                        }
                    }
                    None => self.events.push_back(Event::BadDtmf(byte)),
                }
            }
        }
        self.drain_agent();
    }

    /// The connection closed (EOF or reset). `mid_message` when unfinished
    /// bytes were left in the read buffer.
    pub fn handle_peer_closed(&mut self, now: Time, mid_message: bool) {
        self.last_now = self.last_now.max(now);
        if self.state != State::Closed {
            self.finish(EndReason::PeerClosed { mid_message });
        }
    }

    /// The decoder rejected the byte stream: framing is lost, end the call.
    pub fn handle_protocol_error(&mut self, now: Time, error: DecodeError) {
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
    pub fn play(&mut self, now: Time, id: UtteranceId, samples: &[i16]) -> usize {
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
    pub fn queued_audio(&self) -> Duration {
        self.playout.queued()
    }

    /// The next `samples` given to [`play`](Self::play) speak `text`, part
    /// of utterance `id`. Lets the call tell what the caller has heard.
    pub fn begin_segment(&mut self, now: Time, id: UtteranceId, text: &str, samples: usize) {
        self.last_now = self.last_now.max(now);
        if matches!(self.state, State::Active | State::Draining) {
            let start = self.playout.end_position();
            self.agent
                .handle_segment(now, id, text, start, start + samples as u64);
            self.drain_agent();
        }
    }

    /// Every sample of utterance `id` has been handed to [`play`](Self::play).
    pub fn handle_utterance_done(&mut self, now: Time, id: UtteranceId) {
        self.last_now = self.last_now.max(now);
        self.playout.mark_end();
        if matches!(self.state, State::Active | State::Draining) {
            self.agent.handle_utterance_done(now, id);
            self.drain_agent();
        }
    }

    /// STT's result for the oldest caller turn not yet reported (every
    /// [`Event::Turn`] gets exactly one, empty text when it had no words).
    pub fn handle_transcript(&mut self, now: Time, heard: Heard) {
        self.last_now = self.last_now.max(now);
        if self.state == State::Active {
            self.agent.handle_transcript(now, heard, &mut self.playout);
            self.drain_agent();
        }
    }

    /// News about the model reply of utterance `id` (see [`Event::Think`]).
    pub fn handle_reply(&mut self, now: Time, id: UtteranceId, input: ReplyInput) {
        self.last_now = self.last_now.max(now);
        if matches!(self.state, State::Active | State::Draining) {
            self.agent.handle_reply(now, id, input, &mut self.playout);
            self.drain_agent();
        }
    }

    /// Ends the call at once without sending anything (the connection is
    /// unusable, e.g. the peer stopped reading).
    pub fn abort(&mut self, now: Time, reason: EndReason) {
        self.last_now = self.last_now.max(now);
        self.finish(reason);
    }

    /// Ends the call from hark's side: send hangup (0x00) at once, then close.
    pub fn close(&mut self, now: Time, reason: EndReason) {
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
    pub fn handle_timeout(&mut self, now: Time) {
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

    /// Writes the next message for the socket into `out` (at least
    /// [`MAX_TRANSMIT`] bytes) and returns its length; `None` when nothing is
    /// due at `now`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Time, out: &mut [u8]) -> Option<usize> {
        self.last_now = self.last_now.max(now);
        if matches!(self.state, State::Active | State::Draining) {
            if let Some(n) = self.playout.poll_frame(now, &mut self.frame_out) {
                let rate = self.playout.rate();
                match audiosocket::encode_samples(rate, &self.frame_out[..n], out) {
                    Ok(len) => {
                        self.agent.handle_frame_sent(now, &self.playout);
                        self.drain_agent();
                        return Some(len);
                    }
                    Err(e) => {
                        self.fail_encode(e);
                        return None;
                    }
                }
            }
            if self.state == State::Draining && self.playout.queued().is_zero() {
                self.end = Some(EndReason::AgentHangup);
                self.state = State::SendHangup;
            }
        }
        if self.state == State::SendHangup {
            match audiosocket::encode(&Message::Hangup, out) {
                Ok(len) => {
                    let reason = self.end.take().unwrap_or(EndReason::AgentHangup);
                    self.finish(reason);
                    return Some(len);
                }
                Err(e) => self.fail_encode(e),
            }
        }
        None
    }

    /// The next event to log or store.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the call next needs [`handle_timeout`](Self::handle_timeout) or
    /// [`poll_transmit`](Self::poll_transmit); `None` when only input can
    /// move it on.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
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
                    self.events.push_back(Event::Speak { id, text });
                }
                AgentAction::Think { id, history } if live => {
                    self.events.push_back(Event::Think { id, history });
                }
                AgentAction::Cancel(id) => self.events.push_back(Event::Cancel(id)),
                AgentAction::Record(r) => self.events.push_back(Event::Record(r)),
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
                EndpointEvent::SpeechStarted { at } => Event::SpeechStarted(at),
                EndpointEvent::TurnEnded(turn) => {
                    self.agent.handle_turn(self.last_now, &turn);
                    Event::Turn(turn)
                }
                EndpointEvent::Preview(turn) => Event::TurnPreview(turn),
            });
        }
    }

    fn fail_encode(&mut self, e: EncodeError) {
        self.finish(EndReason::Internal(format!("encode: {e}")));
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
        self.events.push_back(Event::Ended {
            reason,
            stats: self.stats(),
        });
    }
}
