//! The call driver: one task per call, owning its transport (a [`Leg`]) and
//! its [`Session`].
//!
//! The driver only does I/O: it hands what the leg brings to the session, carries out what the session asks (send a frame, transcribe a
//! turn, start or cancel a reply, synthesize, record) and feeds the results
//! back. Every decision is the session's (media-core, pure, tested on a
//! simulated clock).
//!
//! # Concurrency
//! This task is the only place that touches the call's transport and
//! session, and its `select!` is the only wait: the leg's input (socket
//! readable; or a datagram, the jitter buffer's next frame, a re-INVITE),
//! the session's next deadline, a transcript, a reply's news, the next
//! piece of speech, and the server's shutdown phase. No second task and no
//! pipe per call, whatever the transport. The clock is read once per wake-up and
//! passed into the session. Writes go straight to the socket with a
//! timeout, so a peer that stops reading ends its own call and never stalls
//! anyone else.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use media_core::audiosocket::Decoder;
use media_core::{
    Agent, CallConfig, CallId, Ears, EndReason, Event, Outcome, Record, SampleRate, Session,
    Speaker, Time, Transcribed, Turn, TurnId, TurnInfo,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use crate::admission::Phase;
use crate::recording::{CallRecording, RecordingSetup};
use crate::speaking::{Brain, Voice};
use crate::speech::Mouth;
use crate::speech::stt::{SttError, SttRequest, Transcriber, Transcript};
use crate::speech::turn::{TurnCheck, TurnModel};
use crate::speech::vad::{Listening, Scored, VadThreads};

/// After the call ends, how long its last turns may take to transcribe.
const TRANSCRIPT_GRACE: Duration = Duration::from_secs(60);

/// Everything a call's driver needs besides its socket.
#[derive(Debug)]
pub(crate) struct CallSetup {
    pub(crate) call_config: CallConfig,
    pub(crate) agent: Box<dyn Agent>,
    /// Turn detection, for listening agents.
    pub(crate) ears: Option<Ears>,
    /// Where the endpointer's windows are scored (Silero), if elsewhere.
    pub(crate) vad: Option<Arc<VadThreads>>,
    /// Where turns go, for listening agents.
    pub(crate) transcriber: Option<Arc<dyn Transcriber>>,
    /// How the agent speaks, for speaking agents.
    pub(crate) mouth: Option<Mouth>,
    /// How pauses are judged, for agents with `turn = "smart"`.
    pub(crate) turn: Option<TurnCheck>,
    /// How the agent thinks, for conversations.
    pub(crate) brain: Option<Arc<Brain>>,
    /// Where the call's records go, if a store is configured.
    pub(crate) recording: Option<RecordingSetup>,
    /// The call's place on the node (its admission slot), given back the
    /// moment the call ends: before the end is logged or the socket
    /// closes, so a dialplan that calls again at once finds it free.
    pub(crate) place: Option<Place>,
}

/// Something held for as long as the call runs, dropped when it ends. The
/// driver does not know what it is (admission sits above the driver).
pub(crate) struct Place {
    _held: Box<dyn Send>,
}

impl Place {
    pub(crate) fn new(held: impl Send + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Place")
    }
}

/// Turns sent to STT, waiting for their text (a few per call at most).
type Waiting = Vec<(TurnId, oneshot::Receiver<Result<Transcript, SttError>>)>;

/// How one call ended, for the server's counters.
#[derive(Debug, Clone)]
pub(crate) struct CallOutcome {
    pub(crate) reason: EndReason,
    /// The conversation handed the caller off to this target.
    pub(crate) handoff: Option<String>,
}

/// Runs one call to its end. Never panics on peer input; every way out of
/// the loop goes through the session so the end is logged once.
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut leg: Leg<S>,
    peer: SocketAddr,
    mut setup: CallSetup,
    mut phase: watch::Receiver<Phase>,
) -> CallOutcome {
    let epoch = Instant::now();
    let epoch_ms = crate::store::now_ms();
    let mut recording: Option<CallRecording> = None;
    let clock = move || Time::from_micros(epoch.elapsed().as_micros() as u64);
    if let Some(rate) = leg.rate() {
        // The transport says the caller's rate: the greeting is made at it.
        setup.call_config.default_rate = rate;
    }
    let mut session = Session::new(Time::ZERO, setup.call_config, setup.agent);
    if let Some(ears) = setup.ears {
        session = session.with_ears(ears);
    }
    if let Some(t) = &setup.turn {
        session = session.with_smart_turn(t.config);
    }
    let turn_model = setup.turn.map(|t| t.model);
    // The end-of-turn model's answers (one per pause; a few in flight).
    let (checked_tx, mut checked) = tokio::sync::mpsc::channel::<(TurnId, Option<f32>)>(8);
    let transcriber = setup.transcriber;
    let mut listening = setup.vad.map(Listening::new);
    let (mut voice, mut replies) = Voice::new(setup.mouth, setup.brain);
    let mut waiting: Waiting = Vec::new();
    leg.start(&mut session, Time::ZERO);
    let mut outcome = None;
    let mut handoff = None;
    let mut durable = None;
    let mut late = None;
    debug!(%peer, "connection accepted");

    loop {
        let now = clock();
        // Events first (a cancel must land before more audio is fed), then
        // whatever is due on the socket; repeat while that produced new
        // events.
        loop {
            let mut any = false;
            while let Some(event) = session.poll_event() {
                any = true;
                match event {
                    Event::Transcribe { turn, audio } => {
                        submit_turn(
                            &mut session,
                            now,
                            turn,
                            audio,
                            transcriber.as_deref(),
                            &mut waiting,
                        );
                    }
                    Event::ForgetTurn(turn) => waiting.retain(|(id, _)| *id != turn),
                    Event::Score { rate, window } => match listening.as_mut() {
                        Some(l) => l.submit(&mut session, now, rate, window),
                        // An endpointer scoring elsewhere needs the threads.
                        None => session.handle_score(now, None),
                    },
                    Event::Speak { id, text } => voice.speak(&mut session, now, id, &text),
                    Event::Think { id, history } => voice.think(&mut session, now, id, history),
                    Event::Cancel(id) => voice.cancel(id),
                    Event::CheckTurn {
                        turn,
                        samples,
                        rate,
                    } => match &turn_model {
                        Some(model) => check_turn(model, turn, rate, samples, &checked_tx),
                        None => session.handle_turn_check(now, turn, None),
                    },
                    Event::PauseJudged(v) => info!(
                        turn = %v.turn,
                        probability = %v.probability.map_or_else(|| "failed".into(), |p| format!("{p:.3}")),
                        words_complete = v.words_complete,
                        complete = v.complete,
                        "pause judged"
                    ),
                    Event::Record(r) => {
                        log_record(&r);
                        if let Record::Outcome(Outcome::Transferred { target, .. }) = &r {
                            handoff = Some(target.clone());
                        }
                        if let Some(rec) = &mut recording {
                            rec.record(&r);
                        }
                    }
                    Event::Started(id) => {
                        if let Some(rs) = setup.recording.take() {
                            voice.set_scope(&rs.tenant, &id.to_string());
                            recording =
                                Some(CallRecording::start(rs, id.to_string(), epoch_ms, now));
                        }
                        log_event(Event::Started(id));
                    }
                    other => {
                        if matches!(other, Event::Ended { .. }) {
                            drop(setup.place.take());
                        }
                        if let Some(reason) = log_event(other) {
                            if let Some(rec) = recording.take() {
                                let (d, l) = rec.finish(&reason, now);
                                durable = d;
                                late = Some(l);
                            }
                            outcome = Some(reason);
                        }
                    }
                }
            }
            while let Some(frame) = session.poll_transmit(now) {
                any = true;
                if let Err(SendFailed(reason)) = leg.send(frame).await {
                    session.abort(now, reason);
                    break;
                }
            }
            if !any {
                break;
            }
        }
        if session.is_closed() {
            break;
        }

        let deadline = session.poll_timeout();
        let sleep_until = deadline.map(|t| epoch + t.since_epoch());
        let wanted = session.wants_speech();
        tokio::select! {
            changed = phase.changed() => {
                // A closed channel means the server is gone: hang up too.
                if changed.is_err() || *phase.borrow() == Phase::HangUp {
                    session.close(clock(), EndReason::Shutdown);
                }
            }
            input = leg.next() => leg.take(input, &mut session, clock()),
            () = sleep_or_forever(sleep_until) => session.handle_timeout(clock()),
            Some(scored) = next_score(&mut listening), if listening.as_ref().is_some_and(Listening::waiting) => {
                if let Some(l) = listening.as_mut() {
                    l.take(&mut session, clock(), scored);
                }
            }
            (turn, result) = next_transcript(&mut waiting), if !waiting.is_empty() => {
                let now = clock();
                let text = log_transcript(session.turn_info(turn), result, now);
                session.handle_transcript(now, turn, text);
            }
            audio = voice.next_audio(wanted), if wanted.is_some() => {
                if let Some(id) = wanted {
                    voice.on_audio(&mut session, clock(), id, audio);
                }
            }
            Some((id, news)) = replies.recv() => session.handle_reply(clock(), id, news),
            Some((turn, p)) = checked.recv() => session.handle_turn_check(clock(), turn, p),
        }
    }
    // The call is over; its last turns are still worth their text, but
    // the call's end, its slot and whoever waits for it (a Stasis session)
    // do not wait for them: the session turns them into records when they
    // come, and they are stored then.
    if session.awaiting_transcripts() > 0 && !waiting.is_empty() {
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let grace = tokio::time::sleep(TRANSCRIPT_GRACE);
                tokio::pin!(grace);
                while session.awaiting_transcripts() > 0 && !waiting.is_empty() {
                    tokio::select! {
                        (turn, result) = next_transcript(&mut waiting) => {
                            let now = clock();
                            let text = log_transcript(session.turn_info(turn), result, now);
                            session.handle_transcript(now, turn, text);
                            while let Some(event) = session.poll_event() {
                                if let (Event::Record(Record::Said(s)), Some(l)) = (&event, &mut late)
                                    && s.speaker == Speaker::Caller
                                {
                                    l.record(&s.text, s.confidence, s.start, s.end);
                                }
                            }
                        }
                        () = &mut grace => {
                            warn!(turns = waiting.len(), "call ended with turns still being transcribed; giving up on them");
                            break;
                        }
                    }
                }
                if let Some(l) = &mut late {
                    l.flush().await;
                }
            }
            .instrument(span),
        );
    }
    // The end is on disk before the peer sees the socket close; the call's
    // slot does not wait for either (the fsync can take a while on a busy
    // disk). Closing is best effort: the call is over either way.
    tokio::spawn(leg.close(durable).instrument(tracing::Span::current()));
    CallOutcome {
        reason: outcome.unwrap_or(EndReason::Internal("call ended without a reason".into())),
        handoff,
    }
}

