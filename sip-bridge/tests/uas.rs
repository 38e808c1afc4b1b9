//! The UAS on a simulated clock: whole exchanges as a SIP peer sees them.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use media_core::Time;
use sip_bridge::message::{self, Message, Response};
use sip_bridge::sdp::Codec;
use sip_bridge::uas::{CallRef, EndReason, Event, Uas, UasConfig};

const PEER: &str = "192.0.2.10:5060";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn ms(t: u64) -> Time {
    Time::from_micros(t * 1000)
}

fn uas(max_calls: usize) -> Uas {
    Uas::new(
        UasConfig {
            contact: "127.0.0.1:5080".parse().unwrap(),
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
            max_calls,
            user_agent: "hark-test".into(),
        },
        42,
    )
}

fn offer(formats: &str, direction: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio {port} RTP/AVP {formats}\r\na=rtpmap:107 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:102 telephone-event/48000\r\na={direction}\r\n"
    )
}

/// A request from the peer. `to_tag` makes it in-dialog.
fn request(
    method: &str,
    branch: &str,
    cseq: u32,
    call_id: &str,
    to_tag: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let to = match to_tag {
        Some(t) => format!("<sip:hark@127.0.0.1:5080>;tag={t}"),
        None => "<sip:hark@127.0.0.1:5080>".into(),
    };
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} sip:hark@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP {PEER};rport;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@192.0.2.10>;tag=alice1\r\n\
To: {to}\r\n\
Contact: <sip:alice@192.0.2.10:5060>\r\n\
Record-Route: <sip:proxy.example;lr>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn sent(u: &mut Uas) -> Vec<Response> {
    let mut out = Vec::new();
    while let Some((to, bytes)) = u.poll_transmit() {
        assert_eq!(to, peer(), "replies go where requests came from");
        match message::parse(&bytes).expect("hark writes valid SIP") {
            Message::Response(r) => out.push(r),
            Message::Request(r) => panic!("unexpected request {:?}", r.method),
        }
    }
    out
}

fn statuses(rs: &[Response]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

fn events(u: &mut Uas) -> Vec<Event> {
    std::iter::from_fn(|| u.poll_event()).collect()
}

/// INVITE, accept, ACK: an established call and our To tag.
fn establish(u: &mut Uas, call_id: &str) -> (CallRef, String) {
    let body = offer("107 0 8 101 102", "sendrecv", 14000);
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKi1", 1, call_id, None, &body),
    );
    assert_eq!(statuses(&sent(u)), [100]);
    let Some(Event::Incoming { call, media, .. }) = u.poll_event() else {
        panic!("no Incoming");
    };
    assert_eq!(
        media.codec,
        Codec::Opus,
        "our first preference the offer has"
    );
    u.accept(ms(5), call, "127.0.0.1:30000".parse().unwrap());
    let rs = sent(u);
    assert_eq!(statuses(&rs), [180, 200]);
    let ok = &rs[1];
    let tag = ok.common.to_tag.clone().expect("a To tag");
    assert_eq!(
        rs[0].common.to_tag.as_deref(),
        Some(tag.as_str()),
        "one tag for the dialog"
    );
    let answer = String::from_utf8(ok.common.body.clone()).unwrap();
    // Every codec both sides have, ours first, then telephone-event: an
    // offerer that cannot translate Opus (Asterisk without codec_opus)
    // can still take PCMU or PCMA.
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 107 0 8 102"),
        "{answer}"
    );
    assert!(answer.contains("a=sendrecv"));
    u.handle_datagram(
        ms(20),
        peer(),
        &request("ACK", "z9hG4bKa1", 1, call_id, Some(&tag), ""),
    );
    assert!(sent(u).is_empty(), "nothing answers an ACK");
    (call, tag)
}

#[test]
fn a_call_is_answered_and_the_peer_hangs_up() {
    let mut u = uas(4);
    let (call, tag) = establish(&mut u, "c1");
    u.handle_timeout(ms(2000));
    assert!(sent(&mut u).is_empty(), "the ACK stopped the 200 resends");
    u.handle_datagram(
        ms(3000),
        peer(),
        &request("BYE", "z9hG4bKb1", 2, "c1", Some(&tag), ""),
    );
    assert_eq!(statuses(&sent(&mut u)), [200]);
    assert_eq!(
        events(&mut u),
        [Event::Ended {
            call,
            reason: EndReason::RemoteBye
        }]
    );
    assert_eq!(u.calls(), 0);
    // The BYE again: the same 200 again, no second event.
    u.handle_datagram(
        ms(3100),
        peer(),
        &request("BYE", "z9hG4bKb1", 2, "c1", Some(&tag), ""),
    );
    assert_eq!(statuses(&sent(&mut u)), [200]);
    assert!(events(&mut u).is_empty());
}

