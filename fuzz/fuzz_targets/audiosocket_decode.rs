//! Arbitrary bytes from a peer: the AudioSocket decoder and the call state
//! machine behind it must never panic, never over-read, and always make
//! progress or stop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_core::audiosocket::Decoder;
use media_core::{Call, CallConfig, Echo, MAX_TRANSMIT, Time};

fuzz_target!(|data: &[u8]| {
    // First two bytes pick the payload limit and how the stream is split.
    let (limit, split, bytes) = match data {
        [a, b, rest @ ..] => (usize::from(*a) * 64 + 1, usize::from(*b) + 1, rest),
        _ => return,
    };
    let decoder = Decoder::new(limit);
    let mut call = Call::new(
        Time::ZERO,
        CallConfig::default(),
        Box::new(Echo::new(std::time::Duration::from_millis(40))),
    );
    let mut out = vec![0u8; MAX_TRANSMIT];
    let mut buf = Vec::new();
    let mut now = Time::ZERO;
    for chunk in bytes.chunks(split) {
        now = now + std::time::Duration::from_millis(7);
        buf.extend_from_slice(chunk);
        let mut used = 0;
        loop {
            match decoder.decode(&buf[used..]) {
                Ok((message, n)) => {
                    assert!(n >= 3 && used + n <= buf.len());
                    assert_eq!(n, message.wire_len());
                    call.handle_message(now, message);
                    used += n;
                }
                Err(e) if e.is_incomplete() => break,
                Err(e) => {
                    call.handle_protocol_error(now, e);
                    break;
                }
            }
        }
        buf.drain(..used);
        call.handle_timeout(now);
        while let Some(n) = call.poll_transmit(now, &mut out) {
            assert!(n <= MAX_TRANSMIT);
        }
        while call.poll_event().is_some() {}
        if call.is_closed() {
            break;
        }
    }
});
