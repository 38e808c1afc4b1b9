//! The voice agent's [`Session`] on a simulated clock, with scripted fake
//! STT, LLM and TTS, and a caller who talks, stays silent and presses keys
//! at chosen times.
//!
//! Only the work the session asks for is faked, and only its timing:
//! turns go to "STT" and come back after `stt_delay` with the next
//! scripted text; a Think request is answered by the scripted model after
//! `token_delay`; every text piece is "synthesized" after `tts_delay` into
//! audio whose length follows the word count (300 ms per word) and whose
//! samples name the utterance, so the test can tell what the caller heard.
//! Every decision (turns, the utterance queue, feeding playout, barge-in)
//! is the session's: the same code the engine's driver runs.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use media_core::audiosocket::Decoder;
use media_core::{
    CallConfig, ChatLine, Conversation, ConversationConfig, Ears, EndpointConfig, Endpointer,
    Event, Record, ReplyInput, SampleRate, Segment, Session, SmartTurn, Speaker, Time, Transcribed,
    Transmit, TurnId, UtteranceId, Vad, VadError,
};
use uuid::Uuid;

use super::{at_ms, audio_msg, dtmf_msg, uuid_msg};

/// Audio per spoken word.
pub const WORD: Duration = Duration::from_millis(300);
const FRAME: Duration = Duration::from_millis(20);

/// Loud frames are speech: the fake VAD scores by level.
#[derive(Debug)]
struct LevelVad;

impl Vad for LevelVad {
    fn rate(&self) -> SampleRate {
        SampleRate::HZ_8000
    }
    fn window_samples(&self) -> usize {
        160
    }
    fn probability(&mut self, w: &[i16]) -> Result<f32, VadError> {
        let mean = w.iter().map(|s| i64::from(s.unsigned_abs())).sum::<i64>() / w.len() as i64;
        Ok(if mean > 1_000 { 0.95 } else { 0.02 })
    }
    fn reset(&mut self) {}
}

