//! Arbitrary text from the ARI events websocket: the event parser must
//! never panic, and whatever it accepts must name its type and, for a
//! channel event, a channel.
#![no_main]

use ari_client::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The websocket delivers text frames; tungstenite has checked UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = Event::parse(text) {
        assert!(!event.kind().is_empty() || matches!(event, Event::Other { .. }));
        if matches!(
            event,
            Event::StasisStart { .. } | Event::StasisEnd { .. } | Event::ChannelDestroyed { .. }
        ) {
            assert!(event.channel_id().is_some());
        }
    }
});
