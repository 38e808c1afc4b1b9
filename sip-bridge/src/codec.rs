//! One call's audio codec: RTP payloads to hark's PCM and back, with loss
//! concealment.
//!
//! hark's side is mono 16-bit PCM at [`MediaCodec::rate`]: 8 kHz for G.711,
//! 16 kHz (wideband) for Opus. Opus runs at 48 kHz, its native rate, and
//! is resampled to and from 16 kHz (rubato, through `media_core`), so what
//! a wideband peer sends reaches Whisper and Silero at the rate they want.
//!
//! Concealment of a lost frame: Opus decodes it from its own state (PLC);
//! G.711 repeats the last frame at half the level each time, so a short
//! gap is bridged and a long one fades to silence rather than buzzing.

use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::{Application, Bandwidth, Channels, SampleRate as OpusRate, Signal};
use media_core::Resampler;
use media_core::SampleRate;
use media_core::g711;

use crate::sdp::Codec;

/// Samples in 20 ms at 48 kHz: the Opus frame hark sends.
const OPUS_FRAME: usize = 960;
/// Longest Opus frame decoded (120 ms at 48 kHz).
const OPUS_MAX_FRAME: usize = 5760;
/// Largest Opus packet hark writes.
const OPUS_MAX_PACKET: usize = 1500;
/// libopus's encoder complexity (0-10; its default is 10). Measured per
/// 20 ms packet out (resample + encode, wideband, benches/run-sip): 10:
/// 475 µs (fullband), 5: 236 µs, 0: 101 µs. 3 keeps SILK's better
/// analysis for speech at a fraction of the default's cost.
const ENCODER_COMPLEXITY: u8 = 3;
/// G.711 frames concealed before staying silent.
const MAX_CONCEALED: u32 = 5;

/// Why audio could not be coded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// libopus refused (a corrupt packet, or a bad state).
    #[error("opus: {0}")]
    Opus(String),
    /// The resampler failed.
    #[error("resampling: {0}")]
    Resample(#[from] media_core::ResampleError),
}

fn opus_err(e: audiopus::Error) -> CodecError {
    CodecError::Opus(e.to_string())
}

/// The codec state of one call, both ways.
pub struct MediaCodec {
    codec: Codec,
    opus: Option<Opus>,
    /// The last G.711 frame decoded, for concealment.
    last: Vec<i16>,
    concealed: u32,
}

struct Opus {
    decoder: OpusDecoder,
    encoder: OpusEncoder,
    /// 48 kHz -> 16 kHz for what the peer sends.
    down: Resampler,
    /// 16 kHz -> 48 kHz for what hark sends.
    up: Resampler,
    /// Decoded 48 kHz samples.
    wide: Vec<i16>,
    /// 48 kHz samples waiting to fill a 20 ms frame.
    pending: Vec<i16>,
    packet: Vec<u8>,
}

