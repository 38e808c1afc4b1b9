//! Whisper-style log-mel features, as the Smart Turn v3 model takes them:
//! 8 s of 16 kHz audio -> 80 mel bands x 800 frames.
//!
//! The recipe is Whisper's feature extractor with an 8 s chunk:
//! 1. the waveform is normalized to zero mean and unit variance;
//! 2. a centred STFT: reflect-padded by half a window, a 400-sample
//!    periodic Hann window every 160 samples (25 ms / 10 ms), power |X|²;
//! 3. 80 triangular mel filters on the Slaney scale, 0-8 kHz, each scaled
//!    to unit area (Slaney normalization);
//! 4. log10 with a floor of 1e-10, the last frame dropped, values below
//!    (max - 8) raised to it, then (x + 4) / 4.
//!
//! Tested against the model's own reference feature code on a committed
//! fixture (`testdata/turn/`).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Samples the model looks at: 8 s at 16 kHz.
pub(crate) const SAMPLES: usize = 8 * 16_000;
/// Mel bands.
pub(crate) const MELS: usize = 80;
/// Frames (10 ms each) after the last one is dropped.
pub(crate) const FRAMES: usize = SAMPLES / HOP;
/// STFT window and FFT length (25 ms).
const N_FFT: usize = 400;
/// STFT hop (10 ms).
const HOP: usize = 160;
/// Frequency bins of a real FFT of `N_FFT`.
const BINS: usize = N_FFT / 2 + 1;
/// Floor of the mel power before the log.
const MEL_FLOOR: f64 = 1e-10;
/// Added to the variance when normalizing the waveform.
const VARIANCE_EPS: f64 = 1e-7;

/// The plan, window and filters, made once and shared.
pub(crate) struct LogMel {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    /// Per mel band: its first frequency bin and its weights from there.
    filters: Vec<(usize, Vec<f64>)>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").finish_non_exhaustive()
    }
}

