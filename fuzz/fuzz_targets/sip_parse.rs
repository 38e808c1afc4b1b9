//! Arbitrary datagrams on the SIP port: parsing never panics, and a
//! response hark writes to any request it accepts parses back as a
//! response to that request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_bridge::message::{self, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(Message::Request(req)) = message::parse(data) else {
        return;
    };
    let out = req.response(486, "Busy Here", Some("hk1"), &[], None);
    match message::parse(&out) {
        Ok(Message::Response(r)) => {
            assert_eq!(r.status, 486);
            assert_eq!(r.common.call_id, req.common.call_id);
            assert_eq!(r.common.cseq, req.common.cseq);
        }
        // A request rsip took may carry header text rsip then refuses to
        // read back; that must be an error, never a panic.
        Ok(Message::Request(_)) => panic!("a response parsed as a request"),
        Err(_) => {}
    }
});
