//! Arbitrary exchanges with the UAS: the input is split into datagrams at
//! each zero byte (the first byte of each moves the clock, by up to 64 s),
//! and every other call offered is accepted, the rest hung up. The UAS
//! must never panic, and everything it sends must parse as SIP.
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
        while let Some((_, bytes)) = uas.poll_transmit() {
            assert!(message::parse(&bytes).is_ok(), "hark sent unparseable SIP");
        }
    }
});
