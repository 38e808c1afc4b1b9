//! Arbitrary bytes from a peer: the AudioSocket decoder and the call session
//! behind it must never panic, never over-read, and always make progress or
//! stop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_core::audiosocket::Decoder;
use media_core::{CallConfig, Echo, MAX_TRANSMIT, Session, Time};

fuzz_target!(|data: &[u8]| {
    // First two bytes pick the payload limit and how the stream is split.
    let (limit, split, bytes) = match data {
        [a, b, rest @ ..] => (usize::from(*a) * 64 + 1, usize::from(*b) + 1, rest),
        _ => return,
    };
    let decoder = Decoder::new(limit);
    let mut session = Session::new(
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
                    session.handle_message(now, message);
                    used += n;
                }
                Err(e) if e.is_incomplete() => break,
                Err(e) => {
                    session.handle_protocol_error(now, e);
                    break;
                }
            }
        }
        buf.drain(..used);
        session.handle_timeout(now);
        while let Some(transmit) = session.poll_transmit(now) {
            let n = transmit.encode(&mut out).expect("a frame we made fits MAX_TRANSMIT");
            assert!(n <= MAX_TRANSMIT);
        }
        while session.poll_event().is_some() {}
        if session.is_closed() {
            break;
        }
    }
});
