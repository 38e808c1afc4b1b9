//! A call's records on their way to the store: the driver's [`Record`]s
//! and ending, turned into [`StoreEvent`]s with their idempotent keys.
//!
//! The driver owns one [`CallRecording`] per call; recording never waits
//! (see [`Recorder`]). At the end, the lead extraction (which may ask the
//! model) runs in its own task so the driver can close at once.

use std::sync::Arc;

use media_core::{EndReason, Outcome, Record, Speaker, Time};
use tracing::Instrument;

use crate::config::LeadRules;
use crate::leads::{self, Ending};
use crate::llm::{Message, Role, Script};
use crate::registry::{self, Registry};
use crate::speaking::Brain;
use crate::store::{CallEnd, CallStart, EndsJournal, Recorder, Segment, StoreEvent, Turn};

/// What a call needs to record itself.
#[derive(Debug, Clone)]
pub(crate) struct RecordingSetup {
    pub(crate) recorder: Recorder,
    pub(crate) tenant: String,
    pub(crate) agent: String,
    pub(crate) caller_id: Option<String>,
    pub(crate) dnis: Option<String>,
    /// Free JSON about the call, stored with its start.
    pub(crate) metadata: Option<String>,
    /// For lead extraction.
    pub(crate) brain: Option<Arc<Brain>>,
    pub(crate) script: Option<Script>,
    pub(crate) has_providers: bool,
    pub(crate) rules: Arc<LeadRules>,
    /// Where the outcome goes at once, for the dialplan's query.
    pub(crate) registry: Arc<Registry>,
    /// This node's name, stored with the call's start.
    pub(crate) node: String,
    /// Where the call's end is made durable before its socket closes.
    pub(crate) ends: Option<EndsJournal>,
}

/// Where the transcripts of a call's last turns go when they come after
/// its end: caller segments after the call's own, in order.
#[derive(Debug)]
pub(crate) struct LateTurns {
    recorder: Recorder,
    call_id: String,
    next_seq: i64,
}

impl LateTurns {
    /// Records the transcript of a caller turn that ended the call.
    pub(crate) fn record(&mut self, text: &str, confidence: f32, start: Time, end: Time) {
        if text.trim().is_empty() {
            return;
        }
        self.recorder.record(StoreEvent::Segment(Segment {
            call_id: self.call_id.clone(),
            seq: self.next_seq,
            speaker: "caller".into(),
            text: text.trim().to_string(),
            start_ms: ms(start),
            end_ms: ms(end),
            confidence: Some(f64::from(confidence)),
            interrupted: false,
        }));
        self.next_seq += 1;
    }

    /// Sends what the queue could not take yet.
    pub(crate) async fn flush(&mut self) {
        self.recorder.flush().await;
    }
}

/// A call's end on its way to the ends journal: the driver awaits it
/// before it closes the call's socket.
#[derive(Debug)]
pub(crate) struct DurableEnd {
    journal: EndsJournal,
    end: CallEnd,
}

impl DurableEnd {
    /// Appends and fsyncs the end; a journal that cannot be written is
    /// logged (the end is still on its way through the writer's queue).
    pub(crate) async fn wait(self) {
        if let Err(e) = self.journal.append(self.end).await {
            tracing::warn!(error = %e, "call end not journaled");
        }
    }
}

/// One call's records.
#[derive(Debug)]
pub(crate) struct CallRecording {
    setup: RecordingSetup,
    call_id: String,
    /// Epoch ms of the call's `Time::ZERO`.
    epoch_ms: i64,
    segments: i64,
    turns: i64,
    messages: Vec<Message>,
    lead_tool: Option<String>,
    outcome: Option<Outcome>,
}

fn ms(t: Time) -> i64 {
    (t.as_micros() / 1_000) as i64
}

impl CallRecording {
    /// Records the call's start. `epoch_ms` is the wall clock at `Time::ZERO`.
    pub(crate) fn start(
        mut setup: RecordingSetup,
        call_id: String,
        epoch_ms: i64,
        now: Time,
    ) -> Self {
        setup.recorder.record(StoreEvent::CallStarted(CallStart {
            call_id: call_id.clone(),
            tenant: setup.tenant.clone(),
            agent: setup.agent.clone(),
            caller_id: setup.caller_id.clone(),
            dnis: setup.dnis.clone(),
            direction: "inbound".into(),
            start_ms: epoch_ms,
            // Asterisk answers before AudioSocket(); the UUID is the first
            // thing hark hears of the answered call.
            answer_ms: Some(epoch_ms + ms(now)),
            metadata: setup.metadata.clone(),
            node: Some(setup.node.clone()),
        }));
        CallRecording {
            setup,
            call_id,
            epoch_ms,
            segments: 0,
            turns: 0,
            messages: Vec::new(),
            lead_tool: None,
            outcome: None,
        }
    }

