//! Arbitrary SDP from a SIP peer: parsing never panics, and an offer that
//! negotiates gives an answer that parses and negotiates to the same codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_bridge::sdp::{self, Codec};

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = sdp::parse(data) else {
        return;
    };
    for prefs in [
        &[Codec::Pcmu, Codec::Pcma, Codec::Opus][..],
        &[Codec::Opus][..],
        &[Codec::Pcma][..],
    ] {
        let Ok(n) = sdp::negotiate(&offer, prefs) else {
            continue;
        };
        let text = sdp::answer(&n, "127.0.0.1:30000".parse().expect("literal"), 1, 1);
        let back = sdp::parse(text.as_bytes()).expect("our answer parses");
        let again = sdp::negotiate(&back, &[n.codec]).expect("our answer negotiates");
        assert_eq!(again.payload_type, n.payload_type);
        assert_eq!(back.media.len(), offer.media.len());
    }
});