#[test]
fn the_200_is_resent_until_the_ack_and_a_retransmitted_invite_gets_it_too() {
    let mut u = uas(4);
    let body = offer("0 101", "sendrecv", 14000);
    let invite = request("INVITE", "z9hG4bKi1", 1, "c2", None, &body);
    u.handle_datagram(ms(0), peer(), &invite);
    let _ = sent(&mut u);
    // Retransmitted before the answer: the 100 again.
    u.handle_datagram(ms(10), peer(), &invite);
    assert_eq!(statuses(&sent(&mut u)), [100]);
    let Some(Event::Incoming { call, media, .. }) = u.poll_event() else {
        panic!()
    };
    assert_eq!(
        (media.codec, media.telephone_event),
        (Codec::Pcmu, Some(101))
    );
    u.accept(ms(20), call, "127.0.0.1:30002".parse().unwrap());
    let tag = sent(&mut u)[1].common.to_tag.clone().unwrap();
    u.handle_datagram(ms(100), peer(), &invite);
    assert_eq!(statuses(&sent(&mut u)), [200]);
    u.handle_timeout(ms(520));
    assert_eq!(statuses(&sent(&mut u)), [200], "Timer G-like resend at T1");
    u.handle_timeout(ms(1520));
    assert_eq!(statuses(&sent(&mut u)), [200], "then at 2·T1");
    u.handle_datagram(
        ms(1600),
        peer(),
        &request("ACK", "z9hG4bKa1", 1, "c2", Some(&tag), ""),
    );
    u.handle_timeout(ms(4000));
    assert!(sent(&mut u).is_empty());
}

#[test]
fn no_ack_in_64_t1_ends_the_call_with_a_bye() {
    let mut u = uas(4);
    let body = offer("0", "sendrecv", 14000);
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKi1", 1, "c3", None, &body),
    );
    let Some(Event::Incoming { call, .. }) = u.poll_event() else {
        panic!()
    };
    u.accept(ms(0), call, "127.0.0.1:30004".parse().unwrap());
    let mut now = 0;
    let mut bye = None;
    while let Some(t) = u.poll_timeout() {
        now = t.as_micros() / 1000;
        assert!(now <= 70_000, "runs away");
        u.handle_timeout(t);
        while let Some((_, b)) = u.poll_transmit() {
            if let Ok(Message::Request(r)) = message::parse(&b) {
                bye.get_or_insert(r);
            }
        }
        if bye.is_some() {
            break;
        }
    }
    let bye = bye.expect("a BYE");
    assert_eq!(now, 32_000);
    assert_eq!(bye.uri, "sip:alice@192.0.2.10:5060", "to the Contact");
    assert_eq!(bye.common.header("Route"), Some("<sip:proxy.example;lr>"));
    assert!(bye.common.from_tag.is_some());
    assert_eq!(bye.common.to_tag.as_deref(), Some("alice1"));
    // The peer answers the BYE.
    let ok = bye.response(200, "OK", None, &[], None);
    u.handle_datagram(ms(now + 50), peer(), &ok);
    assert_eq!(
        events(&mut u),
        [Event::Ended {
            call,
            reason: EndReason::NoAck
        }]
    );
}

#[test]
fn our_hangup_sends_bye_resent_until_answered() {
    let mut u = uas(4);
    let (call, _) = establish(&mut u, "c4");
    u.hangup(ms(1000), call);
    let (_, b) = u.poll_transmit().expect("BYE");
    let Ok(Message::Request(bye)) = message::parse(&b) else {
        panic!()
    };
    assert_eq!(bye.common.cseq_method, "BYE");
    u.handle_timeout(ms(1500));
    let (_, again) = u.poll_transmit().expect("Timer E resend");
    assert_eq!(again, b);
    u.handle_datagram(ms(1600), peer(), &bye.response(200, "OK", None, &[], None));
    assert_eq!(
        events(&mut u),
        [Event::Ended {
            call,
            reason: EndReason::LocalHangup
        }]
    );
    // Only the INVITE transaction's Timer L (64·T1 after the 200) is left.
    assert_eq!(u.poll_timeout(), Some(ms(32_005)));
    u.handle_timeout(ms(32_005));
    assert_eq!(u.poll_timeout(), None, "nothing left to do");
    assert!(u.poll_transmit().is_none());
}

