//! Flushing playout mid-reply (what barge-in does): nothing queued survives.

use std::time::Duration;

use media_core::{Playout, SampleRate, Time};

#[test]
fn flush_mid_playout_stops_within_one_frame() {
    let rate = SampleRate::HZ_8000;
    let mut p = Playout::new(rate, Duration::from_secs(10), 2);
    let reply: Vec<i16> = (0..rate.samples_in(Duration::from_secs(3)))
        .map(|i| (i % 1000) as i16 + 1)
        .collect();
    p.push(Time::ZERO, &reply);
    let mut out = [0i16; 160];
    let mut now = Time::ZERO;
    let mut sent = 0;
    // Play 1 s of the 3 s reply.
    while now < Time::from_micros(1_000_000) {
        while p.poll_frame(now, &mut out).is_some() {
            sent += 1;
        }
        now = p.poll_timeout().expect("still playing");
    }
    // Caller talks over it: flush. At most the send-ahead was already out.
    let dropped = p.flush();
    assert_eq!(dropped + sent * 160, reply.len());
    assert!(sent <= 50 + 2, "sent {sent} frames in 1 s");
    assert_eq!(p.poll_frame(now, &mut out), None);
    assert_eq!(p.poll_timeout(), None);
    for later in [20u64, 40, 1_000] {
        assert_eq!(
            p.poll_frame(now + Duration::from_millis(later), &mut out),
            None
        );
    }
    // The next reply plays from its own start.
    p.push(now, &[9; 160]);
    assert_eq!(p.poll_frame(now, &mut out), Some(160));
    assert_eq!(out[0], 9);
}
