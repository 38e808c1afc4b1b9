//! The user agent server: dialogs and the requests hark answers, as one
//! pure state machine over datagrams.
//!
//! The socket task feeds it what arrives ([`Uas::handle_datagram`]) and
//! the passing of time ([`Uas::handle_timeout`]), and tells it what the
//! engine decided ([`Uas::accept`], [`Uas::reject`], [`Uas::hangup`]). It
//! drains datagrams to send ([`Uas::poll_transmit`]) and events for the
//! engine ([`Uas::poll_event`]) after each call, and sleeps until
//! [`Uas::poll_timeout`]. No clock, no socket, no randomness of its own
//! (a seed is given), so every exchange here is a test on a simulated
//! clock.
//!
//! What it answers:
//! - INVITE with an SDP offer: 100 Trying at once; 488 if the offer has no
//!   usable audio or no codec in common; 486 at `max_calls`; else
//!   [`Event::Incoming`], and on [`Uas::accept`] 180 Ringing then 200 OK
//!   with the answer, resent until the ACK.
//! - re-INVITE in a dialog: hold, unhold, a new codec or address
//!   ([`Event::MediaChanged`]); 488 leaves the call as it was; 491 while
//!   another INVITE of the dialog is still open.
//! - CANCEL: 200, and 487 to the INVITE if it had no final response yet.
//! - BYE: 200 and [`Event::Ended`]; 481 for a dialog hark does not know.
//! - OPTIONS: 200 with Allow (keep-alive probes of SBCs and Asterisk's
//!   `qualify_frequency`).
//! - Anything else: 501 Not Implemented.
//!
//! hark's own BYE ([`Uas::hangup`]) waits for the ACK of the 200 when it
//! has not come yet (RFC 3261 §15), and is resent until answered.
//!
//! Replies go to the address a request came from (as with `rport`,
//! RFC 3581), which is right behind NAT; so does hark's BYE.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use media_core::Time;

use crate::message::{self, Message, Method, Request, Response};
use crate::sdp::{self, Codec, Negotiated};
use crate::transaction::{InviteServer, NonInviteClient, NonInviteServer, OkRetransmit};

/// What the UAS is told at start.
#[derive(Debug, Clone)]
pub struct UasConfig {
    /// The address written in Via and Contact (the signalling socket, or
    /// the address peers reach it at).
    pub contact: SocketAddr,
    /// Codecs in preference order.
    pub codecs: Vec<Codec>,
    /// Calls at once; one more INVITE is answered 486 Busy Here.
    pub max_calls: usize,
    /// The Server / User-Agent header.
    pub user_agent: String,
}

/// hark's handle for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The peer sent BYE.
    RemoteBye,
    /// The peer cancelled before the answer.
    Cancelled,
    /// hark hung up (its BYE was answered, or given up on).
    LocalHangup,
    /// No ACK for the 200 within 64·T1: hark sent BYE.
    NoAck,
    /// The engine refused the call ([`Uas::reject`]).
    Rejected,
}

/// What the engine hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new call whose offer was negotiated: bind the media port, then
    /// [`Uas::accept`] or [`Uas::reject`].
    Incoming {
        /// The call.
        call: CallRef,
        /// Where the INVITE came from.
        peer: SocketAddr,
        /// Call-ID.
        call_id: String,
        /// From, whole (the caller).
        from: String,
        /// The Request-URI (what was dialled).
        uri: String,
        /// The agreed media.
        media: Negotiated,
    },
    /// A re-INVITE changed the media (hold, unhold, codec, address).
    MediaChanged {
        /// The call.
        call: CallRef,
        /// The new media.
        media: Negotiated,
    },
    /// The call is over: stop its media.
    Ended {
        /// The call.
        call: CallRef,
        /// Why.
        reason: EndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE received, the engine is deciding.
    Offered,
    /// 200 sent, no ACK yet.
    Answered,
    /// ACK received.
    Confirmed,
    /// Our BYE is out.
    Ending,
}