#[test]
fn a_hangup_before_the_ack_waits_for_it() {
    let mut u = uas(4);
    let body = offer("0", "sendrecv", 14000);
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKi1", 1, "c5", None, &body),
    );
    let Some(Event::Incoming { call, .. }) = u.poll_event() else {
        panic!()
    };
    u.accept(ms(0), call, "127.0.0.1:30006".parse().unwrap());
    let tag = sent(&mut u)[1].common.to_tag.clone().unwrap();
    u.hangup(ms(10), call);
    assert!(u.poll_transmit().is_none(), "no BYE before the ACK");
    u.handle_datagram(
        ms(30),
        peer(),
        &request("ACK", "z9hG4bKa1", 1, "c5", Some(&tag), ""),
    );
    let (_, b) = u.poll_transmit().expect("the BYE once acknowledged");
    assert!(b.starts_with(b"BYE "));
}

#[test]
fn cancel_before_the_answer_gets_200_and_the_invite_487() {
    let mut u = uas(4);
    let body = offer("0", "sendrecv", 14000);
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKi9", 1, "c6", None, &body),
    );
    let Some(Event::Incoming { call, .. }) = u.poll_event() else {
        panic!()
    };
    let _ = sent(&mut u);
    u.handle_datagram(
        ms(50),
        peer(),
        &request("CANCEL", "z9hG4bKi9", 1, "c6", None, ""),
    );
    let rs = sent(&mut u);
    assert_eq!(statuses(&rs), [200, 487]);
    assert_eq!(rs[1].common.cseq_method, "INVITE");
    assert_eq!(
        events(&mut u),
        [Event::Ended {
            call,
            reason: EndReason::Cancelled
        }]
    );
    // Accepting now does nothing: the call is gone.
    u.accept(ms(60), call, "127.0.0.1:30008".parse().unwrap());
    assert!(sent(&mut u).is_empty());
    // The 487 is resent until the ACK (same branch), then stops.
    u.handle_timeout(ms(550));
    assert_eq!(statuses(&sent(&mut u)), [487]);
    let tag = rs[1].common.to_tag.clone().unwrap();
    u.handle_datagram(
        ms(600),
        peer(),
        &request("ACK", "z9hG4bKi9", 1, "c6", Some(&tag), ""),
    );
    u.handle_timeout(ms(3000));
    assert!(sent(&mut u).is_empty());
    // A CANCEL for nothing: 481.
    u.handle_datagram(
        ms(700),
        peer(),
        &request("CANCEL", "z9hG4bKzz", 1, "c7", None, ""),
    );
    assert_eq!(statuses(&sent(&mut u)), [481]);
}

#[test]
fn refusals_488_486_481_501() {
    let mut u = uas(1);
    // Only G.722 offered: 488 with a Warning saying why.
    let g722 = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 14000 RTP/AVP 9\r\n";
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKx1", 1, "r1", None, g722),
    );
    let rs = sent(&mut u);
    assert_eq!(statuses(&rs), [100, 488]);
    assert!(
        rs[1]
            .common
            .header("Warning")
            .unwrap()
            .contains("no codec in common")
    );
    // No SDP at all: 488 too (offerless INVITEs are not taken).
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKx2", 1, "r2", None, ""),
    );
    assert_eq!(statuses(&sent(&mut u)), [100, 488]);
    // Garbage SDP: 488, no panic.
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKx3", 1, "r3", None, "v=9\r\nm=\r\n"),
    );
    assert_eq!(statuses(&sent(&mut u)), [100, 488]);
    // One call fits; the second is busy.
    let _ = establish(&mut u, "r4");
    let body = offer("0", "sendrecv", 14002);
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKx5", 1, "r5", None, &body),
    );
    assert_eq!(statuses(&sent(&mut u)), [100, 486]);
    // BYE for a dialog nobody has: 481.
    u.handle_datagram(
        ms(0),
        peer(),
        &request("BYE", "z9hG4bKx6", 2, "nope", Some("t"), ""),
    );
    assert_eq!(statuses(&sent(&mut u)), [481]);
    // A method hark does not do: 501 with Allow.
    u.handle_datagram(
        ms(0),
        peer(),
        &request("SUBSCRIBE", "z9hG4bKx7", 1, "r7", None, ""),
    );
    let rs = sent(&mut u);
    assert_eq!(statuses(&rs), [501]);
    assert!(rs[0].common.header("Allow").unwrap().contains("INVITE"));
    // OPTIONS: 200.
    u.handle_datagram(
        ms(0),
        peer(),
        &request("OPTIONS", "z9hG4bKx8", 1, "r8", None, ""),
    );
    assert_eq!(statuses(&sent(&mut u)), [200]);
    // Not SIP: dropped, counted.
    u.handle_datagram(ms(0), peer(), b"\x80\x00garbage");
    assert!(sent(&mut u).is_empty());
    assert_eq!(u.malformed(), 1);
}

