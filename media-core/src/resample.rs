//! Sample-rate conversion for mono 16-bit audio, through rubato.
//!
//! [`Resampler`] hides rubato's chunked, planar, floating-point interface
//! behind "push any number of samples, get the converted samples appended".
//! Its buffers are sized once, so streaming through it does not allocate once
//! the caller's output buffer has grown. The filter's start-up delay is
//! trimmed, so output sample `n` lines up with input sample `n * to / from`.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _};

use crate::frame::SampleRate;

/// Why a resampler could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// rubato rejected the rate pair or chunk size.
    #[error("cannot build a {from} -> {to} resampler: {source}")]
    Construction {
        /// Input rate.
        from: SampleRate,
        /// Output rate.
        to: SampleRate,
        /// rubato's reason.
        source: rubato::ResamplerConstructionError,
    },
    /// rubato failed while processing (buffer sizing; an internal error).
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
}

/// A streaming mono resampler between two rates (a pass-through when equal).
pub struct Resampler {
    from: SampleRate,
    to: SampleRate,
    engine: Option<Engine>,
}

struct Engine {
    fft: Fft<f32>,
    chunk: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    /// Output samples still to drop for the filter's delay.
    skip: usize,
    /// Input samples taken since the start, for the length at `finish`.
    consumed: u64,
    /// Output samples emitted since the start.
    produced: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// A resampler from `from` to `to`, processing 20 ms of input at a time.
    pub fn new(from: SampleRate, to: SampleRate) -> Result<Self, ResampleError> {
        if from == to {
            return Ok(Self {
                from,
                to,
                engine: None,
            });
        }
        let chunk = from.frame_samples().max(1);
        let fft = Fft::<f32>::new(
            from.hz() as usize,
            to.hz() as usize,
            chunk,
            1,
            FixedSync::Input,
        )
        .map_err(|source| ResampleError::Construction { from, to, source })?;
        let skip = fft.output_delay();
        let output = vec![0.0; fft.output_frames_max()];
        Ok(Self {
            from,
            to,
            engine: Some(Engine {
                chunk,
                input: Vec::with_capacity(chunk * 2),
                output,
                skip,
                consumed: 0,
                produced: 0,
                fft,
            }),
        })
    }

    /// The input rate.
    pub fn from_rate(&self) -> SampleRate {
        self.from
    }

    /// The output rate.
    pub fn to_rate(&self) -> SampleRate {
        self.to
    }

    /// Converts `input`, appending what is ready to `out`. Up to one chunk
    /// (20 ms) of input stays buffered until more arrives or [`finish`](Self::finish).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let Some(e) = self.engine.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        for &s in input {
            e.input.push(f32::from(s) / 32_768.0);
            if e.input.len() == e.chunk {
                e.run(None, out, u64::MAX)?;
                e.input.clear();
            }
        }
        Ok(())
    }

    /// Flushes buffered input and the filter's tail, so the total output is
    /// the input length scaled by the rate ratio.
    pub fn finish(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let (from, to) = (u64::from(self.from.hz()), u64::from(self.to.hz()));
        let Some(e) = self.engine.as_mut() else {
            return Ok(());
        };
        let pending = e.input.len() as u64;
        let target = ((e.consumed + pending) * to).div_ceil(from);
        let partial = e.input.len();
        e.input.resize(e.chunk, 0.0);
        e.run(Some(partial), out, target)?;
        // The filter delay holds the last samples back: push silence through.
        e.input.fill(0.0);
        while e.produced < target {
            e.run(Some(0), out, target)?;
        }
        e.input.clear();
        Ok(())
    }

    /// Converts a whole clip at once.
    pub fn convert_all(
        from: SampleRate,
        to: SampleRate,
        input: &[i16],
    ) -> Result<Vec<i16>, ResampleError> {
        let mut r = Self::new(from, to)?;
        let mut out = Vec::with_capacity(input.len() * to.hz() as usize / from.hz() as usize + 16);
        r.process(input, &mut out)?;
        r.finish(&mut out)?;
        Ok(out)
    }
}

impl Engine {
    /// Runs one chunk of `self.input` (of which `partial` samples are real)
    /// and appends at most `limit - produced` samples to `out`.
    fn run(
        &mut self,
        partial: Option<usize>,
        out: &mut Vec<i16>,
        limit: u64,
    ) -> Result<(), ResampleError> {
        let frames_out = self.output.len();
        let input = InterleavedSlice::new(&self.input[..], 1, self.chunk)
            .expect("input holds exactly one chunk: sized by the caller");
        let mut output = InterleavedSlice::new_mut(&mut self.output[..], 1, frames_out)
            .expect("output buffer was sized to output_frames_max");
        let indexing = partial.map(|n| Indexing {
            partial_len: Some(n),
            ..Indexing::default()
        });
        let (_, written) = self
            .fft
            .process_into_buffer(&input, &mut output, indexing.as_ref())?;
        self.consumed += partial.unwrap_or(self.chunk) as u64;
        let skip = self.skip.min(written);
        self.skip -= skip;
        for &v in &self.output[skip..written] {
            if self.produced >= limit {
                break;
            }
            out.push((v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16);
            self.produced += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: SampleRate, hz: f32, secs: f32) -> Vec<i16> {
        let n = (rate.hz() as f32 * secs) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate.hz() as f32;
                (8_000.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn same_rate_is_a_copy() {
        let x: Vec<i16> = (0..500).map(|i| i as i16).collect();
        let y = Resampler::convert_all(SampleRate::HZ_8000, SampleRate::HZ_8000, &x).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn lengths_scale_with_the_ratio() {
        let cases = [
            (8_000, 16_000),
            (16_000, 8_000),
            (22_050, 8_000),
            (44_100, 16_000),
        ];
        for (a, b) in cases {
            let (a, b) = (SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap());
            for n in [0usize, 1, 100, 4_410, 12_345] {
                let x = vec![100i16; n];
                let y = Resampler::convert_all(a, b, &x).unwrap();
                let want = (n as u64 * u64::from(b.hz())).div_ceil(u64::from(a.hz())) as usize;
                assert_eq!(y.len(), want, "{a} -> {b}, {n} samples");
            }
        }
    }

    #[test]
    fn a_tone_keeps_its_phase_and_level() {
        // 440 Hz at 8 kHz up to 16 kHz: compare against the tone generated at 16 kHz.
        let x = tone(SampleRate::HZ_8000, 440.0, 0.5);
        let y = Resampler::convert_all(SampleRate::HZ_8000, SampleRate::HZ_16000, &x).unwrap();
        let want = tone(SampleRate::HZ_16000, 440.0, 0.5);
        // Ignore the edges, where the filter sees the signal start and stop.
        let err: f64 = y[800..7_200]
            .iter()
            .zip(&want[800..7_200])
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / 6_400.0;
        let rms_err = err.sqrt();
        assert!(
            rms_err < 100.0,
            "rms error {rms_err} against a 8000-peak tone"
        );
    }

    #[test]
    fn streaming_in_odd_pieces_equals_one_shot() {
        let x = tone(SampleRate::HZ_16000, 300.0, 0.3);
        let one = Resampler::convert_all(SampleRate::HZ_16000, SampleRate::HZ_8000, &x).unwrap();
        let mut r = Resampler::new(SampleRate::HZ_16000, SampleRate::HZ_8000).unwrap();
        let mut out = Vec::new();
        for piece in x.chunks(77) {
            r.process(piece, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        assert_eq!(one, out);
    }
}
