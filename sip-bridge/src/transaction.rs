//! Server transactions over UDP (RFC 3261 §17.2, with RFC 6026's Accepted
//! state), as pure state machines.
//!
//! A transaction takes `now` and inputs (`handle_*`: a retransmitted
//! request, the response the core sends, an ACK, a timeout) and gives
//! outputs: bytes to send again (`poll_transmit`) and its next deadline
//! (`poll_timeout`). The caller drains `poll_transmit` after every input
//! and sleeps until `poll_timeout`. Nothing here reads a clock or touches
//! a socket; the wire bytes are opaque.
//!
//! Timers, with T1 = 500 ms, T2 = 4 s, T4 = 5 s (RFC 3261 §17.1.1.1,
//! table 4):
//! - INVITE, final 3xx-6xx: resend it at T1, 2·T1, ... capped at T2
//!   (Timer G) until the ACK, giving up after 64·T1 (Timer H). After the
//!   ACK, absorb ACK retransmissions for T4 (Timer I).
//! - INVITE, 2xx: the transaction is Accepted for 64·T1 (Timer L), so
//!   retransmitted INVITEs are absorbed; resending the 2xx until the ACK is
//!   the core's job ([`OkRetransmit`]).
//! - Other requests: the final response is resent for each retransmitted
//!   request until 64·T1 (Timer J).
//! - hark's own BYE (a client transaction): resent at T1 doubling to T2
//!   (Timer E) until a final response, given up after 64·T1 (Timer F).

use std::time::Duration;

use media_core::Time;

/// RTT estimate (RFC 3261 default).
pub const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// How long a message may stay in the network.
pub const T4: Duration = Duration::from_secs(5);

/// Where an INVITE server transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    /// Provisional responses only so far.
    Proceeding,
    /// A 2xx was sent: absorbing INVITE retransmissions (RFC 6026).
    Accepted,
    /// A 3xx-6xx was sent: resending it until the ACK.
    Completed,
    /// The ACK arrived: absorbing ACK retransmissions.
    Confirmed,
    /// Over.
    Terminated,
}

/// How a transaction ended, for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Normally.
    Done,
    /// No ACK for a final error response within 64·T1 (Timer H).
    NoAck,
}

/// One INVITE server transaction (RFC 3261 §17.2.1).
#[derive(Debug)]
pub struct InviteServer {
    state: InviteState,
    /// The last response sent, to resend.
    last: Option<Vec<u8>>,
    resend: bool,
    /// Timer G: next resend, and its interval.
    timer_g: Option<(Time, Duration)>,
    /// Timers H, I or L: the end of the current state.
    end_at: Option<Time>,
    ended: Option<Ended>,
}

impl InviteServer {
    /// A transaction for an INVITE that arrived at `_now` (a 100 Trying is
    /// the core's first response).
    pub fn new(_now: Time) -> InviteServer {
        InviteServer {
            state: InviteState::Proceeding,
            last: None,
            resend: false,
            timer_g: None,
            end_at: None,
            ended: None,
        }
    }

    /// The state.
    pub fn state(&self) -> InviteState {
        self.state
    }

    /// How it ended, once Terminated.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// The core sends `status` with `bytes` (already sent once by the
    /// caller; kept here to resend).
    pub fn handle_response(&mut self, now: Time, status: u16, bytes: Vec<u8>) {
        if self.state != InviteState::Proceeding {
            return;
        }
        self.last = Some(bytes);
        match status {
            100..=199 => {}
            200..=299 => {
                self.state = InviteState::Accepted;
                self.end_at = Some(now + T1 * 64);
            }
            _ => {
                self.state = InviteState::Completed;
                self.timer_g = Some((now + T1, T1));
                self.end_at = Some(now + T1 * 64);
            }
        }
    }

    /// The INVITE arrived again.
    pub fn handle_retransmit(&mut self, _now: Time) {
        // Proceeding: resend the last provisional. Completed: the final.
        // Accepted: absorbed (the core resends the 2xx on its own timer).
        if matches!(self.state, InviteState::Proceeding | InviteState::Completed)
            && self.last.is_some()
        {
            self.resend = true;
        }
    }