#[test]
fn reinvite_holds_unholds_and_changes_codec() {
    let mut u = uas(4);
    let (call, tag) = establish(&mut u, "h1");
    let mut cseq = 2;
    let mut reinvite = |u: &mut Uas, formats: &str, dir: &str, port: u16| {
        let branch = format!("z9hG4bKre{cseq}");
        let body = offer(formats, dir, port);
        u.handle_datagram(
            ms(100),
            peer(),
            &request("INVITE", &branch, cseq, "h1", Some(&tag), &body),
        );
        let rs = sent(u);
        u.handle_datagram(
            ms(120),
            peer(),
            &request("ACK", &format!("{branch}a"), cseq, "h1", Some(&tag), ""),
        );
        cseq += 1;
        rs
    };
    // Hold: the peer sends only; we answer recvonly.
    let rs = reinvite(&mut u, "107 101", "sendonly", 14000);
    assert_eq!(statuses(&rs), [100, 200]);
    let answer = String::from_utf8(rs[1].common.body.clone()).unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(
        answer.contains("o=hark ") && answer.contains(" 2 IN IP4"),
        "version bumped: {answer}"
    );
    let Some(Event::MediaChanged { media, .. }) = u.poll_event() else {
        panic!()
    };
    assert!(media.on_hold());
    // Unhold.
    let rs = reinvite(&mut u, "107 101", "sendrecv", 14000);
    assert_eq!(statuses(&rs), [100, 200]);
    let Some(Event::MediaChanged { media, .. }) = u.poll_event() else {
        panic!()
    };
    assert!(!media.on_hold());
    // Codec change to PCMA on a new port.
    let _ = reinvite(&mut u, "8", "sendrecv", 16000);
    let Some(Event::MediaChanged { call: c, media }) = u.poll_event() else {
        panic!()
    };
    assert_eq!(
        (c, media.codec, media.remote.port()),
        (call, Codec::Pcma, 16000)
    );
    // A re-offer with nothing we take: 488, the call keeps PCMA.
    let rs = reinvite(&mut u, "9", "sendrecv", 16000);
    assert_eq!(statuses(&rs), [100, 488]);
    assert_eq!(u.media(call).unwrap().codec, Codec::Pcma);
    assert!(u.poll_event().is_none());
    // The call is still up.
    assert_eq!(u.calls(), 1);
}

#[test]
fn reinvite_for_an_unknown_dialog_is_481_and_overlapping_is_491() {
    let mut u = uas(4);
    let body = offer("0", "sendrecv", 14000);
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKq1", 5, "q1", Some("nosuch"), &body),
    );
    assert_eq!(statuses(&sent(&mut u)), [100, 481]);
    // Answered but not acknowledged yet: a re-INVITE must wait.
    u.handle_datagram(
        ms(0),
        peer(),
        &request("INVITE", "z9hG4bKq2", 1, "q2", None, &body),
    );
    let Some(Event::Incoming { call, .. }) = u.poll_event() else {
        panic!()
    };
    u.accept(ms(0), call, "127.0.0.1:30010".parse().unwrap());
    let tag = sent(&mut u)[1].common.to_tag.clone().unwrap();
    u.handle_datagram(
        ms(10),
        peer(),
        &request("INVITE", "z9hG4bKq3", 2, "q2", Some(&tag), &body),
    );
    assert_eq!(statuses(&sent(&mut u)), [100, 491]);
}

#[test]
fn timers_run_down_to_nothing() {
    let mut u = uas(4);
    let (call, tag) = establish(&mut u, "t1");
    u.handle_datagram(
        ms(100),
        peer(),
        &request("OPTIONS", "z9hG4bKo", 2, "t1", Some(&tag), ""),
    );
    u.handle_datagram(
        ms(200),
        peer(),
        &request("BYE", "z9hG4bKb", 3, "t1", Some(&tag), ""),
    );
    let _ = sent(&mut u);
    assert_eq!(
        events(&mut u),
        [Event::Ended {
            call,
            reason: EndReason::RemoteBye
        }]
    );
    let mut now = ms(200);
    while let Some(t) = u.poll_timeout() {
        assert!(
            t < now + Duration::from_secs(40),
            "Timers J and L end within 64·T1"
        );
        now = t;
        u.handle_timeout(t);
    }
    assert!(sent(&mut u).is_empty());
}
