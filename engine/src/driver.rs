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
    Agent, Call, CallConfig, CallId, Ears, EndReason, Event, MAX_TRANSMIT, Time, Turn, TurnEnd,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::server::Phase;
use crate::speech::Mouth;
use crate::stt::{SttError, SttRequest, Transcriber, Transcript};
use crate::tts::SpeechStream;

/// Speech is fed to the call's playout up to this far ahead; the rest
/// waits here (and in the stream), so the playout queue never overflows.
const FEED_AHEAD: Duration = Duration::from_secs(1);

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
    pub(crate) max_payload: usize,
}

/// What the call is saying.
struct Speaking {
    /// Audio ready to go to playout, from `at`.
    pending: Vec<i16>,
    at: usize,
    /// More audio being synthesized (none for a cached prompt).
    stream: Option<SpeechStream>,
}

impl Speaking {
    fn has_pending(&self) -> bool {
        self.at < self.pending.len()
    }
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

/// A peer that does not take 3 s of writes is gone or stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// How one call ended, for the server's counters.
#[derive(Debug, Clone)]
pub(crate) struct CallOutcome {
    pub(crate) reason: EndReason,
}

/// Runs one call to its end. Never panics on peer input; every way out of
/// the loop goes through the state machine so the end is logged once.
pub(crate) async fn drive(
    mut stream: TcpStream,
    peer: SocketAddr,
    setup: CallSetup,
    mut phase: watch::Receiver<Phase>,
) -> CallOutcome {
    let epoch = Instant::now();
    let clock = move || Time::from_micros(epoch.elapsed().as_micros() as u64);
    let mut call = Call::new(Time::ZERO, setup.call_config, setup.agent);
    if let Some(ears) = setup.ears {
        call = call.with_ears(ears);
    }
    let transcriber = setup.transcriber;
    let mouth = setup.mouth;
    let mut speaking: Option<Speaking> = None;
    let mut pending: VecDeque<PendingTurn> = VecDeque::new();
    let decoder = Decoder::new(setup.max_payload);
    let mut rbuf: Vec<u8> = Vec::with_capacity(setup.max_payload + HEADER_LEN + 4096);
    let mut wbuf = vec![0u8; MAX_TRANSMIT];
    let mut outcome = None;
    debug!(%peer, "connection accepted");

    loop {
        let now = clock();
        feed_speech(&mut call, &mut speaking, now);
        // Drain everything the call has to say at `now`.
        while let Some(n) = call.poll_transmit(now, &mut wbuf) {
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
        while let Some(event) = call.poll_event() {
            match event {
                Event::Turn(turn) => {
                    submit_turn(call.id(), turn, transcriber.as_deref(), &mut pending)
                }
                Event::Speak(text) => {
                    speaking = start_speaking(&text, mouth.as_ref(), call.rate()).await;
                    if speaking.is_none() {
                        call.handle_speech_done(now);
                    }
                }
                other => {
                    if let Some(reason) = log_event(other) {
                        outcome = Some(reason);
                    }
                }
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
                    log_transcript(&turn, result, clock());
                }
            }
            audio = next_speech(&mut speaking), if wants_speech(&speaking, &call) => {
                if let Some(s) = speaking.as_mut() {
                    match audio {
                        Some(Ok(samples)) => {
                            s.pending = samples;
                            s.at = 0;
                        }
                        Some(Err(e)) => warn!("speech chunk lost: {e}"),
                        None => s.stream = None,
                    }
                }
            }
        }
    }
    // The call is over; its last turns are still worth their text.
    let grace = tokio::time::sleep(TRANSCRIPT_GRACE);
    tokio::pin!(grace);
    while !pending.is_empty() {
        tokio::select! {
            result = next_transcript(&mut pending) => {
                if let Some(turn) = pending.pop_front() {
                    log_transcript(&turn, result, clock());
                }
            }
            () = &mut grace => {
                warn!(turns = pending.len(), "call ended with turns still being transcribed; giving up on them");
                break;
            }
        }
    }
    // Best effort: the call is over either way.
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
    CallOutcome {
        reason: outcome.unwrap_or(EndReason::Internal("call ended without a reason".into())),
    }
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

/// Starts saying `text`: a cached prompt at once, else a speech stream.
async fn start_speaking(
    text: &str,
    mouth: Option<&Mouth>,
    rate: media_core::SampleRate,
) -> Option<Speaking> {
    let Some(mouth) = mouth else {
        warn!("the agent asked to speak, but no TTS is configured");
        return None;
    };
    if let Some(audio) = mouth.cache.get(text, rate) {
        debug!(samples = audio.len(), "speaking a cached prompt");
        return Some(Speaking {
            pending: audio.to_vec(),
            at: 0,
            stream: None,
        });
    }
    let mut stream = SpeechStream::start(Arc::clone(&mouth.synth), rate, mouth.max_wait);
    if let Err(e) = stream.push(text.to_string()).await {
        warn!("cannot start speaking: {e}");
        return None;
    }
    stream.finish();
    Some(Speaking {
        pending: Vec::new(),
        at: 0,
        stream: Some(stream),
    })
}

/// Moves speech into the call's playout while it has room; tells the call
/// when everything has been handed over.
fn feed_speech(call: &mut Call, speaking: &mut Option<Speaking>, now: Time) {
    let Some(s) = speaking.as_mut() else {
        return;
    };
    let step = call.rate().frame_samples() * 5;
    while s.has_pending() && call.queued_audio() < FEED_AHEAD {
        let end = (s.at + step).min(s.pending.len());
        let took = call.play(now, &s.pending[s.at..end]);
        if took == 0 {
            break;
        }
        s.at += took;
    }
    if !s.has_pending() && s.stream.is_none() {
        *speaking = None;
        call.handle_speech_done(now);
    }
}

/// True when the next synthesized chunk is wanted now.
fn wants_speech(speaking: &Option<Speaking>, call: &Call) -> bool {
    speaking
        .as_ref()
        .is_some_and(|s| s.stream.is_some() && !s.has_pending())
        && call.queued_audio() < FEED_AHEAD
}

async fn next_speech(
    speaking: &mut Option<Speaking>,
) -> Option<Result<Vec<i16>, crate::tts::TtsError>> {
    match speaking.as_mut().and_then(|s| s.stream.as_mut()) {
        Some(stream) => stream.next_audio().await,
        None => std::future::pending().await,
    }
}

/// Hands a finished turn to STT (never blocks; a refusal is logged).
fn submit_turn(
    call: Option<CallId>,
    turn: Turn,
    transcriber: Option<&dyn Transcriber>,
    pending: &mut VecDeque<PendingTurn>,
) {
    let (Some(call), Some(stt)) = (call, transcriber) else {
        debug!(
            audio_ms = turn.duration().as_millis() as u64,
            "caller turn (no transcriber)"
        );
        return;
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
        Ok(()) => pending.push_back(waiting),
        Err(e) => warn!(
            audio_ms = waiting.audio.as_millis() as u64,
            "caller turn not transcribed: {e}"
        ),
    }
}

/// Waits for the oldest pending turn's transcript.
async fn next_transcript(pending: &mut VecDeque<PendingTurn>) -> Result<Transcript, SttError> {
    match pending.front_mut() {
        Some(p) => (&mut p.rx).await.unwrap_or(Err(SttError::Stopped)),
        None => std::future::pending().await,
    }
}

/// Logs one caller turn with its timings.
fn log_transcript(turn: &PendingTurn, result: Result<Transcript, SttError>, now: Time) {
    let ms = |d: Duration| d.as_millis() as u64;
    let speech_ms = ms(turn.speech_end - turn.speech_start);
    let endpoint_ms = ms(turn.decided_at - turn.speech_end);
    let turn_end_to_text_ms = ms(now - turn.speech_end);
    match result {
        Ok(t) => info!(
            text = %t.text,
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
        ),
        Err(SttError::NoSpeech) => debug!(speech_ms, "turn had no words"),
        Err(e) => warn!(
            speech_ms,
            audio_ms = ms(turn.audio),
            "caller turn lost: {e}"
        ),
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
        Event::Started(id) => {
            tracing::Span::current().record("call_id", tracing::field::display(id));
            info!("call started");
        }
        Event::Format(rate) => debug!(%rate, "caller audio format"),
        Event::Dtmf(d) => info!(digit = %d, "dtmf"),
        Event::BadDtmf(b) => warn!(byte = b, "ignored a DTMF message that is not a digit"),
        Event::SpeechStarted(at) => debug!(at_ms = at.as_micros() / 1_000, "caller speaking"),
        Event::Ended { reason, stats } => {
            let p = stats.playout;
            if reason.is_normal() {
                info!(
                    %reason,
                    frames_in = stats.frames_in,
                    frames_out = p.frames_sent,
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
