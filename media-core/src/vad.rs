//! Voice activity detection: a speech probability per window, nothing more.
//!
//! A [`Vad`] is a synchronous function of the audio it has seen: it returns a
//! probability for each fixed-size window and sends no events. Decisions
//! (when a turn starts and ends) belong to the endpointer, so the same VAD can
//! serve endpointing and barge-in, and a test can replace it with a script.
//!
//! [`EnergyVad`] is the no-model fallback: energy above an adaptive noise
//! floor, with steady tones (DTMF, dial tone, fax) rejected because a
//! 4th-order linear predictor explains them almost perfectly, which speech and
//! noise never allow.

use std::fmt;

use crate::frame::SampleRate;

/// Why a VAD could not score a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VadError {
    /// The window had the wrong number of samples.
    #[error("VAD window of {got} samples, expected {expected}")]
    WindowSize {
        /// What the VAD needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
    /// The model failed to run (the engine logs the details).
    #[error("VAD inference failed")]
    Inference,
}

/// The error for a window of the wrong size, or `Ok` (for `Vad` impls).
pub fn check_window(expected: usize, window: &[i16]) -> Result<(), VadError> {
    if window.len() == expected {
        Ok(())
    } else {
        Err(VadError::WindowSize {
            expected,
            got: window.len(),
        })
    }
}

/// A per-call voice activity detector.
pub trait Vad: Send + fmt::Debug {
    /// The rate windows must be at.
    fn rate(&self) -> SampleRate;

    /// Samples in one window (Silero: 256 at 8 kHz, 512 at 16 kHz).
    fn window_samples(&self) -> usize;

    /// The probability, 0.0 to 1.0, that `window` contains speech. Windows
    /// must be passed in stream order: a VAD may keep state between them.
    fn probability(&mut self, window: &[i16]) -> Result<f32, VadError>;

    /// Forgets the stream so far (a new call, or after a long gap).
    fn reset(&mut self);
}

/// Settings for [`EnergyVad`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyVadConfig {
    /// Speech must be this many dB above the noise floor.
    pub margin_db: f32,
    /// Nothing quieter than this (dBFS) is speech, however quiet the line.
    pub min_level_db: f32,
    /// A window whose prediction gain exceeds this (dB) is a steady tone.
    pub tone_gain_db: f32,
}

impl Default for EnergyVadConfig {
    fn default() -> Self {
        Self {
            // 12 dB: phone speech sits 20-40 dB over line noise; 12 leaves room
            // for soft speakers without firing on noise bursts.
            margin_db: 12.0,
            // -50 dBFS: below this a G.711 line carries only idle noise.
            min_level_db: -50.0,
            // Measured on 32 ms windows: DTMF pairs and dial tone score 65-73 dB
            // (also when the tone starts or stops inside the window),
            // espeak-ng speech at most 23 dB.
            tone_gain_db: 35.0,
        }
    }
}

/// Energy above an adaptive noise floor, tones rejected.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    rate: SampleRate,
    window: usize,
    config: EnergyVadConfig,
    /// Noise floor estimate in dBFS; `None` until the first window.
    floor_db: Option<f32>,
}

impl EnergyVad {
    /// An energy VAD with 32 ms windows (the same as Silero's) at `rate`.
    pub fn new(rate: SampleRate, config: EnergyVadConfig) -> Self {
        Self {
            rate,
            window: rate
                .samples_in(std::time::Duration::from_millis(32))
                .max(16),
            config,
            floor_db: None,
        }
    }

    /// The current noise floor estimate (dBFS), once a window was seen.
    pub fn noise_floor_db(&self) -> Option<f32> {
        self.floor_db
    }
}

impl Vad for EnergyVad {
    fn rate(&self) -> SampleRate {
        self.rate
    }

    fn window_samples(&self) -> usize {
        self.window
    }

    fn probability(&mut self, window: &[i16]) -> Result<f32, VadError> {
        check_window(self.window, window)?;
        let level = level_db(window);
        // The floor starts at the first window (capped: a call may open
        // with speech), falls fast (a quiet window is noise) and rises
        // slowly (a long loud stretch is probably speech, not a new floor).
        let floor = match self.floor_db {
            None => level.min(-45.0),
            Some(f) if level < f => 0.7 * f + 0.3 * level,
            Some(f) => f + 0.02 * (level - f).min(10.0),
        }
        .clamp(-90.0, -20.0);
        self.floor_db = Some(floor);
        let threshold = (floor + self.config.margin_db).max(self.config.min_level_db);
        let p = logistic((level - threshold) / 3.0);
        if p > 0.1 && prediction_gain_db(window) > self.config.tone_gain_db {
            return Ok(0.0);
        }
        Ok(p)
    }

