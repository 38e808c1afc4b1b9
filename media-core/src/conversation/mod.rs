//! The voice agent: a conversation with turn-taking, barge-in, silence
//! handling, DTMF and hand-off to a human.
//!
//! [`Conversation`] decides; the driver does the I/O. It asks for speech
//! ([`AgentAction::Speak`] for fixed phrases, [`AgentAction::Think`] for a
//! model reply) and the driver streams the audio back in segments, each
//! tagged with the text it speaks. Because every segment is mapped onto
//! playout positions, the conversation knows exactly how much of a reply
//! the caller has heard: a barge-in keeps only that in the history, marked
//! interrupted, and the model never believes it said what was cut off.
//!
//! # Rules
//! - **Turns.** A caller turn's transcript joins the history; once no turn
//!   is pending and the caller is quiet, the model is asked for a reply.
//!   Two turns in a row become one message.
//! - **Barge-in.** Caller speech during agent audio cuts it off when its
//!   voiced length reaches `barge_in_min` (so a cough, a click or line
//!   noise does not): playout is flushed in the same frame and the model
//!   and TTS work is cancelled. A short turn that does not reach the minimum
//!   still cuts in once transcribed, unless it is a backchannel ("uh-huh").
//!   If the interrupting turn turns out to have no words, the model is
//!   asked again, so the agent never stays silent after an interruption.
//! - **Silence.** With nothing playing, no turn pending and the caller
//!   quiet, `silence_timeout` brings a re-prompt; after `max_reprompts` the
//!   agent says goodbye and hangs up.
//! - **DTMF.** Digits are collected until `dtmf_gap` passes or `#`, then
//!   reach the model as one caller line. The transfer digit hands off at once.
//! - **Ending.** `transfer_to_human` (or the transfer digit) says the
//!   hand-off phrase, then hangs up (AudioSocket 0x00) so the dialplan goes
//!   on to its next priority; `end_call` says goodbye unless the reply
//!   already did, then hangs up. Final phrases cannot be interrupted.

mod history;
mod interruption;
mod overlap;

use std::collections::VecDeque;
use std::time::Duration;

use crate::agent::{Agent, AgentAction, Digit};
use crate::dialog::{
    Heard, Outcome, Record, ReplyInput, Segment, Speaker, TurnLatency, UtteranceId,
};
use crate::endpointing::{Turn, Voice};
use crate::frame::{Frame, Time};
use crate::playout::Playout;
use history::History;
use overlap::Overlap;
pub use overlap::OverlapKind;

/// Where a hand-off goes and what the caller hears first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The queue or extension the dialplan continues to (recorded with the
    /// outcome; the dialplan reads it back).
    pub target: String,
    /// Said before hanging up the AudioSocket leg.
    pub phrase: String,
}

/// How a conversation behaves (an agent profile in `hark.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationConfig {
    /// Said first; `None` asks the model for the first line.
    pub greeting: Option<String>,
    /// Whether the caller can talk over the greeting.
    pub greeting_interruptible: bool,
    /// Whether the caller can talk over replies at all.
    pub barge_in: bool,
    /// Voiced caller audio needed to cut the agent off.
    pub barge_in_min: Duration,
    /// How much the agent's audio is lowered, in dB, from the caller's
    /// first voiced window until it is clear whether they are cutting in
    /// (`None` or 0: no ducking; the agent plays on at full level until
    /// it stops).
    pub duck_db: Option<f32>,
    /// Short acknowledgements that never cut the agent off (lower case).
    pub backchannels: Vec<String>,
    /// Quiet time before a re-prompt.
    pub silence_timeout: Duration,
    /// Re-prompts before the agent gives up and hangs up.
    pub max_reprompts: u32,
    /// The re-prompt.
    pub reprompt: String,
    /// Said before hanging up on a silent caller.
    pub silence_goodbye: String,
    /// Said by `end_call` when the reply itself said nothing.
    pub goodbye: String,
    /// Said when a reply fails before any of it was spoken.
    pub apology: String,
    /// The hand-off, if this agent can transfer.
    pub handoff: Option<Handoff>,
    /// The digit that transfers at once.
    pub transfer_digit: Option<Digit>,
    /// Digits are collected until this much time passes without one.
    pub dtmf_gap: Duration,
    /// The conversation is wrapped up politely after this long.
    pub max_call: Option<Duration>,
    /// Said when `max_call` is reached.
    pub time_up: String,
    /// History bound: lines.
    pub history_lines: usize,
    /// History bound: characters.
    pub history_chars: usize,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            greeting: None,
            greeting_interruptible: true,
            barge_in: true,
            // Longer than a cough or a click (100-200 ms), shorter than a
            // word or two ("wait", "no, stop").
            barge_in_min: Duration::from_millis(300),
            // Clearly lower (a quarter of the amplitude) while staying
            // intelligible, so a caller who only coughed missed nothing.
            duck_db: Some(12.0),
            backchannels: [
                "uh-huh", "uh huh", "mm-hmm", "mhm", "mm", "hmm", "yeah", "yes", "ok", "okay",
                "right", "sure",
            ]
            .map(String::from)
            .to_vec(),
            silence_timeout: Duration::from_secs(8),
            max_reprompts: 2,
            reprompt: "Are you still there?".into(),
            silence_goodbye: "I can't hear you, so I'll end the call now. Goodbye.".into(),
            goodbye: "Thank you for calling. Goodbye.".into(),
            apology: "Sorry, I'm having trouble right now. Could you say that again?".into(),
            handoff: None,
            transfer_digit: Digit::from_ascii(b'0'),
            dtmf_gap: Duration::from_secs(2),
            max_call: None,
            time_up: "We've reached the time limit for this call. Thank you, goodbye.".into(),
            // About 20 exchanges: enough context for a phone call, a
            // bounded prompt for the model.
            history_lines: 40,
            history_chars: 8_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Greeting,
    Reply,
    /// A re-prompt or an apology.
    Prompt,
    /// The last thing said before hanging up.
    Final,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    Nothing,
    Transfer(String),
    End,
}