#[derive(Debug)]
struct Dialog {
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// The INVITE's To (no tag): our From in requests we send.
    local_uri: String,
    /// The INVITE's From, with its tag: our To.
    remote_uri: String,
    /// The Contact URI: the Request-URI of our BYE.
    remote_target: String,
    /// Record-Route values, in order: our Route set (RFC 3261 §12.1.1).
    route_set: Vec<String>,
    peer: SocketAddr,
    local_cseq: u32,
    remote_cseq: u32,
    state: State,
    /// Key of the INVITE transaction still open (the first one, or a
    /// re-INVITE's), for CANCEL and 491.
    open_invite: Option<TxKey>,
    ok: Option<OkRetransmit>,
    bye: Option<(String, NonInviteClient)>,
    /// hark asked to hang up before the ACK came.
    bye_owed: bool,
    end_reason: EndReason,
    session_id: u64,
    sdp_version: u64,
    local_media: Option<SocketAddr>,
    media: Negotiated,
}

/// A transaction is matched by its branch, Call-ID and CSeq number
/// (the method apart: an ACK or CANCEL shares the INVITE's branch).
type TxKey = (String, String, u32);

#[derive(Debug)]
struct InviteTx {
    tx: InviteServer,
    request: Request,
    peer: SocketAddr,
    call: Option<CallRef>,
}

/// The UAS. See the module docs.
#[derive(Debug)]
pub struct Uas {
    config: UasConfig,
    rng: u64,
    next_call: u64,
    invites: HashMap<TxKey, InviteTx>,
    others: HashMap<(TxKey, String), (NonInviteServer, SocketAddr)>,
    dialogs: HashMap<CallRef, Dialog>,
    /// (Call-ID, remote tag) -> call.
    by_id: HashMap<(String, String), CallRef>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    /// Datagrams dropped as not SIP, for the logs.
    malformed: u64,
}

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS";

impl Uas {
    /// A UAS; `seed` makes its tags and branches (give it randomness).
    pub fn new(config: UasConfig, seed: u64) -> Uas {
        Uas {
            config,
            rng: seed | 1,
            next_call: 1,
            invites: HashMap::new(),
            others: HashMap::new(),
            dialogs: HashMap::new(),
            by_id: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            malformed: 0,
        }
    }

    /// Calls with a dialog (offered, answered or ending).
    pub fn calls(&self) -> usize {
        self.dialogs.len()
    }

    /// Datagrams dropped so far because they were not usable SIP.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// The media a call has agreed, if it exists.
    pub fn media(&self, call: CallRef) -> Option<&Negotiated> {
        self.dialogs.get(&call).map(|d| &d.media)
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        match message::parse(bytes) {
            Ok(Message::Request(r)) => self.handle_request(now, from, r),
            Ok(Message::Response(r)) => self.handle_response(now, r),
            Err(_) => self.malformed += 1,
        }
    }

    /// The engine takes `call`, with its RTP at `local_media`: 180, then
    /// 200 with the answer.
    pub fn accept(&mut self, now: Time, call: CallRef, local_media: SocketAddr) {
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        if d.state != State::Offered {
            return;
        }
        let Some(key) = d.open_invite.clone() else {
            return;
        };
        let Some(itx) = self.invites.get_mut(&key) else {
            return;
        };
        d.local_media = Some(local_media);
        let contact = format!("<sip:hark@{}>", self.config.contact);
        let ringing = itx.request.response(
            180,
            "Ringing",
            Some(&d.local_tag),
            &[("Contact", &contact)],
            None,
        );
        self.out.push_back((itx.peer, ringing.clone()));
        itx.tx.handle_response(now, 180, ringing);
        let body = sdp::answer(&d.media, local_media, d.session_id, d.sdp_version);
        let ok = itx.request.response(
            200,
            "OK",
            Some(&d.local_tag),
            &[
                ("Contact", &contact),
                ("Allow", ALLOW),
                ("Server", &self.config.user_agent),
            ],
            Some(("application/sdp", body.as_bytes())),
        );
        self.out.push_back((itx.peer, ok.clone()));
        itx.tx.handle_response(now, 200, ok.clone());
        d.ok = Some(OkRetransmit::new(now, ok));
        d.open_invite = None;
        d.state = State::Answered;
    }

