//! The call driver: one task per call, owning its socket and its [`Call`].
//!
//! # Concurrency
//! This task is the only place that touches the call's socket and state
//! machine, and its `select!` is the only wait: socket readable, the call's
//! next deadline, and the server's shutdown phase. The clock is read once per
//! wake-up and passed into the pure core. Writes go straight to the socket
//! with a timeout, so a peer that stops reading ends its own call and never
//! stalls anyone else.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use media_core::audiosocket::{Decoder, HEADER_LEN};
use media_core::{
    Agent, Call, CallConfig, CallId, Ears, EndReason, Event, Heard, MAX_TRANSMIT, Outcome, Record,
    Time, Turn, TurnEnd,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, trace, warn};

use crate::recording::{CallRecording, RecordingSetup};
use crate::server::Phase;
use crate::speaking::{Brain, Voice};
use crate::speech::Mouth;
use crate::stt::{SttError, SttRequest, Transcriber, Transcript};

/// After the call ends, how long its last turns may take to transcribe.
const TRANSCRIPT_GRACE: Duration = Duration::from_secs(60);

/// Everything a call's driver needs besides its socket.
#[derive(Debug)]
pub(crate) struct CallSetup {
    pub(crate) call_config: CallConfig,
    pub(crate) agent: Box<dyn Agent>,
    /// Turn detection, for listening agents.
    pub(crate) ears: Option<Ears>,
    /// Where turns go, for listening agents.
    pub(crate) transcriber: Option<Arc<dyn Transcriber>>,
    /// How the agent speaks, for speaking agents.
    pub(crate) mouth: Option<Mouth>,
    /// How the agent thinks, for conversations.
    pub(crate) brain: Option<Arc<Brain>>,
    pub(crate) max_payload: usize,
    /// Where the call's records go, if a store is configured.
    pub(crate) recording: Option<RecordingSetup>,
}

/// A turn sent to STT, waiting for its text.
struct PendingTurn {
    speech_start: Time,
    speech_end: Time,
    decided_at: Time,
    audio: Duration,
    reason: TurnEnd,
    rx: oneshot::Receiver<Result<Transcript, SttError>>,
}

/// A peer that does not take writes for 2 s is gone or stuck. Writes only
/// block once its receive window and hark's small send buffer (see
/// `server::SEND_BUFFER`) are full, so the call ends a few seconds after
/// the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How one call ended, for the server's counters.
#[derive(Debug, Clone)]
pub(crate) struct CallOutcome {
    pub(crate) reason: EndReason,
    /// The conversation handed the caller off to this target.
    pub(crate) handoff: Option<String>,
}