    fn reset(&mut self) {
        self.floor_db = None;
    }
}

fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// RMS level in dBFS (full scale sine = -3 dB).
pub(crate) fn level_db(window: &[i16]) -> f32 {
    if window.is_empty() {
        return -100.0;
    }
    let energy: f64 = window.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let ms = energy / window.len() as f64 / (32_768.0 * 32_768.0);
    (10.0 * ms.max(1e-10).log10()) as f32
}

/// Order of the tone detector's linear predictor: two sines need 4.
const ORDER: usize = 4;
/// Samples left out of the final fit: a tone that starts or stops inside the
/// window is unpredictable only for the few samples at each edge.
const TRIM: usize = 8;

/// How well a 4th-order linear predictor explains the window (dB): signal
/// energy over least-squares prediction error (the covariance method, which
/// has no window-edge error, so two sines are predicted almost exactly).
/// Refitted without the worst samples, `TRIM` in all, so a tone's onset or
/// end inside the window does not hide it.
fn prediction_gain_db(window: &[i16]) -> f32 {
    if window.len() <= 8 * ORDER {
        return 0.0;
    }
    let energy: f64 = window[ORDER..].iter().map(|&x| f64::from(x).powi(2)).sum();
    if energy <= 0.0 {
        return 0.0;
    }
    // Leave out the two worst samples of each fit, four times over: the
    // samples at a tone's edge stand out more as the fit gets better.
    let mut skip = [usize::MAX; TRIM];
    let mut a = fit(window, &skip);
    for round in 0..TRIM / 2 {
        let Some(coef) = a else {
            return 0.0;
        };
        let mut worst = [(0f64, usize::MAX); 2];
        for n in (ORDER..window.len()).filter(|n| !skip.contains(n)) {
            let e = residual(window, &coef, n).powi(2);
            if e > worst[0].0 {
                worst[1] = worst[0];
                worst[0] = (e, n);
            } else if e > worst[1].0 {
                worst[1] = (e, n);
            }
        }
        skip[2 * round] = worst[0].1;
        skip[2 * round + 1] = worst[1].1;
        a = fit(window, &skip);
    }
    let Some(a) = a else {
        return 0.0;
    };
    let kept_energy: f64 = (ORDER..window.len())
        .filter(|n| !skip.contains(n))
        .map(|n| f64::from(window[n]).powi(2))
        .sum();
    let err: f64 = (ORDER..window.len())
        .filter(|n| !skip.contains(n))
        .map(|n| residual(window, &a, n).powi(2))
        .sum();
    if kept_energy <= 0.0 {
        return 0.0;
    }
    (10.0 * (kept_energy / err.max(kept_energy * 1e-9)).log10()) as f32
}

fn residual(window: &[i16], a: &[f64; ORDER], n: usize) -> f64 {
    let predicted: f64 = (0..ORDER)
        .map(|k| a[k] * f64::from(window[n - k - 1]))
        .sum();
    f64::from(window[n]) - predicted
}