    /// The engine refuses `call` with `status` (486 when it has no room,
    /// 500 when its media port could not be bound).
    pub fn reject(&mut self, now: Time, call: CallRef, status: u16, reason: &str) {
        let Some(d) = self.dialogs.get(&call) else {
            return;
        };
        if d.state != State::Offered {
            return;
        }
        if let Some(key) = d.open_invite.clone() {
            let tag = d.local_tag.clone();
            self.final_error(now, &key, status, reason, Some(&tag));
        }
        self.end(call, EndReason::Rejected);
    }

    /// The engine ends `call`: BYE (after the ACK, if it is still owed),
    /// or 480 if it was never answered.
    pub fn hangup(&mut self, now: Time, call: CallRef) {
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        match d.state {
            State::Offered => self.reject(now, call, 480, "Temporarily Unavailable"),
            State::Answered => d.bye_owed = true,
            State::Confirmed => self.send_bye(now, call, EndReason::LocalHangup),
            State::Ending => {}
        }
    }

    /// Time passed: resends and timeouts.
    pub fn handle_timeout(&mut self, now: Time) {
        for itx in self.invites.values_mut() {
            if itx.tx.poll_timeout().is_some_and(|t| now >= t) {
                itx.tx.handle_timeout(now);
            }
            while let Some(b) = itx.tx.poll_transmit() {
                self.out.push_back((itx.peer, b));
            }
        }
        self.invites.retain(|_, itx| itx.tx.ended().is_none());
        for (tx, _) in self.others.values_mut() {
            if tx.poll_timeout().is_some_and(|t| now >= t) {
                tx.handle_timeout(now);
            }
        }
        self.others.retain(|_, (tx, _)| !tx.is_terminated());
        let mut no_ack = Vec::new();
        let mut finished = Vec::new();
        for (&call, d) in &mut self.dialogs {
            if let Some(ok) = &mut d.ok {
                if ok.poll_timeout().is_some_and(|t| now >= t) {
                    ok.handle_timeout(now);
                }
                while let Some(b) = ok.poll_transmit() {
                    self.out.push_back((d.peer, b));
                }
                if ok.timed_out() {
                    d.ok = None;
                    no_ack.push(call);
                }
            }
            if let Some((_, bye)) = &mut d.bye {
                if bye.poll_timeout().is_some_and(|t| now >= t) {
                    bye.handle_timeout(now);
                }
                while let Some(b) = bye.poll_transmit() {
                    self.out.push_back((d.peer, b));
                }
                if bye.outcome().is_some() {
                    finished.push((call, d.end_reason));
                }
            }
        }
        for call in no_ack {
            self.send_bye(now, call, EndReason::NoAck);
        }
        for (call, reason) in finished {
            self.end(call, reason);
        }
    }

    /// The next datagram to send and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next event for the engine.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline, if any.
    pub fn poll_timeout(&self) -> Option<Time> {
        let invites = self.invites.values().filter_map(|i| i.tx.poll_timeout());
        let others = self.others.values().filter_map(|(t, _)| t.poll_timeout());
        let dialogs = self.dialogs.values().flat_map(|d| {
            let ok = d.ok.as_ref().and_then(OkRetransmit::poll_timeout);
            let bye = d.bye.as_ref().and_then(|(_, b)| b.poll_timeout());
            ok.into_iter().chain(bye)
        });
        invites.chain(others).chain(dialogs).min()
    }