/// Runs one call to its end. Never panics on peer input; every way out of
/// the loop goes through the state machine so the end is logged once.
///
/// `read` holds bytes already read from the socket (the UUID message,
/// read early to choose the agent).
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    peer: SocketAddr,
    mut setup: CallSetup,
    mut phase: watch::Receiver<Phase>,
    read: Vec<u8>,
) -> CallOutcome {
    let epoch = Instant::now();
    let epoch_ms = crate::store::now_ms();
    let mut recording: Option<CallRecording> = None;
    let clock = move || Time::from_micros(epoch.elapsed().as_micros() as u64);
    let mut call = Call::new(Time::ZERO, setup.call_config, setup.agent);
    if let Some(ears) = setup.ears {
        call = call.with_ears(ears);
    }
    let transcriber = setup.transcriber;
    let (mut voice, mut replies) = Voice::new(setup.mouth, setup.brain);
    let mut pending: VecDeque<PendingTurn> = VecDeque::new();
    // A paused turn already sent to STT, in case it is complete.
    let mut preview: Option<PendingTurn> = None;
    let decoder = Decoder::new(setup.max_payload);
    let mut rbuf: Vec<u8> = Vec::with_capacity(setup.max_payload + HEADER_LEN + 4096);
    rbuf.extend_from_slice(&read);
    if !rbuf.is_empty() {
        feed(&mut call, &decoder, &mut rbuf, Time::ZERO);
    }
    let mut wbuf = vec![0u8; MAX_TRANSMIT];
    let mut outcome = None;
    let mut handoff = None;
    let mut durable = None;
    let mut late = None;
    debug!(%peer, "connection accepted");

    loop {
        let now = clock();
        // Events first (a cancel must land before more audio is fed), then
        // audio into playout, then whatever is due on the socket; repeat
        // while that produced new events.
        loop {
            let mut any = false;
            while let Some(event) = call.poll_event() {
                any = true;
                match event {
                    Event::Turn(turn) => take_turn(
                        &mut call,
                        now,
                        turn,
                        &mut preview,
                        transcriber.as_deref(),
                        &mut pending,
                    ),
                    Event::TurnPreview(turn) => {
                        preview = submit_turn(call.id(), turn, transcriber.as_deref());
                    }
                    Event::Speak { id, text } => voice.speak(id, &text, call.rate()),
                    Event::Think { id, history } => voice.think(id, history, call.rate()),
                    Event::Cancel(id) => voice.cancel(id),
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
            voice.feed(&mut call, now);
            while let Some(n) = call.poll_transmit(now, &mut wbuf) {
                any = true;
                trace!(bytes = n, "send");
                match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&wbuf[..n])).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!("write failed: {e}");
                        call.handle_peer_closed(now, !rbuf.is_empty());
                        break;
                    }
                    Err(_) => {
                        call.abort(now, EndReason::Internal("peer stopped reading".into()));
                        break;
                    }
                }
            }
            if !any {
                break;
            }
        }
        if call.is_closed() {
            break;
        }

        let deadline = call.poll_timeout();
        let sleep_until = deadline.map(|t| epoch + t.since_epoch());
        rbuf.reserve(4096);
        tokio::select! {
            changed = phase.changed() => {
                // A closed channel means the server is gone: hang up too.
                if changed.is_err() || *phase.borrow() == Phase::HangUp {
                    call.close(clock(), EndReason::Shutdown);
                }
            }
            read = stream.read_buf(&mut rbuf) => {
                let now = clock();
                match read {
                    Ok(0) => call.handle_peer_closed(now, !rbuf.is_empty()),
                    Ok(_) => feed(&mut call, &decoder, &mut rbuf, now),
                    Err(e) => {
                        debug!("read failed: {e}");
                        call.handle_peer_closed(now, !rbuf.is_empty());
                    }
                }
            }
            () = sleep_or_forever(sleep_until) => call.handle_timeout(clock()),
            result = next_transcript(&mut pending), if !pending.is_empty() => {
                if let Some(turn) = pending.pop_front() {
                    let now = clock();
                    let heard = log_transcript(&turn, result, now);
                    call.handle_transcript(now, heard);
                }
            }
            audio = voice.next_audio(), if voice.wants_audio(&call) => voice.on_audio(audio),
            Some((id, news)) = replies.recv() => call.handle_reply(clock(), id, news),
        }
    }
    // The call is over; its last turns are still worth their text, but
    // the call's end, its slot and whoever waits for it (a Stasis session)
    // do not wait for them: they are stored when they come.
    if !pending.is_empty() {
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let grace = tokio::time::sleep(TRANSCRIPT_GRACE);
                tokio::pin!(grace);
                while !pending.is_empty() {
                    tokio::select! {
                        result = next_transcript(&mut pending) => {
                            if let Some(turn) = pending.pop_front() {
                                let heard = log_transcript(&turn, result, clock());
                                if let Some(l) = &mut late {
                                    l.record(&heard.text, heard.confidence, turn.speech_start, turn.speech_end);
                                }
                            }
                        }
                        () = &mut grace => {
                            warn!(turns = pending.len(), "call ended with turns still being transcribed; giving up on them");
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
    tokio::spawn(
        async move {
            if let Some(d) = durable {
                let _ = tokio::time::timeout(Duration::from_secs(2), d.wait()).await;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
        }
        .instrument(tracing::Span::current()),
    );
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

/// For a media leg that carries a call over another transport (Stasis RTP,
/// SIP): hands each audio message the driver wrote into `buf` to `audio`
/// and drops what was used, keeping a partial tail. True when the call is
/// over: the driver hung up, reported an error, or wrote bytes that are not
/// AudioSocket.
pub(crate) fn take_replies(
    decoder: &Decoder,
    buf: &mut Vec<u8>,
    mut audio: impl FnMut(media_core::SampleRate, &[u8]),
) -> bool {
    let mut used = 0;
    let mut over = false;
    loop {
        match decoder.decode(&buf[used..]) {
            Ok((media_core::audiosocket::Message::Audio { rate, pcm }, n)) => {
                used += n;
                audio(rate, pcm);
            }
            Ok((
                media_core::audiosocket::Message::Hangup
                | media_core::audiosocket::Message::Error(_),
                _,
            )) => {
                over = true;
                break;
            }
            Ok((_, n)) => used += n,
            Err(e) if e.is_incomplete() => break,
            Err(_) => {
                over = true;
                break;
            }
        }
    }
    buf.drain(..used);
    over
}

/// Decodes every whole message in `rbuf` into the call, keeping a partial tail.
fn feed(call: &mut Call, decoder: &Decoder, rbuf: &mut Vec<u8>, now: Time) {
    let mut used = 0;
    while !call.is_closed() {
        match decoder.decode(&rbuf[used..]) {
            Ok((message, n)) => {
                call.handle_message(now, message);
                used += n;
            }
            Err(e) if e.is_incomplete() => break,
            Err(e) => {
                warn!("closing call: {e}");
                call.handle_protocol_error(now, e);
                break;
            }
        }
    }
    rbuf.drain(..used);
}

/// Hands a finished turn to STT (never blocks; a refusal is logged).
fn submit_turn(
    call: Option<CallId>,
    turn: Turn,
    transcriber: Option<&dyn Transcriber>,
) -> Option<PendingTurn> {
    let (Some(call), Some(stt)) = (call, transcriber) else {
        debug!(
            audio_ms = turn.duration().as_millis() as u64,
            "caller turn (no transcriber)"
        );
        return None;
    };
    let (tx, rx) = oneshot::channel();
    let waiting = PendingTurn {
        speech_start: turn.speech_start,
        speech_end: turn.speech_end,
        decided_at: turn.decided_at,
        audio: turn.duration(),
        reason: turn.reason,
        rx,
    };
    match stt.submit(SttRequest {
        call,
        turn,
        reply: tx,
    }) {
        Ok(()) => Some(waiting),
        Err(e) => {
            warn!(
                audio_ms = waiting.audio.as_millis() as u64,
                "caller turn not transcribed: {e}"
            );
            None
        }
    }
}

/// A finished turn: its transcript is already on the way if the preview
/// was of the same speech, else it goes to STT now. Every turn gets one
/// report to the call, empty when it could not be transcribed.
fn take_turn(
    call: &mut Call,
    now: Time,
    turn: Turn,
    preview: &mut Option<PendingTurn>,
    transcriber: Option<&dyn Transcriber>,
    pending: &mut VecDeque<PendingTurn>,
) {
    let same = preview
        .as_ref()
        .is_some_and(|p| p.speech_start == turn.speech_start && p.speech_end == turn.speech_end);
    let unheard = Heard {
        text: String::new(),
        confidence: 0.0,
        speech_start: turn.speech_start,
        speech_end: turn.speech_end,
        decided_at: turn.decided_at,
    };
    let waiting = match preview.take() {
        Some(mut p) if same => {
            trace!("the preview was the whole turn");
            p.decided_at = turn.decided_at;
            p.reason = turn.reason;
            Some(p)
        }
        _ => submit_turn(call.id(), turn, transcriber),
    };
    match waiting {
        Some(w) => pending.push_back(w),
        None => call.handle_transcript(now, unheard),
    }
}

/// Waits for the oldest pending turn's transcript.
async fn next_transcript(pending: &mut VecDeque<PendingTurn>) -> Result<Transcript, SttError> {
    match pending.front_mut() {
        Some(p) => (&mut p.rx).await.unwrap_or(Err(SttError::Stopped)),
        None => std::future::pending().await,
    }
}

/// Logs one caller turn with its timings; returns what the agent hears.
fn log_transcript(turn: &PendingTurn, result: Result<Transcript, SttError>, now: Time) -> Heard {
    let ms = |d: Duration| d.as_millis() as u64;
    let speech_ms = ms(turn.speech_end - turn.speech_start);
    let endpoint_ms = ms(turn.decided_at - turn.speech_end);
    let turn_end_to_text_ms = ms(now - turn.speech_end);
    let mut heard = Heard {
        text: String::new(),
        confidence: 0.0,
        speech_start: turn.speech_start,
        speech_end: turn.speech_end,
        decided_at: turn.decided_at,
    };
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
            heard.text = t.text;
            heard.confidence = t.confidence;
        }
        Err(SttError::NoSpeech) => debug!(speech_ms, "turn had no words"),
        Err(e) => warn!(
            speech_ms,
            audio_ms = ms(turn.audio),
            "caller turn lost: {e}"
        ),
    }
    heard
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
        Record::BargeIn { onset, at } => info!(
            onset_ms = ms(*onset),
            reaction_ms = span(*onset, *at),
            "barge-in"
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