impl LogMel {
    /// Plans the FFT and builds the window and filter bank.
    pub(crate) fn new() -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        // Periodic Hann (as torch.hann_window): 0.5 - 0.5 cos(2πn/N).
        let window = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect();
        Self {
            fft,
            window,
            filters: slaney_filters(),
        }
    }

    /// The features of exactly [`SAMPLES`] samples (pad or cut before), as
    /// `MELS` rows of `FRAMES` values, row after row.
    pub(crate) fn compute(&self, audio: &[f32]) -> Vec<f32> {
        debug_assert_eq!(audio.len(), SAMPLES);
        let n = audio.len().max(1) as f64;
        let mean = audio.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = audio
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let scale = 1.0 / (var + VARIANCE_EPS).sqrt();
        // The reference normalizes in f32 before the STFT promotes to f64.
        let x: Vec<f64> = audio
            .iter()
            .map(|&v| f64::from(((f64::from(v) - mean) * scale) as f32))
            .collect();

        let pad = N_FFT / 2;
        let at = |i: usize| -> f64 {
            // Index into the reflect-padded signal (the edge not repeated).
            let len = x.len();
            if i < pad {
                x[(pad - i).min(len - 1)]
            } else if i - pad < len {
                x[i - pad]
            } else {
                let over = i - pad - len;
                x[len.saturating_sub(2 + over)]
            }
        };

        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; BINS];
        let mut out = vec![0.0f64; MELS * FRAMES];
        for frame in 0..FRAMES {
            let start = frame * HOP;
            for (k, slot) in input.iter_mut().enumerate() {
                *slot = at(start + k) * self.window[k];
            }
            // Lengths come from the plan itself: this cannot fail.
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                return vec![0.0; MELS * FRAMES];
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (m, (first, weights)) in self.filters.iter().enumerate() {
                let e: f64 = weights
                    .iter()
                    .zip(&power[*first..])
                    .map(|(w, p)| w * p)
                    .sum();
                out[m * FRAMES + frame] = e.max(MEL_FLOOR).log10();
            }
        }
        let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out.iter()
            .map(|&v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    // Slaney: linear below 1 kHz, logarithmic above.
    if hz >= 1_000.0 {
        15.0 + (hz / 1_000.0).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * hz / 200.0
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= 15.0 {
        1_000.0 * ((6.4f64.ln() / 27.0) * (mel - 15.0)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// 80 triangular filters evenly spaced on the Slaney mel scale from 0 to
/// 8 kHz over the FFT's bins, each normalized to unit area.
fn slaney_filters() -> Vec<(usize, Vec<f64>)> {
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(8_000.0));
    let edges: Vec<f64> = (0..MELS + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (MELS + 1) as f64))
        .collect();
    let bin_hz = |k: usize| 8_000.0 * k as f64 / (BINS - 1) as f64;
    (0..MELS)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = 2.0 / (right - left);
            let weights: Vec<(usize, f64)> = (0..BINS)
                .filter_map(|k| {
                    let f = bin_hz(k);
                    let up = (f - left) / (centre - left);
                    let down = (right - f) / (right - centre);
                    let w = up.min(down).max(0.0) * norm;
                    (w > 0.0).then_some((k, w))
                })
                .collect();
            let first = weights.first().map_or(0, |(k, _)| *k);
            let last = weights.last().map_or(0, |(k, _)| *k);
            // Contiguous by construction (one triangle); zeros kept inside.
            let mut dense = vec![0.0; last + 1 - first];
            for (k, w) in weights {
                dense[k - first] = w;
            }
            (first, dense)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn testdata() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
    }

    /// 8 s ending with the fixture's audio, zeros before (as the model's
    /// own code pads), in [-1, 1].
    fn last_8s(samples: &[i16]) -> Vec<f32> {
        let mut audio = vec![0.0f32; SAMPLES.saturating_sub(samples.len())];
        let tail = &samples[samples.len().saturating_sub(SAMPLES)..];
        audio.extend(tail.iter().map(|&s| f32::from(s) / 32_768.0));
        audio
    }

    #[test]
    fn features_match_the_models_reference_code_on_a_fixture() {
        let wav = crate::wav::read(&testdata().join("speech/book_table.16k.wav")).expect("fixture");
        assert_eq!(wav.rate.hz(), 16_000);
        let got = LogMel::new().compute(&last_8s(&wav.samples));
        let bytes = std::fs::read(testdata().join("turn/book_table.16k.mel.f32"))
            .expect("reference features (testdata/turn/make-reference.py)");
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(got.len(), MELS * FRAMES);
        assert_eq!(want.len(), got.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "largest difference {worst}");
        // Not trivially equal: the features span the range the model saw.
        let (lo, hi) = got
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(hi - lo > 1.5, "range {lo}..{hi}");
    }

    #[test]
    fn filters_are_triangles_of_unit_area_covering_the_band() {
        let filters = slaney_filters();
        assert_eq!(filters.len(), MELS);
        let hz_per_bin = 8_000.0 / (BINS - 1) as f64;
        for (m, (first, w)) in filters.iter().enumerate() {
            assert!(!w.is_empty(), "filter {m} is empty");
            // Peak inside, rising then falling.
            let peak = w
                .iter()
                .enumerate()
                .fold((0, 0.0), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            assert!(w[..peak.0].windows(2).all(|p| p[0] <= p[1]));
            assert!(w[peak.0..].windows(2).all(|p| p[0] >= p[1]));
            assert!(*first + w.len() <= BINS);
        }
        // Higher filters start at higher bins.
        assert!(filters.windows(2).all(|f| f[0].0 <= f[1].0));
        // Slaney normalization: area in Hz times height sums to about 1
        // for filters wide enough to be sampled well.
        let (_, w) = &filters[60];
        let area: f64 = w.iter().sum::<f64>() * hz_per_bin;
        assert!((area - 1.0).abs() < 0.1, "area {area}");
    }
}