    /// An ACK for a final error response.
    pub fn handle_ack(&mut self, now: Time) {
        if self.state == InviteState::Completed {
            self.state = InviteState::Confirmed;
            self.timer_g = None;
            self.end_at = Some(now + T4);
        }
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(end) = self.end_at
            && now >= end
        {
            self.ended = Some(if self.state == InviteState::Completed {
                Ended::NoAck
            } else {
                Ended::Done
            });
            self.state = InviteState::Terminated;
            self.timer_g = None;
            self.end_at = None;
            self.resend = false;
            return;
        }
        if let Some((at, interval)) = self.timer_g
            && now >= at
        {
            self.resend = true;
            let next = (interval * 2).min(T2);
            self.timer_g = Some((at + next, next));
        }
    }

    /// Bytes to send again, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if std::mem::take(&mut self.resend) {
            return self.last.clone();
        }
        None
    }

    /// The next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        match (self.timer_g.map(|(t, _)| t), self.end_at) {
            (Some(g), Some(e)) => Some(g.min(e)),
            (g, e) => g.or(e),
        }
    }
}

/// One non-INVITE server transaction (RFC 3261 §17.2.2): BYE, CANCEL,
/// OPTIONS ...
#[derive(Debug)]
pub struct NonInviteServer {
    last: Option<Vec<u8>>,
    resend: bool,
    final_sent: bool,
    end_at: Option<Time>,
    terminated: bool,
}

impl NonInviteServer {
    /// A transaction for a request that arrived at `_now`.
    pub fn new(_now: Time) -> NonInviteServer {
        NonInviteServer {
            last: None,
            resend: false,
            final_sent: false,
            end_at: None,
            terminated: false,
        }
    }

    /// True once Timer J has run out.
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// The core sends `status` with `bytes`.
    pub fn handle_response(&mut self, now: Time, status: u16, bytes: Vec<u8>) {
        if self.final_sent || self.terminated {
            return;
        }
        self.last = Some(bytes);
        if status >= 200 {
            self.final_sent = true;
            self.end_at = Some(now + T1 * 64);
        }
    }

    /// The request arrived again: the last response goes again.
    pub fn handle_retransmit(&mut self, _now: Time) {
        if self.last.is_some() && !self.terminated {
            self.resend = true;
        }
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.end_at.is_some_and(|e| now >= e) {
            self.terminated = true;
            self.end_at = None;
            self.resend = false;
        }
    }

    /// Bytes to send again, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if std::mem::take(&mut self.resend) {
            return self.last.clone();
        }
        None
    }

    /// The next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.end_at
    }
}

/// The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4): resend the 2xx
/// at T1, doubling to T2, until the ACK; after 64·T1 without one the
/// dialog must be ended with a BYE.
#[derive(Debug)]
pub struct OkRetransmit {
    bytes: Vec<u8>,
    next: Option<(Time, Duration)>,
    give_up: Time,
    resend: bool,
    timed_out: bool,
}

impl OkRetransmit {
    /// The 2xx `bytes` was sent at `now`.
    pub fn new(now: Time, bytes: Vec<u8>) -> OkRetransmit {
        OkRetransmit {
            bytes,
            next: Some((now + T1, T1)),
            give_up: now + T1 * 64,
            resend: false,
            timed_out: false,
        }
    }

    /// The ACK arrived: stop.
    pub fn handle_ack(&mut self) {
        self.next = None;
    }

    /// The INVITE arrived again before the ACK: the 2xx goes again now.
    pub fn handle_retransmit(&mut self) {
        if self.next.is_some() {
            self.resend = true;
        }
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        let Some((at, interval)) = self.next else {
            return;
        };
        if now >= self.give_up {
            self.next = None;
            self.timed_out = true;
            return;
        }
        if now >= at {
            self.resend = true;
            let next = (interval * 2).min(T2);
            self.next = Some((at + next, next));
        }
    }

    /// True when no ACK came in 64·T1: send BYE.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Bytes to send again, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.resend).then(|| self.bytes.clone())
    }

    /// The next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next.map(|(t, _)| t.min(self.give_up))
    }
}

