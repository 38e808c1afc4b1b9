//! One call's whole conversation, pure: what the caller sends in, what the
//! agent says back, and every decision in between.
//!
//! A [`Session`] owns the call's protocol state and playout, its
//! endpointer and agent, the caller's turns on their way through STT
//! (`hearing`) and the agent's speech on its way into playout (`speech`).
//! The driver that runs it only does I/O, with the time passed in:
//!
//! 1. Feed the transport's input: [`handle_start`](Session::handle_start),
//!    [`handle_audio`](Session::handle_audio) (20 ms frames, any transport),
//!    [`handle_dtmf`](Session::handle_dtmf), [`handle_hangup`](Session::handle_hangup),
//!    [`handle_peer_closed`](Session::handle_peer_closed), or an AudioSocket
//!    message with [`handle_message`](Session::handle_message).
//! 2. Feed the results of the work it asked for:
//!    [`handle_score`](Session::handle_score) for [`Event::Score`],
//!    [`handle_transcript`](Session::handle_transcript) for
//!    [`Event::Transcribe`], [`handle_reply`](Session::handle_reply) for
//!    [`Event::Think`], [`handle_speech`](Session::handle_speech) and
//!    [`handle_speech_done`](Session::handle_speech_done) for
//!    [`Event::Speak`] and `Think`; and [`handle_timeout`](Session::handle_timeout)
//!    at the deadline.
//! 3. Drain [`poll_event`](Session::poll_event) (work to start, things to
//!    log or store) and [`poll_transmit`](Session::poll_transmit) (frames
//!    to send now) until both return `None`.
//! 4. Sleep until [`poll_timeout`](Session::poll_timeout), the next input
//!    or the next result; pull the next piece of speech for
//!    [`wants_speech`](Session::wants_speech) when it names an utterance.
//! 5. Stop when [`is_closed`](Session::is_closed); results still coming
//!    for turns ([`awaiting_transcripts`](Session::awaiting_transcripts))
//!    may be fed after that and come out as records.

mod hearing;
mod pause;
mod speech;

use std::collections::VecDeque;
use std::time::Duration;

use crate::agent::Agent;
use crate::audiosocket::{DecodeError, Message};
use crate::call::{Call, CallConfig, CallId, CallStats, Ears, EndReason, Event, Out, Transmit};
use crate::dialog::{Record, ReplyInput, UtteranceId};
use crate::endpointing::Endpointer;
use crate::frame::{Frame, SampleRate, Time};
use hearing::{Hearing, Taken};
pub use hearing::{Transcribed, TurnId, TurnInfo};
use pause::Pauses;
pub use pause::{PauseVerdict, SmartTurn, words_complete};
pub use speech::FEED_AHEAD;
use speech::SpeechFeed;

/// One call's conversation. See the module docs for the driving contract.
#[derive(Debug)]
pub struct Session {
    call: Call,
    hearing: Hearing,
    /// Pauses judged by model and words, with [`SmartTurn`].
    pauses: Option<Pauses>,
    speech: SpeechFeed,
    events: VecDeque<Event>,
}

impl Session {
    /// A session accepted at `now`, talking to `agent`.
    pub fn new(now: Time, config: CallConfig, agent: Box<dyn Agent>) -> Self {
        Self {
            call: Call::new(now, config, agent),
            hearing: Hearing::default(),
            pauses: None,
            speech: SpeechFeed::default(),
            events: VecDeque::with_capacity(4),
        }
    }

    /// Adds turn detection: caller audio goes through `endpointer`, and
    /// finished turns come out as [`Event::Transcribe`].
    pub fn with_endpointer(mut self, endpointer: Endpointer) -> Self {
        self.call = self.call.with_endpointer(endpointer);
        self
    }

    /// Adds turn detection built for the caller's rate when their first
    /// audio arrives (and rebuilt if the rate changes).
    pub fn with_ears(mut self, ears: Ears) -> Self {
        self.call = self.call.with_ears(ears);
        self
    }

    /// Ends turns on a short pause when an end-of-turn model and the
    /// preview's words agree the caller is done (see [`SmartTurn`]): each
    /// preview also comes out as [`Event::CheckTurn`]. Needs an
    /// endpointer with previews; its `hangover` is then the longest pause
    /// a turn waits when the signals do not agree.
    pub fn with_smart_turn(mut self, config: SmartTurn) -> Self {
        self.pauses = Some(Pauses::new(config));
        self
    }

    /// The call's identity, once it has started.
    pub fn id(&self) -> Option<CallId> {
        self.call.id()
    }

    /// The rate outbound audio is sent at (speech must be at this rate).
    pub fn rate(&self) -> SampleRate {
        self.call.rate()
    }