    fn handle_request(&mut self, now: Time, from: SocketAddr, r: Request) {
        let key: TxKey = (
            r.common.branch.clone(),
            r.common.call_id.clone(),
            r.common.cseq,
        );
        match r.method {
            Method::Invite => self.handle_invite(now, from, key, r),
            Method::Ack => self.handle_ack(now, &key, &r),
            Method::Cancel => {
                if self.retransmitted(now, &key, "CANCEL") {
                    return;
                }
                self.handle_cancel(now, from, &key, &r);
            }
            Method::Bye => {
                if self.retransmitted(now, &key, "BYE") {
                    return;
                }
                self.handle_bye(now, from, &key, &r);
            }
            Method::Options => {
                if self.retransmitted(now, &key, "OPTIONS") {
                    return;
                }
                let tag = r.common.to_tag.is_none().then(|| self.token());
                let allow = [
                    ("Allow", ALLOW),
                    ("Accept", "application/sdp"),
                    ("Server", self.config.user_agent.as_str()),
                ];
                let resp = r.response(200, "OK", tag.as_deref(), &allow, None);
                self.answer_other(now, from, key, "OPTIONS", resp, 200);
            }
            Method::Other(ref m) => {
                let m = m.clone();
                if self.retransmitted(now, &key, &m) {
                    return;
                }
                let tag = r.common.to_tag.is_none().then(|| self.token());
                let resp = r.response(
                    501,
                    "Not Implemented",
                    tag.as_deref(),
                    &[("Allow", ALLOW)],
                    None,
                );
                self.answer_other(now, from, key, &m, resp, 501);
            }
        }
    }

    /// A non-INVITE request already answered: its response goes again.
    fn retransmitted(&mut self, now: Time, key: &TxKey, method: &str) -> bool {
        let Some((tx, peer)) = self.others.get_mut(&(key.clone(), method.to_string())) else {
            return false;
        };
        tx.handle_retransmit(now);
        while let Some(b) = tx.poll_transmit() {
            self.out.push_back((*peer, b));
        }
        true
    }

    fn answer_other(
        &mut self,
        now: Time,
        peer: SocketAddr,
        key: TxKey,
        method: &str,
        resp: Vec<u8>,
        status: u16,
    ) {
        let mut tx = NonInviteServer::new(now);
        tx.handle_response(now, status, resp.clone());
        self.out.push_back((peer, resp));
        self.others.insert((key, method.to_string()), (tx, peer));
    }

    fn handle_invite(&mut self, now: Time, from: SocketAddr, key: TxKey, r: Request) {
        if let Some(itx) = self.invites.get_mut(&key) {
            itx.tx.handle_retransmit(now);
            while let Some(b) = itx.tx.poll_transmit() {
                self.out.push_back((itx.peer, b));
            }
            if let Some(d) = itx.call.and_then(|c| self.dialogs.get_mut(&c))
                && let Some(ok) = &mut d.ok
            {
                ok.handle_retransmit();
                while let Some(b) = ok.poll_transmit() {
                    self.out.push_back((d.peer, b));
                }
            }
            return;
        }
        let mut itx = InviteTx {
            tx: InviteServer::new(now),
            request: r,
            peer: from,
            call: None,
        };
        let trying = itx.request.response(100, "Trying", None, &[], None);
        self.out.push_back((from, trying.clone()));
        itx.tx.handle_response(now, 100, trying);
        let reinvite = itx.request.common.to_tag.is_some();
        self.invites.insert(key.clone(), itx);
        if reinvite {
            self.handle_reinvite(now, from, &key);
        } else {
            self.handle_new_invite(now, from, &key);
        }
    }