/// Times of the caller turn a reply answers.
#[derive(Debug, Clone, Copy)]
struct TurnTimes {
    speech_end: Time,
    decided_at: Time,
    transcribed_at: Time,
}

#[derive(Debug)]
struct Utterance {
    id: UtteranceId,
    kind: Kind,
    interruptible: bool,
    /// The model is done (always true for fixed text).
    reply_done: bool,
    /// Every sample has been handed to playout.
    produced: bool,
    /// The model's text so far, or the fixed text.
    text: String,
    failed: bool,
    after: After,
    turn: Option<TurnTimes>,
    first_token_at: Option<Time>,
    first_audio_at: Option<Time>,
    first_frame_at: Option<Time>,
}

/// A piece of an utterance at playout positions `start..end`.
#[derive(Debug)]
struct Piece {
    id: UtteranceId,
    text: String,
    start: u64,
    end: u64,
    started_at: Option<Time>,
}

/// The voice agent. See the module docs.
#[derive(Debug)]
pub struct Conversation {
    config: ConversationConfig,
    history: History,
    next_id: u32,
    /// What the agent is saying or about to say, in order.
    queue: VecDeque<Utterance>,
    /// Audio pieces queued or playing, in playout order.
    pieces: VecDeque<Piece>,
    actions: VecDeque<AgentAction>,
    started_at: Time,
    /// When the agent last fell quiet with nothing to do.
    quiet_since: Time,
    /// Turns sent to STT and not yet reported.
    pending_turns: u32,
    /// The caller is in a turn (per the endpointer).
    caller_speaking: bool,
    /// Onset of the turn that last barged in (one barge-in per turn).
    barged_onset: Option<Time>,
    /// The agent's audio ducked under the caller's voice.
    overlap: Overlap,
    /// A reply was cut off: if no words follow, ask the model again.
    resume_owed: bool,
    /// The latest caller turn not yet answered.
    last_turn: Option<TurnTimes>,
    reprompts: u32,
    digits: String,
    digits_deadline: Option<Time>,
    /// A final phrase or hangup is on its way.
    ending: bool,
    time_up_done: bool,
}

impl Conversation {
    /// A conversation with `config`.
    pub fn new(config: ConversationConfig) -> Self {
        let history = History::new(config.history_lines, config.history_chars);
        let overlap = Overlap::new(config.duck_db);
        Self {
            config,
            history,
            next_id: 0,
            queue: VecDeque::new(),
            pieces: VecDeque::new(),
            actions: VecDeque::new(),
            started_at: Time::ZERO,
            quiet_since: Time::ZERO,
            pending_turns: 0,
            caller_speaking: false,
            barged_onset: None,
            overlap,
            resume_owed: false,
            last_turn: None,
            reprompts: 0,
            digits: String::new(),
            digits_deadline: None,
            ending: false,
            time_up_done: false,
        }
    }

