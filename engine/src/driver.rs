//! The call driver: one task per call, owning its socket and its [`Call`].
//!
//! # Concurrency
//! This task is the only place that touches the call's socket and state
//! machine, and its `select!` is the only wait: socket readable, the call's
//! next deadline, and the server's shutdown phase. The clock is read once per
//! wake-up and passed into the pure core. Writes go straight to the socket
//! with a timeout, so a peer that stops reading ends its own call and never
//! stalls anyone else.

use std::net::SocketAddr;
use std::time::Duration;

use media_core::audiosocket::{Decoder, HEADER_LEN};
use media_core::{Agent, Call, CallConfig, EndReason, Event, MAX_TRANSMIT, Time};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::server::Phase;

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
    call_config: CallConfig,
    agent: Box<dyn Agent>,
    max_payload: usize,
    mut phase: watch::Receiver<Phase>,
) -> CallOutcome {
    let epoch = Instant::now();
    let clock = move || Time::from_micros(epoch.elapsed().as_micros() as u64);
    let mut call = Call::new(Time::ZERO, call_config, agent);
    let decoder = Decoder::new(max_payload);
    let mut rbuf: Vec<u8> = Vec::with_capacity(max_payload + HEADER_LEN + 4096);
    let mut wbuf = vec![0u8; MAX_TRANSMIT];
    let mut outcome = None;
    debug!(%peer, "connection accepted");

    loop {
        let now = clock();
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
            if let Some(reason) = log_event(event) {
                outcome = Some(reason);
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