/// One non-INVITE client transaction over UDP (RFC 3261 §17.1.2): hark's
/// own BYE. The request is resent at T1, doubling to T2 (Timer E), until a
/// final response; no final response in 64·T1 (Timer F) is a timeout.
#[derive(Debug)]
pub struct NonInviteClient {
    bytes: Vec<u8>,
    next: Option<(Time, Duration)>,
    give_up: Time,
    resend: bool,
    outcome: Option<Result<u16, TimedOut>>,
}

/// No final response within 64·T1 (Timer F).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl NonInviteClient {
    /// The request `bytes` was sent (once, by the caller) at `now`.
    pub fn new(now: Time, bytes: Vec<u8>) -> NonInviteClient {
        NonInviteClient {
            bytes,
            next: Some((now + T1, T1)),
            give_up: now + T1 * 64,
            resend: false,
            outcome: None,
        }
    }

    /// A response arrived. A provisional one moves Timer E to T2 (§17.1.2.2).
    pub fn handle_response(&mut self, now: Time, status: u16) {
        if self.outcome.is_some() {
            return;
        }
        if status >= 200 {
            self.outcome = Some(Ok(status));
            self.next = None;
            self.resend = false;
        } else if let Some((_, _)) = self.next {
            self.next = Some((now + T2, T2));
        }
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        let Some((at, interval)) = self.next else {
            return;
        };
        if now >= self.give_up {
            self.next = None;
            self.outcome = Some(Err(TimedOut));
            return;
        }
        if now >= at {
            self.resend = true;
            let next = (interval * 2).min(T2);
            self.next = Some((at + next, next));
        }
    }

    /// The final status, or the timeout, once there is one.
    pub fn outcome(&self) -> Option<Result<u16, TimedOut>> {
        self.outcome
    }

    /// Bytes to send again, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.resend).then(|| self.bytes.clone())
    }

    /// The next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next.map(|(t, _)| t.min(self.give_up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: u64) -> Time {
        Time::from_micros(t * 1000)
    }

    /// Runs a machine on a simulated clock until `until` ms: wakes at each
    /// deadline, returns the times (ms) of every resend.
    fn resends<F, T, P>(mut timeout: F, mut transmit: T, mut poll: P, until: u64) -> Vec<u64>
    where
        F: FnMut(Time),
        T: FnMut() -> Option<Vec<u8>>,
        P: FnMut() -> Option<Time>,
    {
        let mut out = Vec::new();
        while let Some(t) = poll() {
            if t > ms(until) {
                break;
            }
            timeout(t);
            while transmit().is_some() {
                out.push(t.as_micros() / 1000);
            }
        }
        out
    }

    #[test]
    fn an_error_response_is_resent_on_timer_g_until_timer_h() {
        let mut t = InviteServer::new(ms(0));
        t.handle_response(ms(0), 100, b"100".to_vec());
        t.handle_response(ms(0), 486, b"486".to_vec());
        assert_eq!(t.state(), InviteState::Completed);
        let sent = {
            let t = std::cell::RefCell::new(&mut t);
            resends(
                |now| t.borrow_mut().handle_timeout(now),
                || t.borrow_mut().poll_transmit(),
                || t.borrow().poll_timeout(),
                60_000,
            )
        };
        // 0.5, 1.5, 3.5, 7.5 s, then every 4 s up to 32 s.
        assert_eq!(&sent[..5], [500, 1500, 3500, 7500, 11_500]);
        assert!(sent.iter().all(|&s| s < 32_000));
        assert_eq!(*sent.last().expect("some"), 31_500);
        assert_eq!(t.state(), InviteState::Terminated);
        assert_eq!(t.ended(), Some(Ended::NoAck));
    }

    #[test]
    fn the_ack_stops_resending_and_timer_i_ends_it() {
        let mut t = InviteServer::new(ms(0));
        t.handle_response(ms(0), 488, b"488".to_vec());
        t.handle_timeout(ms(500));
        assert_eq!(t.poll_transmit().as_deref(), Some(&b"488"[..]));
        t.handle_ack(ms(700));
        assert_eq!(t.state(), InviteState::Confirmed);
        assert_eq!(t.poll_timeout(), Some(ms(5_700)));
        t.handle_retransmit(ms(800));
        assert_eq!(t.poll_transmit(), None, "Confirmed absorbs");
        t.handle_timeout(ms(5_700));
        assert_eq!(
            (t.state(), t.ended()),
            (InviteState::Terminated, Some(Ended::Done))
        );
    }

    #[test]
    fn retransmitted_invites_get_the_last_response_or_are_absorbed() {
        let mut t = InviteServer::new(ms(0));
        t.handle_retransmit(ms(10));
        assert_eq!(t.poll_transmit(), None, "nothing sent yet");
        t.handle_response(ms(20), 180, b"180".to_vec());
        t.handle_retransmit(ms(30));
        assert_eq!(t.poll_transmit().as_deref(), Some(&b"180"[..]));
        t.handle_response(ms(40), 200, b"200".to_vec());
        assert_eq!(t.state(), InviteState::Accepted);
        t.handle_retransmit(ms(50));
        assert_eq!(
            t.poll_transmit(),
            None,
            "Accepted absorbs; the core resends the 2xx"
        );
        assert_eq!(t.poll_timeout(), Some(ms(32_040)));
        t.handle_timeout(ms(32_040));
        assert_eq!(t.ended(), Some(Ended::Done));
        // A response after the end is ignored.
        t.handle_response(ms(32_050), 500, b"500".to_vec());
        assert_eq!(t.state(), InviteState::Terminated);
    }

    #[test]
    fn non_invite_resends_its_final_response_until_timer_j() {
        let mut t = NonInviteServer::new(ms(0));
        t.handle_response(ms(0), 200, b"200 BYE".to_vec());
        t.handle_retransmit(ms(600));
        assert_eq!(t.poll_transmit().as_deref(), Some(&b"200 BYE"[..]));
        t.handle_response(ms(700), 500, b"500".to_vec());
        t.handle_retransmit(ms(800));
        assert_eq!(
            t.poll_transmit().as_deref(),
            Some(&b"200 BYE"[..]),
            "the first final stands"
        );
        assert_eq!(t.poll_timeout(), Some(ms(32_000)));
        t.handle_timeout(ms(32_000));
        assert!(t.is_terminated());
        t.handle_retransmit(ms(32_100));
        assert_eq!(t.poll_transmit(), None);
    }

    #[test]
    fn the_2xx_is_resent_until_the_ack_or_64_t1() {
        let mut ok = OkRetransmit::new(ms(0), b"200".to_vec());
        let sent = {
            let ok = std::cell::RefCell::new(&mut ok);
            resends(
                |now| ok.borrow_mut().handle_timeout(now),
                || ok.borrow_mut().poll_transmit(),
                || ok.borrow().poll_timeout(),
                60_000,
            )
        };
        assert_eq!(&sent[..4], [500, 1500, 3500, 7500]);
        assert!(ok.timed_out(), "no ACK in 32 s: BYE");

        let mut ok = OkRetransmit::new(ms(0), b"200".to_vec());
        ok.handle_timeout(ms(500));
        assert!(ok.poll_transmit().is_some());
        ok.handle_retransmit();
        assert!(
            ok.poll_transmit().is_some(),
            "a retransmitted INVITE gets the 2xx at once"
        );
        ok.handle_ack();
        assert_eq!(ok.poll_timeout(), None);
        ok.handle_timeout(ms(40_000));
        assert!(!ok.timed_out());
    }

    #[test]
    fn our_bye_is_resent_on_timer_e_until_answered_or_timer_f() {
        let mut t = NonInviteClient::new(ms(0), b"BYE".to_vec());
        t.handle_timeout(ms(500));
        assert_eq!(t.poll_transmit().as_deref(), Some(&b"BYE"[..]));
        assert_eq!(t.poll_timeout(), Some(ms(1500)));
        t.handle_response(ms(600), 200);
        assert_eq!(t.outcome(), Some(Ok(200)));
        assert_eq!(t.poll_timeout(), None);

        let mut t = NonInviteClient::new(ms(0), b"BYE".to_vec());
        let sent = {
            let t = std::cell::RefCell::new(&mut t);
            resends(
                |now| t.borrow_mut().handle_timeout(now),
                || t.borrow_mut().poll_transmit(),
                || t.borrow().poll_timeout(),
                60_000,
            )
        };
        assert_eq!(&sent[..4], [500, 1500, 3500, 7500]);
        assert_eq!(t.outcome(), Some(Err(TimedOut)));
        assert!(sent.iter().all(|&s| s < 32_000));
    }
}