/// One step of a scripted model reply.
#[derive(Debug, Clone)]
pub enum Step {
    Text(&'static str),
    Tool(&'static str, &'static str),
    Fail(&'static str),
}

/// The scripted model: the reply for a conversation so far.
pub type Model = Box<dyn FnMut(&[ChatLine]) -> Vec<Step>>;

#[derive(Debug)]
enum Task {
    Transcript(TurnId, Option<Transcribed>),
    TurnCheck(TurnId, Option<f32>),
    Reply(UtteranceId, ReplyInput),
    Audio(UtteranceId, String),
    Done(UtteranceId),
}

pub struct VoiceSim {
    pub session: Session,
    pub now: Time,
    pub events: Vec<Event>,
    /// Frames the call sent: (time, first sample); keep-alive silence apart.
    pub frames: Vec<(Time, i16)>,
    /// Frames of keep-alive silence sent (nothing of the agent's was due).
    pub keepalive: usize,
    pub hangup_at: Option<Time>,
    /// Every Think request's history.
    pub asked: Vec<Vec<ChatLine>>,
    /// When each Think request came.
    pub asked_at: Vec<Time>,
    /// The end-of-turn model's answers, one per [`Event::CheckTurn`], in
    /// order (0.5 once they run out).
    pub verdicts: VecDeque<f32>,
    /// How long the end-of-turn model takes.
    pub check_delay: Duration,
    pub stt_delay: Duration,
    pub token_delay: Duration,
    pub tts_delay: Duration,
    model: Model,
    inbound: BTreeMap<(Time, u64), Vec<u8>>,
    seq: u64,
    tasks: BTreeMap<(Time, u64), Task>,
    heard: VecDeque<&'static str>,
    /// Pieces synthesized so far (each piece's samples carry a marker).
    pieces: u32,
    /// Caller speech: (from, to) intervals.
    speech: Vec<(Time, Time)>,
}

pub fn endpoint_config() -> EndpointConfig {
    EndpointConfig {
        min_speech: Duration::from_millis(100),
        hangover: Duration::from_millis(400),
        pre_roll: Duration::from_millis(100),
        ..EndpointConfig::default()
    }
}

impl VoiceSim {
    pub fn new(config: ConversationConfig, model: Model) -> Self {
        Self::with_turns(config, model, endpoint_config(), None)
    }

    /// A session with its own endpointing and, with `smart`, pauses judged
    /// by the (scripted) end-of-turn model and the preview's words.
    pub fn with_turns(
        config: ConversationConfig,
        model: Model,
        endpoint: EndpointConfig,
        smart: Option<SmartTurn>,
    ) -> Self {
        let mut session = Session::new(
            Time::ZERO,
            CallConfig {
                send_ahead: 1,
                ..CallConfig::default()
            },
            Box::new(Conversation::new(config)),
        )
        .with_ears(Ears(Box::new(move |_| {
            Endpointer::new(endpoint, Box::new(LevelVad))
        })));
        if let Some(smart) = smart {
            session = session.with_smart_turn(smart);
        }
        let mut sim = Self {
            session,
            now: Time::ZERO,
            events: Vec::new(),
            frames: Vec::new(),
            keepalive: 0,
            hangup_at: None,
            asked: Vec::new(),
            asked_at: Vec::new(),
            verdicts: VecDeque::new(),
            check_delay: Duration::from_millis(30),
            stt_delay: Duration::from_millis(150),
            token_delay: Duration::from_millis(200),
            tts_delay: Duration::from_millis(100),
            model,
            inbound: BTreeMap::new(),
            seq: 0,
            tasks: BTreeMap::new(),
            heard: VecDeque::new(),
            pieces: 0,
            speech: Vec::new(),
        };
        sim.inbound(Time::ZERO, uuid_msg(Uuid::new_v4()));
        sim
    }

    fn inbound(&mut self, at: Time, bytes: Vec<u8>) {
        self.seq += 1;
        self.inbound.insert((at, self.seq), bytes);
    }

    fn task(&mut self, at: Time, task: Task) {
        self.seq += 1;
        self.tasks.insert((at, self.seq), task);
    }

    /// The caller talks from `from_ms` for `ms`, and STT will hear `text`
    /// ("" for a turn with no words).
    pub fn caller_says(&mut self, from_ms: u64, ms: u64, text: &'static str) {
        self.speech.push((at_ms(from_ms), at_ms(from_ms + ms)));
        self.heard.push_back(text);
    }

    /// The caller presses `digit` at `at_ms`.
    pub fn press(&mut self, at_ms_: u64, digit: u8) {
        self.inbound(at_ms(at_ms_), dtmf_msg(digit));
    }

    /// Schedules the caller's audio (a frame every 20 ms) up to `until_ms`.
    fn schedule_audio(&mut self, until: Time) {
        let mut t = at_ms(20);
        while t <= until {
            let loud = self.speech.iter().any(|&(a, b)| t > a && t <= b);
            let level: i16 = if loud { 8_000 } else { 30 };
            let samples: Vec<i16> = (0..160)
                .map(|i| if i % 2 == 0 { level } else { -level })
                .collect();
            self.inbound(t, audio_msg(0x10, &samples));
            t = t + FRAME;
        }
    }

    /// Runs the call to `until_ms` (or its end).
    pub fn run(&mut self, until_ms: u64) {
        let until = at_ms(until_ms);
        self.schedule_audio(until);
        loop {
            self.drain();
            if self.session.is_closed() {
                return;
            }
            let next = [
                self.session.poll_timeout(),
                self.inbound.keys().next().map(|k| k.0),
                self.tasks.keys().next().map(|k| k.0),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => self.now = self.now.max(t),
                _ => break,
            }
            let now = self.now;
            while let Some(entry) = self.inbound.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let bytes = entry.remove();
                if let Ok((m, _)) = Decoder::default().decode(&bytes) {
                    self.session.handle_message(now, m);
                }
                self.drain();
            }
            while let Some(entry) = self.tasks.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let task = entry.remove();
                self.perform(task);
                self.drain();
            }
            if self.session.poll_timeout().is_some_and(|t| t <= now) {
                self.session.handle_timeout(now);
            }
        }
        self.now = self.now.max(until);
        // Unsent caller audio past `until` is not played.
        self.inbound.clear();
    }

    /// The caller hangs up at `at_ms` (closes the connection).
    pub fn caller_hangs_up(&mut self, at: u64) {
        self.run(at);
        let now = self.now;
        self.session.handle_peer_closed(now, false);
        self.drain();
    }

    fn perform(&mut self, task: Task) {
        let now = self.now;
        match task {
            Task::Transcript(turn, text) => self.session.handle_transcript(now, turn, text),
            Task::TurnCheck(turn, p) => self.session.handle_turn_check(now, turn, p),
            Task::Reply(id, input) => self.session.handle_reply(now, id, input),
            Task::Audio(id, text) => {
                self.pieces += 1;
                let marker = (id.0 * 100 + self.pieces) as i16;
                let words = text.split_whitespace().count().max(1) as u32;
                let n = SampleRate::HZ_8000.samples_in(WORD * words);
                self.session.handle_speech(now, id, &text, vec![marker; n]);
            }
            Task::Done(id) => self.session.handle_speech_done(now, id),
        }
    }

