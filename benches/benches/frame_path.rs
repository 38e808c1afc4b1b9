//! One 20 ms frame through the engine's per-frame path: AudioSocket decode ->
//! session (echo agent, playout) -> AudioSocket encode. No I/O.
//!
//! Prints criterion's estimate, then per-frame percentiles from hdrhistogram
//! (p50/p95/p99 in ns) and the ratio against a codec-only baseline (decode +
//! encode of the same frame, no state machine) measured in the same run.
//! Budget (design brief): p99 < 20 us per frame.
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use hdrhistogram::Histogram;
use media_core::audiosocket::{self, Decoder, Message};
use media_core::{CallConfig, Echo, MAX_TRANSMIT, SampleRate, Session, Time};

const FRAME: Duration = Duration::from_millis(20);

/// A call in steady state: UUID received, echo flowing.
struct Rig {
    call: Session,
    now: Time,
    input: Vec<u8>,
    out: Vec<u8>,
    decoder: Decoder,
}

impl Rig {
    fn new(rate: SampleRate) -> Self {
        let mut call = Session::new(
            Time::ZERO,
            CallConfig {
                default_rate: rate,
                ..CallConfig::default()
            },
            Box::new(Echo::new(Duration::from_millis(100))),
        );
        let mut uuid = [0u8; 19];
        let n = audiosocket::encode(&Message::Uuid(uuid::Uuid::new_v4()), &mut uuid).unwrap();
        let decoder = Decoder::default();
        call.handle_message(Time::ZERO, decoder.decode(&uuid[..n]).unwrap().0);
        let samples: Vec<i16> = (0..rate.frame_samples())
            .map(|i| (i * 97 % 3000) as i16)
            .collect();
        let mut input = vec![0u8; MAX_TRANSMIT];
        let n = audiosocket::encode_samples(rate, &samples, &mut input).unwrap();
        input.truncate(n);
        let mut rig = Rig {
            call,
            now: Time::ZERO,
            input,
            out: vec![0u8; MAX_TRANSMIT],
            decoder,
        };
        // Warm up past the echo delay so every step sends a frame.
        for _ in 0..20 {
            rig.step();
        }
        assert!(rig.step() > 0, "steady state sends one frame per step");
        rig
    }

    /// One 20 ms tick: a frame in, everything due out. Returns bytes sent.
    fn step(&mut self) -> usize {
        self.now = self.now + FRAME;
        let (msg, _) = self.decoder.decode(&self.input).expect("valid frame");
        self.call.handle_message(self.now, msg);
        let mut sent = 0;
        while let Some(t) = self.call.poll_transmit(self.now) {
            sent += t.encode(&mut self.out).expect("fits");
        }
        while self.call.poll_event().is_some() {}
        if let Some(t) = self.call.poll_timeout()
            && t <= self.now
        {
            self.call.handle_timeout(self.now);
        }
        sent
    }
}

/// Baseline: the same frame decoded and re-encoded, no state machine.
fn codec_only(decoder: &Decoder, input: &[u8], samples: &mut Vec<i16>, out: &mut [u8]) -> usize {
    let (msg, _) = decoder.decode(input).expect("valid frame");
    let Message::Audio { rate, pcm } = msg else {
        unreachable!("the rig sends audio")
    };
    samples.clear();
    audiosocket::pcm_to_samples(pcm, samples);
    audiosocket::encode_samples(rate, samples, out).expect("fits")
}

fn percentiles(label: &str, mut f: impl FnMut() -> usize) -> f64 {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
    for _ in 0..10_000 {
        black_box(f());
    }
    for _ in 0..200_000 {
        let t = Instant::now();
        black_box(f());
        h.record(t.elapsed().as_nanos().max(1) as u64).unwrap();
    }
    println!(
        "{label:<34} p50 {:>6} ns  p95 {:>6} ns  p99 {:>6} ns  max {:>8} ns  (n={})",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.95),
        h.value_at_quantile(0.99),
        h.max(),
        h.len()
    );
    h.value_at_quantile(0.99) as f64
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for rate in [SampleRate::HZ_8000, SampleRate::HZ_16000] {
        let mut rig = Rig::new(rate);
        c.bench_function(&format!("frame_path/{}hz", rate.hz()), |b| {
            b.iter(|| black_box(rig.step()))
        });
    }
    c.final_summary();

    println!("\nper-frame percentiles (hdrhistogram, 200k frames each; budget p99 < 20 us):");
    for rate in [SampleRate::HZ_8000, SampleRate::HZ_16000] {
        let rig_in = Rig::new(rate);
        let decoder = Decoder::default();
        let input = rig_in.input.clone();
        let mut samples = Vec::with_capacity(rate.frame_samples());
        let mut out = vec![0u8; MAX_TRANSMIT];
        let base = percentiles(&format!("baseline codec only @ {} Hz", rate.hz()), || {
            codec_only(&decoder, &input, &mut samples, &mut out)
        });
        let mut rig = Rig::new(rate);
        let full = percentiles(&format!("decode+call+encode @ {} Hz", rate.hz()), || {
            rig.step()
        });
        println!("  ratio full/baseline at p99: {:.2}x", full / base);
    }
}