    fn new_utterance(&mut self, kind: Kind, text: String, reply_done: bool) -> UtteranceId {
        self.next_id += 1;
        let id = UtteranceId(self.next_id);
        let interruptible = match kind {
            Kind::Greeting => self.config.greeting_interruptible && self.config.barge_in,
            Kind::Reply | Kind::Prompt => self.config.barge_in,
            Kind::Final => false,
        };
        self.queue.push_back(Utterance {
            id,
            kind,
            interruptible,
            reply_done,
            produced: false,
            text,
            failed: false,
            after: After::Nothing,
            turn: None,
            first_token_at: None,
            first_audio_at: None,
            first_frame_at: None,
        });
        id
    }

    fn speak(&mut self, kind: Kind, text: &str) {
        if kind == Kind::Final {
            self.ending = true;
        }
        let id = self.new_utterance(kind, text.to_string(), true);
        self.actions.push_back(AgentAction::Speak {
            id,
            text: text.to_string(),
        });
    }

    fn think(&mut self, kind: Kind) {
        let id = self.new_utterance(kind, String::new(), false);
        if let Some(u) = self.queue.back_mut() {
            u.turn = self.last_turn.take();
        }
        self.resume_owed = false;
        self.actions.push_back(AgentAction::Think {
            id,
            history: self.history.lines(),
        });
    }

    /// Asks the model for a reply when one is owed and the floor is free.
    fn maybe_think(&mut self) {
        if !self.ending
            && self.queue.is_empty()
            && self.pending_turns == 0
            && !self.caller_speaking
            && (self.history.caller_spoke_last() || self.resume_owed)
        {
            self.think(Kind::Reply);
        }
    }

    fn record(&mut self, r: Record) {
        self.actions.push_back(AgentAction::Record(r));
    }

    fn transfer(&mut self, reason: String) {
        let Some(h) = self.config.handoff.clone() else {
            return;
        };
        self.record(Record::Outcome(Outcome::Transferred {
            target: h.target,
            reason,
        }));
        self.speak(Kind::Final, &h.phrase);
    }

    /// Pops finished utterances from the front and does what follows them.
    fn check_finished(&mut self, now: Time) {
        while let Some(u) = self.queue.front() {
            let done = u.produced && u.reply_done && !self.pieces.iter().any(|p| p.id == u.id);
            if !done {
                return;
            }
            let Some(u) = self.queue.pop_front() else {
                return;
            };
            if u.kind == Kind::Final {
                self.actions.push_back(AgentAction::Hangup);
                return;
            }
            match u.after {
                After::Transfer(reason) => self.transfer(reason),
                After::End => {
                    self.record(Record::Outcome(Outcome::Completed));
                    if u.text.trim().is_empty() {
                        let goodbye = self.config.goodbye.clone();
                        self.speak(Kind::Final, &goodbye);
                    } else {
                        self.ending = true;
                        self.actions.push_back(AgentAction::Hangup);
                        return;
                    }
                }
                After::Nothing => {
                    if u.failed && u.text.trim().is_empty() {
                        let apology = self.config.apology.clone();
                        self.speak(Kind::Prompt, &apology);
                    }
                }
            }
            if self.queue.is_empty() {
                self.quiet_since = now;
                self.maybe_think();
            }
        }
    }

    fn flush_digits(&mut self, now: Time) {
        self.digits_deadline = None;
        if self.digits.is_empty() {
            return;
        }
        let line = format!("[keypad] {}", std::mem::take(&mut self.digits));
        self.record(Record::Said(Segment {
            speaker: Speaker::Caller,
            text: line.clone(),
            start: now,
            end: now,
            confidence: 1.0,
            interrupted: false,
        }));
        self.history.push(Speaker::Caller, &line, false);
        self.resume_owed = false;
        self.maybe_think();
    }

    fn silence_deadline(&self) -> Option<Time> {
        let quiet = self.queue.is_empty()
            && self.pending_turns == 0
            && !self.caller_speaking
            && !self.ending
            && self.digits.is_empty();
        quiet.then(|| self.quiet_since + self.config.silence_timeout)
    }

    fn is_backchannel(&self, text: &str) -> bool {
        let t: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
            .collect();
        let t = t.trim();
        self.config.backchannels.iter().any(|b| b == t)
    }
}

impl Agent for Conversation {
    fn handle_start(&mut self, now: Time) {
        self.started_at = now;
        self.quiet_since = now;
        match self.config.greeting.clone() {
            Some(text) => self.speak(Kind::Greeting, &text),
            None => self.think(Kind::Greeting),
        }
    }