    /// True once nothing more will be transmitted; the driver closes the leg.
    pub fn is_closed(&self) -> bool {
        self.call.is_closed()
    }

    /// Counters so far.
    pub fn stats(&self) -> CallStats {
        self.call.stats()
    }

    /// Outgoing audio queued and not yet sent.
    pub fn queued_audio(&self) -> Duration {
        self.call.queued_audio()
    }

    // ---- the transport's input ----

    /// An AudioSocket message (the AudioSocket leg's adapter).
    pub fn handle_message(&mut self, now: Time, message: Message<'_>) {
        self.call.handle_message(now, message);
        self.settle(now);
    }

    /// The call's identity arrived (AudioSocket's UUID; the transport's
    /// own for SIP and Stasis): the call is live.
    pub fn handle_start(&mut self, now: Time, id: CallId) {
        self.call.handle_start(now, id);
        self.settle(now);
    }

    /// One frame of the caller's audio.
    pub fn handle_audio(&mut self, now: Time, frame: Frame<'_>) {
        self.call.handle_audio(now, frame);
        self.settle(now);
    }

    /// The caller pressed a key (`byte` is its ASCII: 0-9, *, #, A-D).
    pub fn handle_dtmf(&mut self, now: Time, byte: u8) {
        self.call.handle_dtmf(now, byte);
        self.settle(now);
    }

    /// The peer hung up.
    pub fn handle_hangup(&mut self, now: Time) {
        self.call.handle_hangup(now);
        self.settle(now);
    }

    /// The peer reported an error (`code`, if it gave one).
    pub fn handle_peer_error(&mut self, now: Time, code: Option<u8>) {
        self.call.handle_peer_error(now, code);
        self.settle(now);
    }

    /// The connection closed (EOF or reset); `mid_message` when unfinished
    /// bytes were left.
    pub fn handle_peer_closed(&mut self, now: Time, mid_message: bool) {
        self.call.handle_peer_closed(now, mid_message);
        self.settle(now);
    }

    /// The transport's byte stream was corrupt: end the call.
    pub fn handle_protocol_error(&mut self, now: Time, error: DecodeError) {
        self.call.handle_protocol_error(now, error);
        self.settle(now);
    }

    /// Ends the call at once without sending anything (the leg is unusable).
    pub fn abort(&mut self, now: Time, reason: EndReason) {
        self.call.abort(now, reason);
        self.settle(now);
    }

    /// Ends the call from hark's side: hang up at once, then close.
    pub fn close(&mut self, now: Time, reason: EndReason) {
        self.call.close(now, reason);
        self.settle(now);
    }