    fn drain(&mut self) {
        loop {
            let now = self.now;
            let mut any = false;
            loop {
                let silent = self.session.stats().playout.silence_frames;
                let Some(sent) = self.session.poll_transmit(now).map(|t| match t {
                    Transmit::Audio(f) => Some(f.samples[0]),
                    Transmit::Hangup => None,
                }) else {
                    break;
                };
                any = true;
                if self.session.stats().playout.silence_frames > silent {
                    // Keep-alive silence, not the agent's: counted apart.
                    self.keepalive += 1;
                    continue;
                }
                match sent {
                    Some(s) => self.frames.push((now, s)),
                    None => self.hangup_at = Some(now),
                }
            }
            while let Some(e) = self.session.poll_event() {
                any = true;
                self.on_event(&e);
                self.events.push(e);
            }
            if !any {
                return;
            }
        }
    }

    fn on_event(&mut self, e: &Event) {
        let now = self.now;
        match e {
            Event::Transcribe { turn, .. } => {
                let text = self.heard.pop_front().unwrap_or("");
                let heard = (!text.is_empty()).then(|| Transcribed {
                    text: text.into(),
                    confidence: 0.9,
                });
                self.task(now + self.stt_delay, Task::Transcript(*turn, heard));
            }
            Event::Speak { id, text } => {
                self.task(now + self.tts_delay, Task::Audio(*id, text.clone()));
                self.task(now + self.tts_delay, Task::Done(*id));
            }
            Event::CheckTurn { turn, .. } => {
                let p = self.verdicts.pop_front().unwrap_or(0.5);
                self.task(now + self.check_delay, Task::TurnCheck(*turn, Some(p)));
            }
            Event::Think { id, history } => {
                self.asked.push(history.clone());
                self.asked_at.push(now);
                let steps = (self.model)(history);
                let mut t = now + self.token_delay;
                for step in steps {
                    match step {
                        Step::Text(s) => {
                            self.task(t, Task::Reply(*id, ReplyInput::Text(s.into())));
                            self.task(t + self.tts_delay, Task::Audio(*id, s.into()));
                        }
                        Step::Tool(name, args) => self.task(
                            t,
                            Task::Reply(
                                *id,
                                ReplyInput::Tool {
                                    name: name.into(),
                                    arguments: args.into(),
                                },
                            ),
                        ),
                        Step::Fail(why) => {
                            self.task(t, Task::Reply(*id, ReplyInput::Failed(why.into())));
                            self.task(t + self.tts_delay, Task::Done(*id));
                            return;
                        }
                    }
                    t = t + Duration::from_millis(10);
                }
                self.task(t, Task::Reply(*id, ReplyInput::Done));
                self.task(t + self.tts_delay, Task::Done(*id));
            }
            Event::Cancel(id) => {
                self.tasks.retain(|_, task| match task {
                    Task::Reply(i, _) | Task::Audio(i, _) | Task::Done(i) => i != id,
                    Task::Transcript(..) | Task::TurnCheck(..) => true,
                });
            }
            _ => {}
        }
    }
}

impl VoiceSim {
    /// Records of one kind, in order.
    pub fn said(&self) -> Vec<Segment> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Record(Record::Said(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// What the agent said, as recorded (heard text, interrupted flag).
    pub fn agent_lines(&self) -> Vec<(String, bool)> {
        self.said()
            .into_iter()
            .filter(|s| s.speaker == Speaker::Agent)
            .map(|s| (s.text, s.interrupted))
            .collect()
    }

    pub fn records(&self) -> Vec<Record> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Record(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Texts the agent was asked to speak (fixed phrases).
    pub fn spoken_phrases(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Speak { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn cancelled(&self) -> Vec<UtteranceId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Cancel(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// The last frame sent at or before `t`, and the first after.
    pub fn frames_after(&self, t: Time) -> usize {
        self.frames.iter().filter(|(at, _)| *at > t).count()
    }

    /// Time of the last audio frame sent.
    pub fn last_frame(&self) -> Option<Time> {
        self.frames.last().map(|(t, _)| *t)
    }
}