    fn handle_audio(&mut self, _now: Time, _frame: Frame<'_>, _playout: &mut Playout) {}

    fn handle_segment(&mut self, now: Time, id: UtteranceId, text: &str, start: u64, end: u64) {
        let Some(u) = self.queue.iter_mut().find(|u| u.id == id) else {
            return;
        };
        u.first_audio_at.get_or_insert(now);
        self.pieces.push_back(Piece {
            id,
            text: text.to_string(),
            start,
            end,
            started_at: None,
        });
    }

    fn wants_audio(&self, id: UtteranceId) -> bool {
        self.queue.iter().any(|u| u.id == id)
    }

    fn handle_utterance_done(&mut self, now: Time, id: UtteranceId) {
        if let Some(u) = self.queue.iter_mut().find(|u| u.id == id) {
            u.produced = true;
        }
        self.check_finished(now);
    }

    fn handle_frame_sent(&mut self, now: Time, playout: &Playout) {
        let pos = playout.position();
        let mut first_frames = Vec::new();
        for p in self.pieces.iter_mut() {
            if p.start >= pos {
                break;
            }
            if p.started_at.is_none() {
                p.started_at = Some(now);
                first_frames.push(p.id);
            }
        }
        for id in first_frames {
            let Some(u) = self.queue.iter_mut().find(|u| u.id == id) else {
                continue;
            };
            if u.first_frame_at.is_some() {
                continue;
            }
            u.first_frame_at = Some(now);
            if let (Some(t), Some(tok), Some(audio)) = (u.turn, u.first_token_at, u.first_audio_at)
            {
                let latency = TurnLatency {
                    speech_end: t.speech_end,
                    decided_at: t.decided_at,
                    transcribed_at: t.transcribed_at,
                    first_token_at: tok,
                    first_audio_at: audio,
                    first_frame_at: now,
                };
                self.record(Record::Latency(latency));
            }
        }
        while self.pieces.front().is_some_and(|p| p.end <= pos) {
            if let Some(p) = self.pieces.pop_front() {
                let start = p.started_at.unwrap_or(now);
                self.agent_said(start, now, &p.text, false);
            }
        }
        self.check_finished(now);
    }

    fn handle_hearing(&mut self, now: Time, voiced: bool, playout: &mut Playout) {
        self.tidy_duck(playout);
        if voiced {
            if self.config.barge_in && self.can_interrupt() && self.audible(playout) {
                self.overlap.voiced(now, playout);
            }
        } else if self.restore_deadline().is_some_and(|t| now >= t) {
            self.restore(now, OverlapKind::Noise, playout);
        }
    }

    fn handle_voice(&mut self, now: Time, voice: Voice, playout: &mut Playout) {
        self.caller_speaking = true;
        if self.config.barge_in
            && self.can_interrupt()
            && !self.audible(playout)
            && self.barged_onset != Some(voice.onset)
        {
            // The caller goes on before a word of the agent's next line
            // was heard (their turn was taken as over too early, or they
            // spoke first): that line is withdrawn unheard, and their
            // words join the turn before (the history merges them).
            self.barged_onset = Some(voice.onset);
            self.interrupt(now, playout);
            return;
        }
        if self.config.barge_in
            && self.can_interrupt()
            && voice.voiced >= self.config.barge_in_min
            && self.barged_onset != Some(voice.onset)
        {
            self.barged_onset = Some(voice.onset);
            let audible = self.audible(playout);
            let ducked_at = self.overlap.ducked().map(|d| d.at);
            self.interrupt(now, playout);
            if audible {
                self.record(Record::BargeIn {
                    onset: voice.onset,
                    ducked_at,
                    at: now,
                });
            }
        }
    }

    fn handle_turn(&mut self, _now: Time, _turn: &Turn) {
        self.pending_turns += 1;
        self.caller_speaking = false;
    }

    fn handle_transcript(&mut self, now: Time, heard: Heard, playout: &mut Playout) {
        self.pending_turns = self.pending_turns.saturating_sub(1);
        self.tidy_duck(playout);
        let text = heard.text.trim();
        if text.is_empty() {
            // The voice that ducked the agent had no words.
            if !self.caller_speaking && self.pending_turns == 0 {
                self.restore(now, OverlapKind::Noise, playout);
            }
            if self.queue.is_empty() {
                self.quiet_since = now;
            }
            self.maybe_think();
            return;
        }
        if let Some(segment) = heard.segment() {
            self.record(Record::Said(segment));
        }
        if !self.queue.is_empty() && self.is_backchannel(text) {
            // "Uh-huh" while the agent talks: heard, not a turn; the agent
            // goes on at its full level.
            if !self.caller_speaking && self.pending_turns == 0 {
                self.restore(now, OverlapKind::Backchannel, playout);
            }
            return;
        }
        self.reprompts = 0;
        self.resume_owed = false;
        let times = TurnTimes {
            speech_end: heard.speech_end,
            decided_at: heard.decided_at,
            transcribed_at: now,
        };
        if self.can_interrupt() {
            // A short turn that did not reach barge_in_min still cuts in
            // once its words are known.
            self.interrupt(now, playout);
            self.resume_owed = false;
        }
        self.history.push(Speaker::Caller, text, false);
        self.last_turn = Some(times);
        self.maybe_think();
    }

    fn handle_reply(
        &mut self,
        now: Time,
        id: UtteranceId,
        input: ReplyInput,
        _playout: &mut Playout,
    ) {
        let handoff = self.config.handoff.is_some();
        let Some(u) = self.queue.iter_mut().find(|u| u.id == id) else {
            return;
        };
        let mut lead = None;
        match input {
            ReplyInput::Text(t) => {
                u.first_token_at.get_or_insert(now);
                u.text.push_str(&t);
            }
            ReplyInput::Tool { name, arguments } => match name.as_str() {
                "transfer_to_human" if handoff => {
                    u.after = After::Transfer(arguments);
                    u.interruptible = false;
                }
                "end_call" => {
                    u.after = After::End;
                    u.interruptible = false;
                }
                "record_lead" => lead = Some(arguments),
                _ => {}
            },
            ReplyInput::Done => u.reply_done = true,
            ReplyInput::Failed(why) => {
                u.failed = true;
                u.reply_done = true;
                self.actions
                    .push_back(AgentAction::Record(Record::ReplyFailed(why)));
            }
        }
        if let Some(args) = lead {
            self.record(Record::Lead(args));
        }
        self.check_finished(now);
    }

    fn handle_dtmf(&mut self, now: Time, digit: Digit, playout: &mut Playout) {
        self.reprompts = 0;
        self.quiet_since = now;
        if Some(digit) == self.config.transfer_digit
            && self.config.handoff.is_some()
            && !self.ending
        {
            // Pressing for a person beats anything but a final phrase.
            self.queue.iter_mut().for_each(|u| u.interruptible = true);
            if !self.queue.is_empty() {
                self.interrupt(now, playout);
            }
            self.resume_owed = false;
            self.transfer(format!("caller pressed {digit}"));
            return;
        }
        if self.can_interrupt() {
            self.interrupt(now, playout);
        }
        if digit.as_char() == '#' {
            self.flush_digits(now);
        } else {
            self.digits.push(digit.as_char());
            self.digits_deadline = Some(now + self.config.dtmf_gap);
        }
    }

    fn handle_timeout(&mut self, now: Time, playout: &mut Playout) {
        self.tidy_duck(playout);
        if self.restore_deadline().is_some_and(|t| now >= t) {
            self.restore(now, OverlapKind::Noise, playout);
        }
        if self.digits_deadline.is_some_and(|t| now >= t) {
            self.flush_digits(now);
        }
        if let Some(max) = self.config.max_call
            && !self.time_up_done
            && now >= self.started_at + max
        {
            self.time_up_done = true;
            if !self.ending {
                self.queue.iter_mut().for_each(|u| u.interruptible = true);
                if !self.queue.is_empty() {
                    self.interrupt(now, playout);
                }
                self.resume_owed = false;
                self.record(Record::Outcome(Outcome::Completed));
                let text = self.config.time_up.clone();
                self.speak(Kind::Final, &text);
            }
        }
        if self.silence_deadline().is_some_and(|t| now >= t) {
            self.reprompts += 1;
            self.quiet_since = now;
            if self.reprompts > self.config.max_reprompts {
                self.record(Record::Outcome(Outcome::Abandoned));
                let text = self.config.silence_goodbye.clone();
                self.speak(Kind::Final, &text);
            } else {
                let text = self.config.reprompt.clone();
                self.speak(Kind::Prompt, &text);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        let max_call = self
            .config
            .max_call
            .filter(|_| !self.time_up_done && !self.ending)
            .map(|m| self.started_at + m);
        [
            self.digits_deadline,
            max_call,
            self.silence_deadline(),
            self.restore_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn poll_action(&mut self) -> Option<AgentAction> {
        self.actions.pop_front()
    }

    fn handle_end(&mut self, now: Time, playout: &Playout) {
        self.settle_pieces(now, playout.position());
        self.queue.clear();
    }
}