impl std::fmt::Debug for MediaCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCodec")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl MediaCodec {
    /// The state for `codec`.
    pub fn new(codec: Codec) -> Result<MediaCodec, CodecError> {
        let opus = match codec {
            Codec::Opus => {
                let decoder =
                    OpusDecoder::new(OpusRate::Hz48000, Channels::Mono).map_err(opus_err)?;
                let mut encoder =
                    OpusEncoder::new(OpusRate::Hz48000, Channels::Mono, Application::Voip)
                        .map_err(opus_err)?;
                // The answer says useinbandfec=1: protect against loss.
                encoder.set_inband_fec(true).map_err(opus_err)?;
                // hark's audio is 16 kHz speech: wideband SILK carries all
                // of it. Left to itself libopus codes 48 kHz fullband, at
                // several times the cost (benches/run-sip measures it).
                encoder
                    .set_max_bandwidth(Bandwidth::Wideband)
                    .map_err(opus_err)?;
                encoder.set_signal(Signal::Voice).map_err(opus_err)?;
                encoder
                    .set_complexity(ENCODER_COMPLEXITY)
                    .map_err(opus_err)?;
                encoder.set_packet_loss_perc(5).map_err(opus_err)?;
                Some(Opus {
                    decoder,
                    encoder,
                    down: Resampler::new(SampleRate::HZ_48000, SampleRate::HZ_16000)?,
                    up: Resampler::new(SampleRate::HZ_16000, SampleRate::HZ_48000)?,
                    wide: vec![0; OPUS_MAX_FRAME],
                    pending: Vec::with_capacity(OPUS_FRAME * 4),
                    packet: vec![0; OPUS_MAX_PACKET],
                })
            }
            Codec::Pcmu | Codec::Pcma => None,
        };
        Ok(MediaCodec {
            codec,
            opus,
            last: Vec::new(),
            concealed: 0,
        })
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// hark's PCM rate for this codec.
    pub fn rate(&self) -> SampleRate {
        match self.codec {
            Codec::Opus => SampleRate::HZ_16000,
            Codec::Pcmu | Codec::Pcma => SampleRate::HZ_8000,
        }
    }

    /// RTP timestamp ticks per sample of hark's PCM.
    pub fn ticks_per_sample(&self) -> u32 {
        self.codec.clock_rate() / self.rate().hz()
    }

    /// Decodes one payload, appending PCM at [`rate`](Self::rate) to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.concealed = 0;
        match self.codec {
            Codec::Pcmu | Codec::Pcma => {
                let start = out.len();
                let law = if self.codec == Codec::Pcmu {
                    g711::ulaw_to_linear
                } else {
                    g711::alaw_to_linear
                };
                out.extend(payload.iter().map(|&b| law(b)));
                self.last.clear();
                self.last.extend_from_slice(&out[start..]);
                Ok(())
            }
            Codec::Opus => {
                let Some(o) = self.opus.as_mut() else {
                    return Ok(());
                };
                let n = o
                    .decoder
                    .decode(Some(payload), &mut o.wide[..], false)
                    .map_err(opus_err)?;
                o.down.process(&o.wide[..n], out)?;
                Ok(())
            }
        }
    }

    /// One lost frame of `frame_samples` (at hark's rate), concealed into
    /// `out`.
    pub fn conceal(&mut self, frame_samples: usize, out: &mut Vec<i16>) -> Result<(), CodecError> {
        match self.codec {
            Codec::Pcmu | Codec::Pcma => {
                self.concealed += 1;
                if self.concealed > MAX_CONCEALED || self.last.is_empty() {
                    out.extend(std::iter::repeat_n(0, frame_samples));
                    return Ok(());
                }
                for s in &mut self.last {
                    *s /= 2;
                }
                out.extend(self.last.iter().copied().cycle().take(frame_samples));
                Ok(())
            }
            Codec::Opus => {
                let Some(o) = self.opus.as_mut() else {
                    return Ok(());
                };
                let wide = (frame_samples * 3).min(OPUS_MAX_FRAME);
                let n = o
                    .decoder
                    .decode(None::<&[u8]>, &mut o.wide[..wide], false)
                    .map_err(opus_err)?;
                o.down.process(&o.wide[..n], out)?;
                Ok(())
            }
        }
    }

    /// Encodes hark's PCM, calling `emit(payload, rtp_ticks)` for each
    /// packet ready. G.711 makes one packet per call; Opus one per full
    /// 20 ms at 48 kHz (a remainder waits for the next call).
    pub fn encode(
        &mut self,
        pcm: &[i16],
        out: &mut Vec<u8>,
        mut emit: impl FnMut(&[u8], u32),
    ) -> Result<(), CodecError> {
        match self.codec {
            Codec::Pcmu | Codec::Pcma => {
                out.clear();
                let law = if self.codec == Codec::Pcmu {
                    g711::linear_to_ulaw
                } else {
                    g711::linear_to_alaw
                };
                out.extend(pcm.iter().map(|&s| law(s)));
                emit(out, pcm.len() as u32);
                Ok(())
            }
            Codec::Opus => {
                let Some(o) = self.opus.as_mut() else {
                    return Ok(());
                };
                let mut up = std::mem::take(&mut o.pending);
                let result = o.up.process(pcm, &mut up);
                let mut used = 0;
                while result.is_ok() && up.len() - used >= OPUS_FRAME {
                    let n = o
                        .encoder
                        .encode(&up[used..used + OPUS_FRAME], &mut o.packet)
                        .map_err(opus_err)?;
                    used += OPUS_FRAME;
                    emit(&o.packet[..n], OPUS_FRAME as u32);
                }
                up.drain(..used);
                o.pending = up;
                result.map_err(CodecError::from)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 ms tone at `hz`, at `rate`.
    fn tone(hz: f32, rate: u32, ms: usize, phase: &mut f32) -> Vec<i16> {
        let n = rate as usize * ms / 1000;
        (0..n)
            .map(|_| {
                *phase += hz / rate as f32;
                ((*phase * std::f32::consts::TAU).sin() * 8000.0) as i16
            })
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
    }

    #[test]
    fn g711_round_trips_and_conceals_by_fading() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut c = MediaCodec::new(codec).expect("codec");
            let mut phase = 0.0;
            let pcm = tone(440.0, 8000, 20, &mut phase);
            let mut payload = Vec::new();
            let mut packets = Vec::new();
            c.encode(&pcm, &mut payload, |p, ticks| {
                packets.push((p.to_vec(), ticks))
            })
            .expect("encode");
            assert_eq!(packets.len(), 1);
            assert_eq!((packets[0].0.len(), packets[0].1), (160, 160));
            let mut out = Vec::new();
            c.decode(&packets[0].0, &mut out).expect("decode");
            let err: f64 = pcm
                .iter()
                .zip(&out)
                .map(|(a, b)| f64::from(a - b).abs())
                .sum::<f64>()
                / 160.0;
            assert!(err < 200.0, "{codec:?} error {err}");
            let mut lost = Vec::new();
            c.conceal(160, &mut lost).expect("conceal");
            let first = rms(&lost);
            assert!((first - rms(&out) / 2.0).abs() < 5.0, "half level: {first}");
            for _ in 0..MAX_CONCEALED {
                lost.clear();
                c.conceal(160, &mut lost).expect("conceal");
            }
            assert_eq!(rms(&lost), 0.0, "silent after {MAX_CONCEALED} frames");
        }
    }

    #[test]
    fn opus_carries_a_wideband_tone_through_48_khz() {
        let mut tx = MediaCodec::new(Codec::Opus).expect("codec");
        let mut rx = MediaCodec::new(Codec::Opus).expect("codec");
        assert_eq!(tx.rate(), SampleRate::HZ_16000);
        assert_eq!(tx.ticks_per_sample(), 3);
        let mut phase = 0.0;
        let mut payload = Vec::new();
        let mut received = Vec::new();
        let mut ticks_total = 0;
        for _ in 0..50 {
            // 5 kHz: above what G.711 can carry.
            let pcm = tone(5000.0, 16_000, 20, &mut phase);
            let mut packets = Vec::new();
            tx.encode(&pcm, &mut payload, |p, t| packets.push((p.to_vec(), t)))
                .expect("encode");
            for (p, t) in packets {
                ticks_total += t;
                rx.decode(&p, &mut received).expect("decode");
            }
        }
        // One second in: about 48,000 ticks sent (the resampler holds back
        // up to a chunk), about 16,000 samples out.
        assert!((44_000..=48_000).contains(&ticks_total), "{ticks_total}");
        assert!(
            (14_000..=16_000).contains(&received.len()),
            "{}",
            received.len()
        );
        let level = rms(&received[8000..]);
        assert!(level > 2000.0, "the 5 kHz tone survives: rms {level}");
        let mut lost = Vec::new();
        rx.conceal(320, &mut lost).expect("plc");
        assert!(!lost.is_empty());
        // Corrupt packets: errors or noise, never a panic.
        for junk in [&[0xffu8; 3][..], &[0x0b; 40], &[]] {
            let _ = rx.decode(junk, &mut received);
        }
    }
}
