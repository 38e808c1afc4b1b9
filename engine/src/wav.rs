//! WAV files in and out: any common PCM or float WAV in, 16-bit mono out.

use std::path::Path;

use media_core::SampleRate;

/// Why a WAV file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// hound could not read or write the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// hound's error.
        source: hound::Error,
    },
    /// A format hark does not read.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The file.
        path: String,
        /// What is unsupported.
        reason: String,
    },
}

/// Mono 16-bit audio with its rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// The rate of `samples`.
    pub rate: SampleRate,
    /// Mono samples.
    pub samples: Vec<i16>,
}

/// Reads a WAV file, mixing channels down to mono.
pub fn read(path: &Path) -> Result<Audio, WavError> {
    let name = path.display().to_string();
    let io = |source| WavError::Io {
        path: name.clone(),
        source,
    };
    let mut reader = hound::WavReader::open(path).map_err(io)?;
    let spec = reader.spec();
    let rate = SampleRate::new(spec.sample_rate).ok_or_else(|| WavError::Unsupported {
        path: name.clone(),
        reason: format!("sample rate {} Hz is out of range", spec.sample_rate),
    })?;
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(io)?,
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(io)?
        }
        (format, bits) => {
            return Err(WavError::Unsupported {
                path: name,
                reason: format!("{bits}-bit {format:?} samples"),
            });
        }
    };
    let samples = interleaved
        .chunks(channels)
        .map(|frame| {
            let mean = frame.iter().sum::<f32>() / frame.len() as f32;
            (mean * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
        })
        .collect();
    Ok(Audio { rate, samples })
}

/// Writes 16-bit mono.
pub fn write(path: &Path, rate: SampleRate, samples: &[i16]) -> Result<(), WavError> {
    let name = path.display().to_string();
    let io = |source| WavError::Io {
        path: name.clone(),
        source,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate.hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(io)?;
    for &s in samples {
        w.write_sample(s).map_err(io)?;
    }
    w.finalize().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_is_lossless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let x: Vec<i16> = (0..1000)
            .map(|i| (i * 37 % 65_536 - 32_768) as i16)
            .collect();
        write(&path, SampleRate::HZ_16000, &x).unwrap();
        let a = read(&path).unwrap();
        assert_eq!(a.rate, SampleRate::HZ_16000);
        assert_eq!(a.samples, x);
    }

    #[test]
    fn stereo_is_mixed_down_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for _ in 0..10 {
            w.write_sample(1000i16).unwrap();
            w.write_sample(3000i16).unwrap();
        }
        w.finalize().unwrap();
        assert_eq!(read(&path).unwrap().samples, vec![2000; 10]);
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"not a wav at all").unwrap();
        assert!(read(&junk).unwrap_err().to_string().contains("junk.wav"));
        assert!(read(&dir.path().join("missing.wav")).is_err());
    }
}
