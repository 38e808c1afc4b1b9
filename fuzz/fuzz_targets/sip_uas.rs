//! Arbitrary exchanges with the UAS: the input is split into datagrams at
//! each zero byte (the first byte of each moves the clock, by up to 64 s),
//! and every other call offered is accepted, the rest hung up. The UAS
//! must never panic, and sends only responses and its own BYE. (What it
//! sends need not parse again: responses copy the request's From and To,
//! and rsip takes header text in a request it then refuses in a response;
//! see `sip_parse`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_core::Time;
use sip_bridge::message;
use sip_bridge::sdp::Codec;
use sip_bridge::uas::{Event, Uas, UasConfig};

fuzz_target!(|data: &[u8]| {
    let mut uas = Uas::new(
        UasConfig {
            contact: "127.0.0.1:5060".parse().expect("addr"),
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
            max_calls: 2,
            user_agent: "fuzz".into(),
        },
        1,
    );
    let peer = "192.0.2.1:5060".parse().expect("addr");
    let mut now = 0u64;
    let mut parity = false;
    for chunk in data.split(|&b| b == 0).filter(|c| !c.is_empty()) {
        now += u64::from(chunk[0]) * 250_000;
        let t = Time::from_micros(now);
        uas.handle_datagram(t, peer, &chunk[1..]);
        if uas.poll_timeout().is_some_and(|d| d <= t) {
            uas.handle_timeout(t);
        }
        while let Some(e) = uas.poll_event() {
            if let Event::Incoming { call, .. } = e {
                parity = !parity;
                if parity {
                    uas.accept(t, call, "127.0.0.1:30000".parse().expect("addr"));
                } else {
                    uas.hangup(t, call);
                }
            }
        }
        while let Some((to, bytes)) = uas.poll_transmit() {
            assert_eq!(to, peer, "replies go where requests came from");
            assert!(
                bytes.starts_with(b"SIP/2.0 ") || bytes.starts_with(b"BYE "),
                "hark sent something else"
            );
            if let Ok(message::Message::Request(r)) = message::parse(&bytes) {
                assert_eq!(r.method, message::Method::Bye);
            }
        }
    }
});
