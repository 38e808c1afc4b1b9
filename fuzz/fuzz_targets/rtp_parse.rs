//! Arbitrary datagrams on an RTP port: parsing never panics, a parsed
//! packet re-sent through our sender parses back to the same payload, and
//! telephone-event parsing of any payload is safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_bridge::rtp::{self, DtmfReceiver, RtpSender};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = rtp::parse(data) else {
        return;
    };
    let mut rx = DtmfReceiver::default();
    let _ = rx.handle(p.timestamp, p.payload);
    let mut tx = RtpSender::new(u64::from(p.ssrc));
    let mut out = Vec::new();
    tx.packet(p.payload_type & 0x7f, p.marker, p.payload, 160, &mut out)
        .expect("our own packet marshals");
    let back = rtp::parse(&out).expect("our own packet parses");
    assert_eq!(back.payload, p.payload);
    assert_eq!(back.payload_type, p.payload_type & 0x7f);
});
