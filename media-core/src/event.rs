//! What a call tells whoever drives it: the work to start, the things to
//! log or store (see [`Event`]), and at the end why it ended and its
//! counters.

use std::fmt;

use crate::agent::Digit;
use crate::audiosocket::DecodeError;
use crate::call::CallId;
use crate::dialog::{ChatLine, Record, UtteranceId};
use crate::endpointing::Turn;
use crate::frame::{SampleRate, Time};
use crate::playout::PlayoutStats;
use crate::session::{PauseVerdict, TurnId};

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
    /// Transcribe this caller turn (with an endpointer) and report its
    /// text with [`Session::handle_transcript`](crate::Session::handle_transcript).
    /// A paused turn is sent early (the endpointer's `preview`), in case it
    /// is the whole turn: then its text is the turn's and it is not sent
    /// again; if the caller goes on, [`Event::ForgetTurn`] follows.
    Transcribe {
        /// The turn, for the report.
        turn: TurnId,
        /// Its audio and times.
        audio: Turn,
    },
    /// The caller went on after this preview: its text is not wanted
    /// (drop the request; a late report is ignored).
    ForgetTurn(TurnId),
    /// Score this window of the caller's audio with the VAD (with an
    /// endpointer whose VAD runs elsewhere) and report its speech
    /// probability with [`Session::handle_score`](crate::Session::handle_score),
    /// in the order the windows came.
    Score {
        /// The window's rate.
        rate: SampleRate,
        /// The window.
        window: Vec<i16>,
    },
    /// The agent wants this said: synthesize it and hand each piece to
    /// [`Session::handle_speech`](crate::Session::handle_speech), then
    /// call [`Session::handle_speech_done`](crate::Session::handle_speech_done).
    Speak {
        /// The utterance.
        id: UtteranceId,
        /// What to say.
        text: String,
    },
    /// The agent wants the model's next line: stream it (reporting with
    /// [`Session::handle_reply`](crate::Session::handle_reply)) and speak
    /// it as for `Speak`.
    Think {
        /// The utterance the reply becomes.
        id: UtteranceId,
        /// The conversation so far.
        history: Vec<ChatLine>,
    },
    /// Stop the model and TTS work of this utterance; drop its audio.
    Cancel(UtteranceId),
    /// Judge whether this paused turn is complete with the end-of-turn
    /// model (a session with [`SmartTurn`](crate::SmartTurn)) and report
    /// the probability with
    /// [`Session::handle_turn_check`](crate::Session::handle_turn_check).
    /// Its preview, with the same id, went to STT.
    CheckTurn {
        /// The paused turn (its preview's id).
        turn: TurnId,
        /// The turn's audio so far (pre-roll included, trailing silence
        /// trimmed) at `rate`.
        samples: Vec<i16>,
        /// The audio's rate.
        rate: SampleRate,
    },
    /// How a pause was judged (for the log: tuning reads it).
    PauseJudged(PauseVerdict),
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
