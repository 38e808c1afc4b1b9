//! Latency percentiles from hdrhistogram, in microseconds.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// p50 / p95 / p99 / max of a set of durations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Percentiles {
    /// Percentiles of `values`, recorded at microsecond resolution.
    pub fn from_durations(values: impl IntoIterator<Item = Duration>) -> Self {
        let mut h = LatencyHistogram::new();
        for v in values {
            h.record(v);
        }
        h.percentiles()
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n={})",
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// A histogram of durations from 1 us to 1 hour, 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("bounds 1..1h with 3 digits are valid for hdrhistogram"),
        )
    }

    /// Records one value (clamped into range).
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        // In range by the clamp above, so this cannot fail.
        let _ = self.0.record(us);
    }

    /// Adds another histogram's values.
    pub fn add(&mut self, other: &LatencyHistogram) {
        let _ = self.0.add(&other.0);
    }

    /// The summary.
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
        Percentiles {
            count: h.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: Duration::from_micros(h.max()),
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_set() {
        let p = Percentiles::from_durations((1..=100).map(Duration::from_millis));
        assert_eq!(p.count, 100);
        assert!((p.p50.as_millis() as i64 - 50).abs() <= 1);
        assert!((p.p99.as_millis() as i64 - 99).abs() <= 1);
        assert_eq!(p.max.as_millis(), 100);
        assert_eq!(Percentiles::from_durations([]), Percentiles::default());
    }
}
