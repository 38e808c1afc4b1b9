//! Sample rates, audio frames and time as the core sees them.
//!
//! Time is an input here: [`Time`] is a point on a clock the driver owns
//! (microseconds since an epoch it chose). The core never reads a clock, so a
//! test can run a 30-second call in a few milliseconds.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// The length of one outbound frame: Asterisk's default 20 ms ptime.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// A sample rate in Hz. Always within 1 Hz ..= 192 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRate(u32);

impl SampleRate {
    /// Narrowband telephony (AudioSocket kind 0x10).
    pub const HZ_8000: SampleRate = SampleRate(8_000);
    /// Wideband telephony (AudioSocket kind 0x12).
    pub const HZ_16000: SampleRate = SampleRate(16_000);
    /// Opus and most sound cards.
    pub const HZ_48000: SampleRate = SampleRate(48_000);

    /// Highest rate AudioSocket carries.
    const MAX_HZ: u32 = 192_000;

    /// A rate from Hz; `None` for 0 or above 192 kHz.
    pub const fn new(hz: u32) -> Option<SampleRate> {
        if hz == 0 || hz > Self::MAX_HZ {
            None
        } else {
            Some(SampleRate(hz))
        }
    }

    /// For tables whose rates are known valid.
    pub(crate) const fn from_hz_unchecked(hz: u32) -> SampleRate {
        SampleRate(hz)
    }

    /// The rate in Hz.
    pub const fn hz(self) -> u32 {
        self.0
    }

    /// Samples in `d` at this rate, rounded down.
    pub fn samples_in(self, d: Duration) -> usize {
        // u128 arithmetic: no overflow for any Duration.
        (d.as_nanos() * u128::from(self.0) / 1_000_000_000) as usize
    }

    /// Samples in one 20 ms frame (44.1 kHz: 882).
    pub fn frame_samples(self) -> usize {
        self.samples_in(FRAME_DURATION)
    }

    /// How long `samples` last at this rate.
    pub fn duration_of(self, samples: usize) -> Duration {
        Duration::from_nanos((samples as u64).saturating_mul(1_000_000_000) / u64::from(self.0))
    }
}

impl fmt::Display for SampleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz", self.0)
    }
}

/// A borrowed run of mono signed 16-bit samples at a known rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The rate of `samples`.
    pub rate: SampleRate,
    /// The audio.
    pub samples: &'a [i16],
}

impl<'a> Frame<'a> {
    /// A frame view over `samples`.
    pub fn new(rate: SampleRate, samples: &'a [i16]) -> Self {
        Self { rate, samples }
    }

    /// How long the frame lasts.
    pub fn duration(&self) -> Duration {
        self.rate.duration_of(self.samples.len())
    }
}

/// A point in time on the driver's clock, in microseconds since its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Time(u64);

impl Time {
    /// The driver's epoch (for a call: when its connection was accepted).
    pub const ZERO: Time = Time(0);

    /// A time `micros` after the epoch.
    pub const fn from_micros(micros: u64) -> Time {
        Time(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time since the epoch.
    pub fn since_epoch(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        // Saturate rather than wrap: a call does not last 584,000 years.
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_per_rate() {
        let cases = [
            (8_000, 160),
            (12_000, 240),
            (16_000, 320),
            (24_000, 480),
            (32_000, 640),
            (44_100, 882),
            (48_000, 960),
            (96_000, 1_920),
            (192_000, 3_840),
        ];
        for (hz, n) in cases {
            assert_eq!(SampleRate::new(hz).unwrap().frame_samples(), n, "{hz}");
        }
        assert_eq!(SampleRate::new(0), None);
        assert_eq!(SampleRate::new(192_001), None);
    }

    #[test]
    fn durations_and_times() {
        let r = SampleRate::HZ_8000;
        assert_eq!(r.duration_of(240), Duration::from_millis(30));
        assert_eq!(r.samples_in(Duration::from_millis(250)), 2_000);
        let t = Time::from_micros(1_000) + Duration::from_millis(20);
        assert_eq!(t.as_micros(), 21_000);
        assert_eq!(t - Time::from_micros(1_000), Duration::from_millis(20));
        assert_eq!(Time::ZERO - t, Duration::ZERO);
    }
}
