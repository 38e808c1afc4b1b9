//! The echo agent: the caller hears themselves after a fixed delay.
//!
//! The classic line test. The reply stream is the caller's stream shifted by
//! `delay`: silence for `delay`, then the caller's samples unchanged. When the
//! caller goes quiet long enough for playout to run dry (a Local channel sends
//! no frames during silence), the next audio starts again with the delay.

use std::time::Duration;

use crate::agent::{Agent, Digit};
use crate::frame::{Frame, Time};
use crate::playout::Playout;

/// Returns the caller's audio after a fixed delay.
#[derive(Debug, Clone)]
pub struct Echo {
    delay: Duration,
    digits: u64,
}

impl Echo {
    /// An echo with the given delay.
    pub fn new(delay: Duration) -> Self {
        Self { delay, digits: 0 }
    }

    /// The configured delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// DTMF digits seen (echo does not act on them).
    pub fn digits_seen(&self) -> u64 {
        self.digits
    }
}

impl Agent for Echo {
    fn handle_audio(&mut self, now: Time, frame: Frame<'_>, playout: &mut Playout) {
        if playout.is_idle() {
            playout.push_silence(now, self.delay);
        }
        playout.push(now, frame.samples);
    }

    fn handle_dtmf(&mut self, _now: Time, _digit: Digit, _playout: &mut Playout) {
        self.digits += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SampleRate;

    #[test]
    fn delay_then_the_same_samples() {
        let rate = SampleRate::HZ_8000;
        let mut p = Playout::new(rate, Duration::from_secs(2), 0);
        let mut echo = Echo::new(Duration::from_millis(40));
        let input: Vec<i16> = (1..=320).collect();
        echo.handle_audio(Time::ZERO, Frame::new(rate, &input), &mut p);
        let mut got = Vec::new();
        let mut out = [0i16; 160];
        let mut now = Time::ZERO;
        while let Some(next) = p.poll_timeout() {
            now = now.max(next);
            while let Some(n) = p.poll_frame(now, &mut out) {
                got.extend_from_slice(&out[..n]);
            }
        }
        assert_eq!(got.len(), 320 + 320);
        assert!(got[..320].iter().all(|&s| s == 0));
        assert_eq!(&got[320..], &input[..]);
        echo.handle_dtmf(now, Digit::from_ascii(b'5').unwrap(), &mut p);
        assert_eq!(echo.digits_seen(), 1);
    }
}