    fn handle_new_invite(&mut self, now: Time, from: SocketAddr, key: &TxKey) {
        let tag = self.token();
        let session_id = self.rng_next() >> 1;
        let Some(itx) = self.invites.get(key) else {
            return;
        };
        let c = &itx.request.common;
        let Some(remote_tag) = c.from_tag.clone() else {
            self.final_error(now, key, 400, "Missing From tag", Some(&tag));
            return;
        };
        let media = match self.offer(&itx.request) {
            Ok(m) => m,
            Err(why) => {
                let why = why.to_string();
                self.final_error(now, key, 488, &why, Some(&tag));
                return;
            }
        };
        if self.dialogs.len() >= self.config.max_calls {
            self.final_error(now, key, 486, "Busy Here", Some(&tag));
            return;
        }
        let call = CallRef(self.next_call);
        self.next_call += 1;
        let Some(itx) = self.invites.get_mut(key) else {
            return;
        };
        itx.call = Some(call);
        let r = &itx.request;
        let c = &r.common;
        let remote_target = r
            .common
            .header("Contact")
            .map_or_else(|| uri_of(&c.from), uri_of);
        let route_set = c
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Record-Route"))
            .flat_map(|(_, v)| split_list(v))
            .collect();
        let d = Dialog {
            call_id: c.call_id.clone(),
            local_tag: tag,
            remote_tag: remote_tag.clone(),
            local_uri: c.to.clone(),
            remote_uri: c.from.clone(),
            remote_target,
            route_set,
            peer: from,
            local_cseq: 1,
            remote_cseq: c.cseq,
            state: State::Offered,
            open_invite: Some(key.clone()),
            ok: None,
            bye: None,
            bye_owed: false,
            end_reason: EndReason::LocalHangup,
            session_id,
            sdp_version: 1,
            local_media: None,
            media: media.clone(),
        };
        self.by_id.insert((c.call_id.clone(), remote_tag), call);
        self.events.push_back(Event::Incoming {
            call,
            peer: from,
            call_id: c.call_id.clone(),
            from: c.from.clone(),
            uri: r.uri.clone(),
            media,
        });
        self.dialogs.insert(call, d);
    }

    fn handle_reinvite(&mut self, now: Time, from: SocketAddr, key: &TxKey) {
        let Some(itx) = self.invites.get(key) else {
            return;
        };
        let Some(call) = self.dialog_of(&itx.request) else {
            self.final_error(now, key, 481, "Call/Transaction Does Not Exist", None);
            return;
        };
        let Some(d) = self.dialogs.get(&call) else {
            return;
        };
        if d.state != State::Confirmed || d.open_invite.is_some() {
            self.final_error(now, key, 491, "Request Pending", None);
            return;
        }
        if itx.request.common.cseq <= d.remote_cseq {
            self.final_error(now, key, 500, "CSeq Out of Order", None);
            return;
        }
        let remote_cseq = itx.request.common.cseq;
        let offer = if itx.request.common.body.is_empty() {
            // No offer: ours goes in the 200 unchanged and the ACK's answer
            // is not read (a session refresh).
            Ok(None)
        } else {
            self.offer(&itx.request).map(Some)
        };
        let media = match offer {
            Ok(m) => m,
            Err(why) => {
                let why = why.to_string();
                if let Some(d) = self.dialogs.get_mut(&call) {
                    d.remote_cseq = remote_cseq;
                }
                self.final_error(now, key, 488, &why, None);
                return;
            }
        };
        let contact = format!("<sip:hark@{}>", self.config.contact);
        let user_agent = self.config.user_agent.clone();
        let (Some(d), Some(itx)) = (self.dialogs.get_mut(&call), self.invites.get_mut(key)) else {
            return;
        };
        d.remote_cseq = remote_cseq;
        d.peer = from;
        if let Some(m) = &media {
            d.media = m.clone();
            d.sdp_version += 1;
        }
        let local = d
            .local_media
            .unwrap_or_else(|| SocketAddr::new(self.config.contact.ip(), 0));
        let body = sdp::answer(&d.media, local, d.session_id, d.sdp_version);
        let ok = itx.request.response(
            200,
            "OK",
            None,
            &[
                ("Contact", &contact),
                ("Allow", ALLOW),
                ("Server", &user_agent),
            ],
            Some(("application/sdp", body.as_bytes())),
        );
        self.out.push_back((from, ok.clone()));
        itx.tx.handle_response(now, 200, ok.clone());
        itx.call = Some(call);
        d.ok = Some(OkRetransmit::new(now, ok));
        d.state = State::Answered;
        if let Some(m) = media {
            self.events
                .push_back(Event::MediaChanged { call, media: m });
        }
    }