/// Least-squares predictor coefficients over the samples not in `skip`.
// Row/column indices are the clearest way to write a 4x4 solve.
#[allow(clippy::needless_range_loop)]
fn fit(window: &[i16], skip: &[usize]) -> Option<[f64; ORDER]> {
    // phi[i][j] = sum over n of x[n-i] * x[n-j].
    let mut phi = [[0f64; ORDER + 1]; ORDER + 1];
    for n in (ORDER..window.len()).filter(|n| !skip.contains(n)) {
        for i in 0..=ORDER {
            let xi = f64::from(window[n - i]);
            for j in i..=ORDER {
                phi[i][j] += xi * f64::from(window[n - j]);
            }
        }
    }
    // Solve phi[1..][1..] a = phi[1..][0] (upper triangle holds the sums) by
    // Gaussian elimination with partial pivoting; a tiny ridge keeps a
    // singular system solvable.
    let ridge = phi[0][0].max(1.0) * 1e-9;
    let mut m = [[0f64; ORDER + 1]; ORDER];
    for r in 0..ORDER {
        for c in 0..ORDER {
            let (i, j) = if r <= c {
                (r + 1, c + 1)
            } else {
                (c + 1, r + 1)
            };
            m[r][c] = phi[i][j];
        }
        m[r][r] += ridge;
        m[r][ORDER] = phi[0][r + 1];
    }
    for col in 0..ORDER {
        let pivot = (col..ORDER)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        if m[col][col].abs() < f64::MIN_POSITIVE {
            return None;
        }
        let pivot_row = m[col];
        for row in m.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
        }
    }
    let mut a = [0f64; ORDER];
    for r in (0..ORDER).rev() {
        let acc: f64 = (r + 1..ORDER).map(|c| m[r][c] * a[c]).sum();
        a[r] = (m[r][ORDER] - acc) / m[r][r];
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tones(rate: SampleRate, freqs: &[f32], amp: f32, n: usize, phase: usize) -> Vec<i16> {
        (phase..phase + n)
            .map(|i| {
                let t = i as f32 / rate.hz() as f32;
                let v: f32 = freqs
                    .iter()
                    .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
                    .sum();
                (amp * v / freqs.len() as f32) as i16
            })
            .collect()
    }

    /// Deterministic white-ish noise.
    fn noise(n: usize, amp: f32, seed: &mut u64) -> Vec<i16> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed % 2001) as f32 / 1000.0 - 1.0) * amp
            })
            .map(|v| v as i16)
            .collect()
    }

    #[test]
    fn levels() {
        assert!(level_db(&[0; 256]) < -90.0);
        let full = tones(SampleRate::HZ_8000, &[1000.0], 32_767.0, 256, 0);
        assert!((level_db(&full) + 3.0).abs() < 0.5);
    }

    #[test]
    fn a_tone_edge_inside_the_window_is_still_a_tone() {
        let r = SampleRate::HZ_8000;
        let tone = tones(r, &[697.0, 1209.0], 10_000.0, 256, 0);
        let mut end = tone.clone();
        end[32..].fill(0);
        let mut onset = tone;
        onset[..200].fill(0);
        assert!(prediction_gain_db(&end) > 50.0);
        assert!(prediction_gain_db(&onset) > 50.0);
    }

    #[test]
    fn tones_are_predictable_noise_is_not() {
        let r = SampleRate::HZ_8000;
        let dtmf = tones(r, &[697.0, 1209.0], 10_000.0, 256, 0);
        assert!(prediction_gain_db(&dtmf) > 40.0);
        let mut seed = 7;
        let n = noise(256, 5_000.0, &mut seed);
        assert!(prediction_gain_db(&n) < 3.0);
    }

    #[test]
    fn noise_floor_adapts_and_only_louder_sound_counts() {
        let r = SampleRate::HZ_8000;
        let mut vad = EnergyVad::new(r, EnergyVadConfig::default());
        let mut seed = 42;
        // 2 s of line noise at about -45 dBFS: never speech once the floor settles.
        let mut probs = Vec::new();
        for _ in 0..60 {
            probs.push(vad.probability(&noise(256, 300.0, &mut seed)).unwrap());
        }
        assert!(probs[10..].iter().all(|&p| p < 0.5), "{probs:?}");
        // A loud non-tonal burst (noise 30 dB up) is speech-like.
        let loud = noise(256, 10_000.0, &mut seed);
        assert!(vad.probability(&loud).unwrap() > 0.9);
        // Digital silence is not.
        assert!(vad.probability(&[0; 256]).unwrap() < 0.1);
    }

    #[test]
    fn dtmf_and_dial_tone_are_not_speech() {
        let r = SampleRate::HZ_8000;
        let mut vad = EnergyVad::new(r, EnergyVadConfig::default());
        for (i, f) in [[697.0, 1209.0], [941.0, 1633.0], [350.0, 440.0]]
            .iter()
            .enumerate()
        {
            let w = tones(r, f, 12_000.0, 256, i * 256);
            assert_eq!(vad.probability(&w).unwrap(), 0.0, "{f:?}");
        }
    }

    #[test]
    fn wrong_window_is_an_error() {
        let mut vad = EnergyVad::new(SampleRate::HZ_16000, EnergyVadConfig::default());
        assert_eq!(vad.window_samples(), 512);
        assert_eq!(
            vad.probability(&[0; 100]),
            Err(VadError::WindowSize {
                expected: 512,
                got: 100
            })
        );
    }
}
