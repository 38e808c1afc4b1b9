//! G.711 mu-law and A-law, table based.
//!
//! Decoding is one lookup in a 256-entry table. Encoding looks up the top 14
//! (mu-law) or 13 (A-law) bits of the sample, which are all the bits the
//! companders keep, so the tables give exactly the ITU-T G.711 result. All
//! tables are built at compile time.

const ULAW_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude mu-law codes before clipping.
const ULAW_CLIP14: i32 = 8_159;

/// mu-law byte -> linear sample.
static ULAW_DECODE: [i16; 256] = build_ulaw_decode();
/// A-law byte -> linear sample.
static ALAW_DECODE: [i16; 256] = build_alaw_decode();
/// (sample >> 2) + 8192 -> mu-law byte.
static ULAW_ENCODE: [u8; 16_384] = build_ulaw_encode();
/// (sample >> 3) + 4096 -> A-law byte.
static ALAW_ENCODE: [u8; 8_192] = build_alaw_encode();

/// Decodes one mu-law byte.
#[inline]
pub fn ulaw_to_linear(byte: u8) -> i16 {
    ULAW_DECODE[usize::from(byte)]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_to_linear(byte: u8) -> i16 {
    ALAW_DECODE[usize::from(byte)]
}

/// Encodes one sample as mu-law.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    // (sample >> 2) is in -8192..=8191, so the index is in 0..16384.
    ULAW_ENCODE[((i32::from(sample) >> 2) + 8_192) as usize]
}

/// Encodes one sample as A-law.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    // (sample >> 3) is in -4096..=4095, so the index is in 0..8192.
    ALAW_ENCODE[((i32::from(sample) >> 3) + 4_096) as usize]
}

/// Decodes mu-law bytes into `out` (which must be at least as long).
pub fn decode_ulaw(input: &[u8], out: &mut [i16]) {
    for (o, &b) in out.iter_mut().zip(input) {
        *o = ulaw_to_linear(b);
    }
}

/// Decodes A-law bytes into `out` (which must be at least as long).
pub fn decode_alaw(input: &[u8], out: &mut [i16]) {
    for (o, &b) in out.iter_mut().zip(input) {
        *o = alaw_to_linear(b);
    }
}

/// Encodes samples as mu-law into `out` (which must be at least as long).
pub fn encode_ulaw(input: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(input) {
        *o = linear_to_ulaw(s);
    }
}

/// Encodes samples as A-law into `out` (which must be at least as long).
pub fn encode_alaw(input: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(input) {
        *o = linear_to_alaw(s);
    }
}

/// The G.711 mu-law compander on a 14-bit sample (`sample >> 2`), as in the
/// ITU-T reference code; used to fill the encode table.
const fn ulaw_compress(value14: i32) -> u8 {
    let (mask, mut v) = if value14 < 0 {
        (0x7f_i32, -value14)
    } else {
        (0xff, value14)
    };
    if v > ULAW_CLIP14 {
        v = ULAW_CLIP14;
    }
    v += ULAW_BIAS >> 2;
    let mut segment = 0;
    while segment < 8 && v > (0x40 << segment) - 1 {
        segment += 1;
    }
    if segment >= 8 {
        return (0x7f ^ mask) as u8;
    }
    (((segment << 4) | ((v >> (segment + 1)) & 0x0f)) ^ mask) as u8
}

const fn ulaw_expand(byte: u8) -> i16 {
    let b = !byte;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if b & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// The G.711 A-law compander on a 13-bit sample (`sample >> 3`), as in the
/// ITU-T reference code; used to fill the encode table.
const fn alaw_compress(value13: i32) -> u8 {
    let (mask, v) = if value13 >= 0 {
        (0xd5, value13)
    } else {
        // One's complement, as the reference does: -1 codes like 0.
        (0x55, -value13 - 1)
    };
    let mut segment = 0;
    while segment < 8 && v > (0x20 << segment) - 1 {
        segment += 1;
    }
    if segment >= 8 {
        return (0x7f ^ mask) as u8;
    }
    let quant = if segment < 2 { v >> 1 } else { v >> segment } & 0x0f;
    (((segment << 4) | quant) ^ mask) as u8
}

const fn alaw_expand(byte: u8) -> i16 {
    let b = (byte ^ 0x55) as i32;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0f;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if b & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_expand(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_expand(i as u8);
        i += 1;
    }
    t
}

const fn build_ulaw_encode() -> [u8; 16_384] {
    let mut t = [0u8; 16_384];
    let mut i = 0;
    while i < 16_384 {
        t[i] = ulaw_compress((i as i32) - 8_192);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; 8_192] {
    let mut t = [0u8; 8_192];
    let mut i = 0;
    while i < 8_192 {
        t[i] = alaw_compress((i as i32) - 4_096);
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_monotonic() {
        // Larger samples never get a smaller decoded level.
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert!(u >= last_u && a >= last_a, "at {s}");
            last_u = u;
            last_a = a;
        }
    }

    #[test]
    fn known_code_points() {
        // Silence and full scale, from the G.711 tables.
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32_256);
        assert_eq!(alaw_to_linear(0x2a), -32_256);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for b in 0..=u8::MAX {
            // mu-law has two zeros (0x7f and 0xff); both decode to 0, which encodes as 0xff.
            let back = linear_to_ulaw(ulaw_to_linear(b));
            if b == 0x7f {
                assert_eq!(back, 0xff);
            } else {
                assert_eq!(back, b, "ulaw 0x{b:02x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "alaw 0x{b:02x}");
        }
    }

    #[test]
    fn quantization_error_is_bounded_by_the_segment() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(s)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(s)));
            let s = i32::from(s).clamp(-32_635, 32_635);
            // The largest segment step is 1024 (mu-law) / 1024 (A-law): half of it is the error bound.
            assert!((u - s).abs() <= 1_024, "ulaw {s} -> {u}");
            assert!((a - s).abs() <= 1_024, "alaw {s} -> {a}");
            // Small signals keep fine resolution.
            if s.abs() < 64 {
                assert!((u - s).abs() <= 8, "ulaw small {s} -> {u}");
                assert!((a - s).abs() <= 16, "alaw small {s} -> {a}");
            }
        }
    }

    #[test]
    fn slice_helpers() {
        let pcm = [0i16, 1000, -1000, 32_000];
        let mut u = [0u8; 4];
        let mut a = [0u8; 4];
        encode_ulaw(&pcm, &mut u);
        encode_alaw(&pcm, &mut a);
        let mut du = [0i16; 4];
        let mut da = [0i16; 4];
        decode_ulaw(&u, &mut du);
        decode_alaw(&a, &mut da);
        for i in 0..4 {
            assert!((i32::from(du[i]) - i32::from(pcm[i])).abs() < 1_100);
            assert!((i32::from(da[i]) - i32::from(pcm[i])).abs() < 1_100);
        }
    }
}