    /// The offer in a request, negotiated against our codecs.
    fn offer(&self, r: &Request) -> Result<Negotiated, OfferError> {
        let kind = r.common.header("Content-Type").unwrap_or_default();
        if r.common.body.is_empty() || !kind.to_ascii_lowercase().starts_with("application/sdp") {
            return Err(OfferError::NoOffer);
        }
        let sd = sdp::parse(&r.common.body).map_err(OfferError::Sdp)?;
        sdp::negotiate(&sd, &self.config.codecs).map_err(OfferError::Negotiation)
    }

    fn handle_ack(&mut self, now: Time, key: &TxKey, r: &Request) {
        // The ACK of an error response shares the INVITE's branch.
        if let Some(itx) = self.invites.get_mut(key)
            && itx.tx.state() == crate::transaction::InviteState::Completed
        {
            itx.tx.handle_ack(now);
            return;
        }
        let Some(call) = self.dialog_of(r) else {
            return;
        };
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        if let Some(ok) = &mut d.ok {
            ok.handle_ack();
        }
        d.ok = None;
        if d.state == State::Answered {
            d.state = State::Confirmed;
            if d.bye_owed {
                self.send_bye(now, call, EndReason::LocalHangup);
            }
        }
    }

    fn handle_cancel(&mut self, now: Time, from: SocketAddr, key: &TxKey, r: &Request) {
        let Some(itx) = self.invites.get(key) else {
            let tag = r.common.to_tag.is_none().then(|| self.token());
            let resp = r.response(
                481,
                "Call/Transaction Does Not Exist",
                tag.as_deref(),
                &[],
                None,
            );
            self.answer_other(now, from, key.clone(), "CANCEL", resp, 481);
            return;
        };
        let pending = itx.tx.state() == crate::transaction::InviteState::Proceeding;
        let call = itx.call;
        let tag = call
            .and_then(|c| self.dialogs.get(&c))
            .map(|d| d.local_tag.clone());
        let resp = r.response(200, "OK", tag.as_deref(), &[], None);
        self.answer_other(now, from, key.clone(), "CANCEL", resp, 200);
        if pending {
            self.final_error(now, key, 487, "Request Terminated", tag.as_deref());
            if let Some(call) = call
                && self
                    .dialogs
                    .get(&call)
                    .is_some_and(|d| d.state == State::Offered)
            {
                self.end(call, EndReason::Cancelled);
            }
        }
    }

    fn handle_bye(&mut self, now: Time, from: SocketAddr, key: &TxKey, r: &Request) {
        let Some(call) = self.dialog_of(r) else {
            let resp = r.response(481, "Call/Transaction Does Not Exist", None, &[], None);
            self.answer_other(now, from, key.clone(), "BYE", resp, 481);
            return;
        };
        let resp = r.response(200, "OK", None, &[], None);
        self.answer_other(now, from, key.clone(), "BYE", resp, 200);
        if let Some(open) = self.dialogs.get(&call).and_then(|d| d.open_invite.clone()) {
            self.final_error(now, &open, 487, "Request Terminated", None);
        }
        self.end(call, EndReason::RemoteBye);
    }

    fn handle_response(&mut self, now: Time, r: Response) {
        if r.common.cseq_method != "BYE" {
            return;
        }
        let mut finished = None;
        for (&call, d) in &mut self.dialogs {
            if let Some((branch, bye)) = &mut d.bye
                && *branch == r.common.branch
            {
                bye.handle_response(now, r.status);
                if bye.outcome().is_some() {
                    finished = Some((call, d.end_reason));
                }
                break;
            }
        }
        if let Some((call, reason)) = finished {
            self.end(call, reason);
        }
    }

    /// The dialog a request belongs to: its Call-ID, From tag (theirs) and
    /// To tag (ours).
    fn dialog_of(&self, r: &Request) -> Option<CallRef> {
        let c = &r.common;
        let call = *self.by_id.get(&(c.call_id.clone(), c.from_tag.clone()?))?;
        let d = self.dialogs.get(&call)?;
        (c.to_tag.as_deref() == Some(d.local_tag.as_str())).then_some(call)
    }