/// Reads until the first whole AudioSocket message is in, or `limit`
/// passes, or the peer stops. A UUID makes the connection a call: returns
/// the bytes read (the driver feeds them to the call) and the UUID
/// (lowercase, hyphenated). Anything else ends the connection with the
/// reason, before it takes a call slot; the timeout runs here only.
pub(crate) async fn identify<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_payload: usize,
    limit: Duration,
) -> Result<(Vec<u8>, String), EndReason> {
    let decoder = Decoder::new(max_payload);
    let mut buf = Vec::with_capacity(4096);
    let deadline = Instant::now() + limit;
    loop {
        match decoder.decode(&buf) {
            Ok((media_core::audiosocket::Message::Uuid(id), _)) => {
                let id = CallId(id).to_string();
                return Ok((buf, id));
            }
            Ok((media_core::audiosocket::Message::Hangup, _)) => {
                return Err(EndReason::PeerHangup);
            }
            Ok(_) => return Err(EndReason::MissingUuid),
            Err(e) if e.is_incomplete() => {}
            Err(e) => return Err(EndReason::Protocol(e)),
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => {
                return Err(EndReason::PeerClosed {
                    mid_message: !buf.is_empty(),
                });
            }
            Err(_) => return Err(EndReason::UuidTimeout),
        }
    }
}

