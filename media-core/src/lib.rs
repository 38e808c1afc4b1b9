//! hark's pure media core.
//!
//! Everything here takes the time and the bytes or frames as inputs and
//! returns what to do; nothing reads a clock, sleeps, spawns, locks or touches
//! a socket (the crate does not depend on tokio, so the compiler enforces it).
//! That makes every behaviour testable on a simulated clock: a 30-second call
//! runs in milliseconds.
//!
//! # Layout
//! - [`audiosocket`]: the AudioSocket wire codec (incremental decoder, encoder
//!   into a caller-owned buffer).
//! - [`g711`]: mu-law and A-law, table based.
//! - `frame`: [`SampleRate`], [`Frame`], [`Time`].
//! - `resample`: [`Resampler`], a small streaming type over rubato.
//! - `playout`: [`Playout`], outbound pacing at one frame per 20 ms tick.
//! - `session`: [`Session`], one call's whole conversation (`handle_*` /
//!   `poll_*`): the call's protocol state and playout (`call`), its turns on
//!   their way through STT, its agent's speech on its way into playout.
//! - `agent`: the [`Agent`] trait and the [`Echo`] agent.
//! - `vad`: the [`Vad`] trait (a speech probability per window) and [`EnergyVad`].
//! - `endpointing`: [`Endpointer`], turn start and end from a VAD.
//! - `dialog`: what a talking agent and its driver tell each other
//!   (utterances, transcripts, reply news) and the records a call leaves.
//! - `conversation`: [`Conversation`], the voice agent: turn-taking,
//!   barge-in, silence, DTMF, hand-off.
#![forbid(unsafe_code)]

pub mod audiosocket;
pub mod g711;

mod agent;
mod call;
mod conversation;
mod dialog;
mod endpointing;
mod event;
mod frame;
mod playout;
mod resample;
mod session;
mod vad;

pub use agent::{Agent, AgentAction, Digit, Echo, Say, Transcribe};
pub use call::{CallConfig, CallId, CallStats, Ears, EndReason, Event, MAX_TRANSMIT, Transmit};
pub use conversation::{Conversation, ConversationConfig, Handoff, OverlapKind};
pub use dialog::{
    ChatLine, Heard, Outcome, Record, ReplyInput, Segment, Speaker, TurnLatency, UtteranceId,
};
pub use endpointing::{EndpointConfig, EndpointEvent, Endpointer, Turn, TurnEnd, Voice};
pub use frame::{FRAME_DURATION, Frame, SampleRate, Time};
pub use playout::{MAX_SEND_AHEAD, Playout, PlayoutStats};
pub use resample::{ResampleError, Resampler};
pub use session::{
    FEED_AHEAD, PauseVerdict, Session, SmartTurn, Transcribed, TurnId, TurnInfo, words_complete,
};
pub use vad::{EnergyVad, EnergyVadConfig, Vad, VadError, check_window};