    /// Sends a 3xx-6xx to the INVITE of `key` and lets its transaction
    /// resend it until the ACK.
    fn final_error(
        &mut self,
        now: Time,
        key: &TxKey,
        status: u16,
        reason: &str,
        tag: Option<&str>,
    ) {
        let Some(itx) = self.invites.get_mut(key) else {
            return;
        };
        if itx.tx.state() != crate::transaction::InviteState::Proceeding {
            return;
        }
        let reason_line = if status == 488 {
            "Not Acceptable Here"
        } else {
            reason
        };
        let warning = format!("399 hark \"{}\"", reason.replace('"', "'"));
        let extra: Vec<(&str, &str)> = if status == 488 {
            vec![("Warning", warning.as_str())]
        } else {
            Vec::new()
        };
        let resp = itx.request.response(status, reason_line, tag, &extra, None);
        self.out.push_back((itx.peer, resp.clone()));
        itx.tx.handle_response(now, status, resp);
        if let Some(d) = itx.call.and_then(|c| self.dialogs.get_mut(&c))
            && d.open_invite.as_ref() == Some(key)
        {
            d.open_invite = None;
        }
    }

    fn send_bye(&mut self, now: Time, call: CallRef, reason: EndReason) {
        let branch = format!("z9hG4bK{}", self.token());
        let contact = self.config.contact;
        let user_agent = self.config.user_agent.clone();
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        if d.bye.is_some() {
            return;
        }
        d.local_cseq += 1;
        let mut s = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {contact};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            d.remote_target
        );
        for route in &d.route_set {
            s.push_str(&format!("Route: {route}\r\n"));
        }
        s.push_str(&format!(
            "From: {};tag={}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nUser-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n",
            d.local_uri, d.local_tag, d.remote_uri, d.call_id, d.local_cseq
        ));
        let bytes = s.into_bytes();
        self.out.push_back((d.peer, bytes.clone()));
        d.bye = Some((branch, NonInviteClient::new(now, bytes)));
        d.ok = None;
        d.state = State::Ending;
        d.end_reason = reason;
    }

    fn end(&mut self, call: CallRef, reason: EndReason) {
        if let Some(d) = self.dialogs.remove(&call) {
            self.by_id.remove(&(d.call_id, d.remote_tag));
            self.events.push_back(Event::Ended { call, reason });
        }
    }

    /// splitmix64: tags and branches that differ per call and per run.
    fn rng_next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn token(&mut self) -> String {
        format!("{:016x}", self.rng_next())
    }
}

/// Why an INVITE's offer was not taken (answered 488).
#[derive(Debug, thiserror::Error)]
enum OfferError {
    #[error("no SDP offer in the INVITE")]
    NoOffer,
    #[error("{0}")]
    Sdp(sdp::SdpError),
    #[error("{0}")]
    Negotiation(sdp::NegotiationError),
}

/// The URI of a name-addr (`"A" <sip:a@b>;tag=x` -> `sip:a@b`) or of a
/// bare addr-spec (`sip:a@b;tag=x` -> `sip:a@b`).
fn uri_of(value: &str) -> String {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>'))
        && a < b
    {
        return value[a + 1..b].to_string();
    }
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The comma-separated values of a header such as Record-Route (commas
/// inside `<...>` or quotes do not split).
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut angle, mut quote, mut start) = (false, false, 0);
    for (i, ch) in value.char_indices() {
        match ch {
            '"' => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !quote && !angle => {
                out.push(value[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim().to_string());
    out.retain(|v| !v.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_come_out_of_name_addrs() {
        assert_eq!(uri_of("\"A\" <sip:a@b:5060;lr>;tag=x"), "sip:a@b:5060;lr");
        assert_eq!(uri_of("sip:a@b;tag=x"), "sip:a@b");
    }

    #[test]
    fn record_route_lists_split_outside_brackets() {
        assert_eq!(
            split_list("<sip:p1;lr>, <sip:p2,x;lr>,<sip:p3>"),
            ["<sip:p1;lr>", "<sip:p2,x;lr>", "<sip:p3>"]
        );
    }
}