    /// Takes one of the conversation's records.
    pub(crate) fn record(&mut self, record: &Record) {
        match record {
            Record::Said(s) => {
                let speaker = match s.speaker {
                    Speaker::Caller => "caller",
                    Speaker::Agent => "agent",
                };
                let role = match s.speaker {
                    Speaker::Caller => Role::User,
                    Speaker::Agent => Role::Assistant,
                };
                self.messages.push(Message {
                    role,
                    content: s.text.clone(),
                });
                let event = StoreEvent::Segment(Segment {
                    call_id: self.call_id.clone(),
                    seq: self.segments,
                    speaker: speaker.into(),
                    text: s.text.clone(),
                    start_ms: ms(s.start),
                    end_ms: ms(s.end),
                    confidence: None,
                    interrupted: s.interrupted,
                });
                self.segments += 1;
                self.setup.recorder.record(event);
            }
            Record::Latency(l) => {
                let span = |a: Time, b: Time| b.saturating_since(a).as_millis() as i64;
                let event = StoreEvent::Turn(Turn {
                    call_id: self.call_id.clone(),
                    seq: self.turns,
                    tenant: self.setup.tenant.clone(),
                    at_ms: self.epoch_ms + ms(l.first_frame_at),
                    v2v_ms: l.voice_to_voice().as_millis() as i64,
                    endpoint_ms: span(l.speech_end, l.decided_at),
                    stt_ms: span(l.decided_at, l.transcribed_at),
                    first_token_ms: span(l.transcribed_at, l.first_token_at),
                    first_audio_ms: span(l.first_token_at, l.first_audio_at),
                    playout_ms: span(l.first_audio_at, l.first_frame_at),
                });
                self.turns += 1;
                self.setup.recorder.record(event);
            }
            Record::Lead(args) => self.lead_tool = Some(args.clone()),
            Record::Outcome(o) => {
                let handoff_target = match o {
                    Outcome::Transferred { target, .. } => Some(target.clone()),
                    _ => None,
                };
                self.setup.registry.set_outcome(
                    &self.call_id,
                    registry::Outcome {
                        outcome: o.as_str().to_string(),
                        handoff_target,
                    },
                );
                self.outcome = Some(o.clone());
            }
            Record::BargeIn { .. } | Record::Overlap { .. } | Record::ReplyFailed(_) => {}
        }
    }

    /// Records the end and, in its own task, the lead. `end` is the call's
    /// time at its end. The returned end must be awaited before the call's
    /// socket closes: then the end survives a crash.
    #[must_use]
    pub(crate) fn finish(
        mut self,
        reason: &EndReason,
        end: Time,
    ) -> (Option<DurableEnd>, LateTurns) {
        let (outcome, target) = match (&self.outcome, reason) {
            (Some(Outcome::Transferred { target, .. }), _) => ("transferred", Some(target.clone())),
            (Some(o), _) => (o.as_str(), None),
            (
                None,
                EndReason::Protocol(_)
                | EndReason::MissingUuid
                | EndReason::UuidTimeout
                | EndReason::Internal(_)
                | EndReason::PeerError(_),
            ) => ("failed", None),
            (None, _) => ("completed", None),
        };
        // Why, where it matters: a failure, or a call hark's shutdown cut
        // (completed, but not by the caller or the agent).
        let failed = outcome == "failed" || matches!(reason, EndReason::Shutdown);
        let outcome = outcome.to_string();
        let call_end = CallEnd {
            call_id: self.call_id.clone(),
            tenant: self.setup.tenant.clone(),
            agent: self.setup.agent.clone(),
            end_ms: self.epoch_ms + ms(end),
            duration_ms: ms(end),
            outcome,
            handoff_target: target,
            reason: failed.then(|| reason.to_string()),
        };
        let durable = self.setup.ends.clone().map(|journal| DurableEnd {
            journal,
            end: call_end.clone(),
        });
        self.setup.recorder.record(StoreEvent::CallEnded(call_end));
        let late = LateTurns {
            recorder: self.setup.recorder.clone(),
            call_id: self.call_id.clone(),
            next_seq: self.segments,
        };
        let ending = Ending {
            call_id: self.call_id,
            tenant: self.setup.tenant.clone(),
            messages: self.messages,
            tool: self.lead_tool,
        };
        let mut setup = self.setup;
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                // The end first, in order after the call's other records.
                setup.recorder.flush().await;
                let lead = leads::extract(
                    setup.brain.as_deref(),
                    setup.script.as_ref(),
                    setup.has_providers,
                    &setup.rules,
                    ending,
                )
                .await;
                if let Some(lead) = lead {
                    tracing::info!(score = lead.score, "lead");
                    setup.recorder.record(StoreEvent::Lead(lead));
                }
                setup.recorder.flush().await;
            }
            .instrument(span),
        );
        (durable, late)
    }
}