/// Hands a caller turn to STT (never blocks). A turn that cannot be
/// transcribed is reported to the session at once, with no words.
fn submit_turn(
    session: &mut Session,
    now: Time,
    turn: TurnId,
    audio: Turn,
    transcriber: Option<&dyn Transcriber>,
    waiting: &mut Waiting,
) {
    let audio_ms = audio.duration().as_millis() as u64;
    let (Some(call), Some(stt)) = (session.id(), transcriber) else {
        debug!(audio_ms, "caller turn (no transcriber)");
        session.handle_transcript(now, turn, None);
        return;
    };
    let (tx, rx) = oneshot::channel();
    match stt.submit(SttRequest {
        call,
        turn: audio,
        reply: tx,
    }) {
        Ok(()) => waiting.push((turn, rx)),
        Err(e) => {
            warn!(audio_ms, "caller turn not transcribed: {e}");
            session.handle_transcript(now, turn, None);
        }
    }
}

/// Waits for the score of the window out (pending forever without one).
async fn next_score(listening: &mut Option<Listening>) -> Option<Scored> {
    match listening {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// Waits for whichever turn's transcript comes first.
async fn next_transcript(waiting: &mut Waiting) -> (TurnId, Result<Transcript, SttError>) {
    std::future::poll_fn(|cx| {
        for i in 0..waiting.len() {
            if let Poll::Ready(result) = Pin::new(&mut waiting[i].1).poll(cx) {
                let (turn, _) = waiting.swap_remove(i);
                return Poll::Ready((turn, result.unwrap_or(Err(SttError::Stopped))));
            }
        }
        Poll::Pending
    })
    .await
}

/// Logs one caller turn with its timings; returns what the session hears.
fn log_transcript(
    turn: Option<TurnInfo>,
    result: Result<Transcript, SttError>,
    now: Time,
) -> Option<Transcribed> {
    let ms = |d: Duration| d.as_millis() as u64;
    let Some(turn) = turn else {
        // A turn nobody waits for (the session ignores it too).
        return None;
    };
    let speech_ms = ms(turn.speech_end - turn.speech_start);
    let endpoint_ms = ms(turn.decided_at.saturating_since(turn.speech_end));
    let turn_end_to_text_ms = ms(now.saturating_since(turn.speech_end));
    match result {
        Ok(t) => {
            // What a caller said is theirs: in clear only at debug level,
            // never at info or above (where only its size shows).
            macro_rules! caller_turn {
                ($level:ident, $($text:tt)*) => {
                    $level!(
                        $($text)*
                        confidence = format_args!("{:.2}", t.confidence),
                        start_ms = turn.speech_start.as_micros() / 1_000,
                        speech_ms,
                        audio_ms = ms(t.audio),
                        endpoint_ms,
                        queued_ms = ms(t.queued),
                        stt_ms = ms(t.processing),
                        turn_end_to_text_ms,
                        engine = %t.engine,
                        end = ?turn.reason,
                        "caller turn"
                    )
                };
            }
            if tracing::enabled!(tracing::Level::DEBUG) {
                caller_turn!(debug, text = %t.text,);
            } else {
                caller_turn!(info, chars = t.text.chars().count(),);
            }
            Some(Transcribed {
                text: t.text,
                confidence: t.confidence,
            })
        }
        Err(SttError::NoSpeech) => {
            debug!(speech_ms, "turn had no words");
            None
        }
        Err(e) => {
            warn!(speech_ms, "caller turn lost: {e}");
            None
        }
    }
}

/// Logs what the call leaves for the control plane.
fn log_record(record: &Record) {
    let ms = |t: Time| t.as_micros() / 1_000;
    let span = |a: Time, b: Time| b.saturating_since(a).as_millis() as u64;
    match record {
        // Transcript text only at debug level (see `log_transcript`).
        Record::Said(s) if tracing::enabled!(tracing::Level::DEBUG) => debug!(
            speaker = ?s.speaker,
            text = %s.text,
            start_ms = ms(s.start),
            end_ms = ms(s.end),
            interrupted = s.interrupted,
            "said"
        ),
        Record::Said(s) => info!(
            speaker = ?s.speaker,
            chars = s.text.chars().count(),
            start_ms = ms(s.start),
            end_ms = ms(s.end),
            interrupted = s.interrupted,
            "said"
        ),
        Record::Latency(l) => info!(
            voice_to_voice_ms = l.voice_to_voice().as_millis() as u64,
            endpoint_ms = span(l.speech_end, l.decided_at),
            stt_ms = span(l.decided_at, l.transcribed_at),
            first_token_ms = span(l.transcribed_at, l.first_token_at),
            first_audio_ms = span(l.first_token_at, l.first_audio_at),
            playout_ms = span(l.first_audio_at, l.first_frame_at),
            "turn latency"
        ),
        Record::BargeIn {
            onset,
            ducked_at,
            at,
        } => info!(
            onset_ms = ms(*onset),
            ducked_ms = ducked_at.map(|d| span(*onset, d)),
            reaction_ms = span(*onset, *at),
            "barge-in"
        ),
        Record::Overlap {
            ducked_at,
            restored_at,
            kind,
        } => info!(
            at_ms = ms(*ducked_at),
            ducked_for_ms = span(*ducked_at, *restored_at),
            kind = kind.as_str(),
            "caller overlapped the agent; it went on"
        ),
        // A lead is names and numbers: its content only at debug level.
        Record::Lead(args) => {
            debug!(lead = %args, "lead");
            info!(bytes = args.len(), "lead recorded by the model");
        }
        Record::ReplyFailed(why) => warn!("reply failed: {why}"),
        Record::Outcome(o @ Outcome::Transferred { target, reason }) => {
            info!(outcome = %o.as_str(), %target, %reason, "conversation outcome");
        }
        Record::Outcome(o) => info!(outcome = %o.as_str(), "conversation outcome"),
    }
}

/// Runs the end-of-turn model on a paused turn, off this task (the model
/// has inference threads of its own); the answer comes back on `tx`.
fn check_turn(
    model: &Arc<TurnModel>,
    turn: TurnId,
    rate: SampleRate,
    samples: Vec<i16>,
    tx: &tokio::sync::mpsc::Sender<(TurnId, Option<f32>)>,
) {
    let model = Arc::clone(model);
    let tx = tx.clone();
    tokio::spawn(
        async move {
            let p = match model.complete(rate, samples).await {
                Ok(p) => Some(p),
                Err(e) => {
                    warn!(error = %e, "end-of-turn model failed: the words decide this pause");
                    None
                }
            };
            // The call may be over: then nobody waits for the answer.
            let _ = tx.send((turn, p)).await;
        }
        .instrument(tracing::Span::current()),
    );
}

async fn sleep_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Logs a call event; returns the end reason for `Ended`.
fn log_event(event: Event) -> Option<EndReason> {
    match event {
        Event::Started(_) => {
            // The span already carries the id (recorded at admission).
            info!("call started");
        }
        Event::Format(rate) => debug!(%rate, "caller audio format"),
        // Keys may be card digits or a PIN: which key only at debug level.
        Event::Dtmf(d) if tracing::enabled!(tracing::Level::DEBUG) => debug!(digit = %d, "dtmf"),
        Event::Dtmf(_) => info!("dtmf"),
        Event::BadDtmf(b) => warn!(byte = b, "ignored a DTMF message that is not a digit"),
        Event::SpeechStarted(at) => debug!(at_ms = at.as_micros() / 1_000, "caller speaking"),
        Event::Ended { reason, stats } => {
            let p = stats.playout;
            if reason.is_normal() {
                info!(
                    %reason,
                    frames_in = stats.frames_in,
                    frames_out = p.frames_sent,
                    silence_out = p.silence_frames,
                    digits = stats.digits_in,
                    underruns = p.underruns,
                    late_slots = p.late_slots,
                    "call ended"
                );
            } else {
                warn!(
                    %reason,
                    frames_in = stats.frames_in,
                    frames_out = p.frames_sent,
                    "call ended abnormally"
                );
            }
            return Some(reason);
        }
        other => debug!(?other, "call event"),
    }
    None
}

mod leg;
#[cfg(test)]
mod tests;

use leg::SendFailed;
pub(crate) use leg::{Leg, RtpLeg, SocketLeg};