    /// Wake-up at or after [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Time) {
        self.call.handle_timeout(now);
        self.settle(now);
    }

    // ---- results of the work the session asked for ----

    /// The VAD's speech probability for the oldest window of
    /// [`Event::Score`] not yet reported (`None`: it failed on it).
    pub fn handle_score(&mut self, now: Time, p: Option<f32>) {
        self.call.handle_score(now, p);
        self.settle(now);
    }

    /// STT's text for `turn` (`None`: it had no words, or was lost). Texts
    /// reach the agent in the order the caller spoke, whatever order they
    /// come in. After the call's end, a turn's text becomes a record.
    pub fn handle_transcript(&mut self, now: Time, turn: TurnId, text: Option<Transcribed>) {
        let verdict = self
            .pauses
            .as_mut()
            .and_then(|p| p.heard(turn, text.as_ref().map(|t| t.text.as_str())));
        if !self.hearing.answer(turn, text) {
            return;
        }
        self.deliver_heard(now);
        self.settle(now);
        if let Some(verdict) = verdict {
            self.apply_verdict(now, verdict);
        }
    }

    /// The end-of-turn model's probability that the paused turn `turn` is
    /// complete (see [`Event::CheckTurn`]; `None`: it failed).
    pub fn handle_turn_check(&mut self, now: Time, turn: TurnId, probability: Option<f32>) {
        let verdict = self
            .pauses
            .as_mut()
            .and_then(|p| p.scored(turn, probability));
        if let Some(verdict) = verdict {
            self.apply_verdict(now, verdict);
        }
    }

    /// Logs the verdict; a complete pause ends the turn (if the caller is
    /// still in it), and its preview's text goes to the agent at once.
    fn apply_verdict(&mut self, now: Time, (speech_end, verdict): (Time, PauseVerdict)) {
        self.events.push_back(Event::PauseJudged(verdict));
        if verdict.complete && self.call.end_turn_if_paused(now, speech_end) {
            self.settle(now);
        }
    }

    /// Hands every finished turn whose text is in to the agent, in order
    /// (after the call's end, as records).
    fn deliver_heard(&mut self, now: Time) {
        while let Some(heard) = self.hearing.next_heard() {
            if self.call.is_closed() {
                if let Some(segment) = heard.segment() {
                    self.events.push_back(Event::Record(Record::Said(segment)));
                }
            } else {
                self.call.handle_transcript(now, heard);
                self.take_call_events();
            }
        }
    }

    /// The times of a turn still waiting for its text (for the driver's log).
    pub fn turn_info(&self, turn: TurnId) -> Option<TurnInfo> {
        self.hearing.info(turn)
    }

    /// Finished turns whose text has not come yet.
    pub fn awaiting_transcripts(&self) -> usize {
        self.hearing.waiting()
    }

    /// News about the model reply of utterance `id` (see [`Event::Think`]).
    pub fn handle_reply(&mut self, now: Time, id: UtteranceId, input: ReplyInput) {
        self.call.handle_reply(now, id, input);
        self.settle(now);
    }

    /// A synthesized piece of utterance `id` that speaks `text`, at
    /// [`rate`](Self::rate). Pieces of a cancelled utterance are dropped.
    pub fn handle_speech(&mut self, now: Time, id: UtteranceId, text: &str, samples: Vec<i16>) {
        if self.speech.push(id, text, samples) {
            self.settle(now);
        }
    }

    /// Every piece of utterance `id` has been given (or it had none: no
    /// voice, a failed synthesis).
    pub fn handle_speech_done(&mut self, now: Time, id: UtteranceId) {
        self.speech.done(id);
        self.settle(now);
    }

    /// The utterance whose next synthesized piece is wanted now, if any:
    /// playout takes the oldest utterance's audio up to [`FEED_AHEAD`]
    /// ahead, and the synthesizer waits while it is that far ahead.
    pub fn wants_speech(&self) -> Option<UtteranceId> {
        self.speech.wanted(self.call.queued_audio())
    }

    // ---- output ----

    /// The next frame or the hangup, when one is due at `now`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Time) -> Option<Transmit<'_>> {
        // What the last frame set off (a segment heard, an utterance
        // finished) is taken in before more audio is fed.
        self.settle(now);
        self.call.poll_transmit(now)
    }

    /// The next thing to do, log or store.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.take_call_events();
        self.events.pop_front()
    }

    /// When the session next needs [`handle_timeout`](Self::handle_timeout)
    /// or [`poll_transmit`](Self::poll_transmit); `None` when only input can
    /// move it on.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.call.poll_timeout()
    }

    /// Takes in what the call set off, then feeds playout (which may set
    /// off more: a segment begun, an utterance handed over).
    #[inline]
    fn settle(&mut self, now: Time) {
        self.take_call_events();
        if self.hearing.has_heard() {
            // A turn ended on a preview whose text was already in.
            self.deliver_heard(now);
        }
        if !self.speech.is_empty() {
            self.speech.feed(&mut self.call, now);
            self.take_call_events();
        }
    }

    /// Moves the call's events into the session's queue: utterances are
    /// opened and cancelled in the feed at once (a cancel lands before
    /// more audio is fed), and turns go through `hearing`.
    #[inline]
    fn take_call_events(&mut self) {
        if !self.call.has_events() {
            return;
        }
        self.take_call_events_slow();
    }

    #[cold]
    fn take_call_events_slow(&mut self) {
        while let Some(out) = self.call.poll_event() {
            match out {
                Out::Event(e) => {
                    match &e {
                        Event::Speak { id, .. } | Event::Think { id, .. } => self.speech.open(*id),
                        Event::Cancel(id) => self.speech.cancel(*id),
                        _ => {}
                    }
                    let ended = matches!(e, Event::Ended { .. });
                    self.events.push_back(e);
                    if ended && let Some(p) = self.hearing.drop_preview() {
                        self.events.push_back(Event::ForgetTurn(p));
                    }
                }
                Out::Preview(audio) => {
                    let (turn, old) = self.hearing.preview(&audio);
                    if let Some(old) = old {
                        self.events.push_back(Event::ForgetTurn(old));
                    }
                    if let Some(p) = self.pauses.as_mut() {
                        p.paused(turn, audio.speech_end);
                        self.events.push_back(Event::CheckTurn {
                            turn,
                            samples: audio.samples.clone(),
                            rate: audio.rate,
                        });
                    }
                    self.events.push_back(Event::Transcribe { turn, audio });
                }
                Out::Score(rate, window) => self.events.push_back(Event::Score { rate, window }),
                Out::Turn(audio) => match self.hearing.take(&audio) {
                    Taken::Preview => {}
                    Taken::New(turn, old) => {
                        if let Some(old) = old {
                            self.events.push_back(Event::ForgetTurn(old));
                        }
                        self.events.push_back(Event::Transcribe { turn, audio });
                    }
                },
            }
        }
    }
}
