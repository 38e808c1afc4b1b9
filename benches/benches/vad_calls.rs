//! 200 calls listening with Silero VAD on a 2-worker tokio runtime: the
//! VAD scored in place on the calls' tasks (the old path: a session pool
//! behind mutexes, locked on tokio's worker threads) against the VAD on
//! its inference threads (the calls' tasks never take a lock), in the same
//! run, on the same audio.
//!
//! Prints, for each: the waits for a pool lock on a tokio worker per
//! second (a worker blocked: every call it carries stalls), the worker
//! time a frame's input into the session takes (in place that includes
//! Silero's inference: a worker blocked for it), and how late
//! the calls' 20 ms frame ticks fire, p50/p95/p99 from hdrhistogram (what
//! a blocked worker does to everyone's pacing). Needs models/fetch.py.
//! Usage: cargo bench -p hark-benches --bench vad_calls [-- CALLS SECONDS]
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hark::speech::vad::{Listening, SileroModel, VadThreads, silero_shape};
use hdrhistogram::Histogram;
use media_core::{
    CallConfig, CallId, EndpointConfig, Endpointer, Event, Frame, SampleRate, Session, Time,
    Transcribe,
};
use tokio::time::{Instant, MissedTickBehavior};

const FRAME: Duration = Duration::from_millis(20);

/// Nanoseconds the tokio workers spent handing frames to sessions.
static IN_SESSION_NS: AtomicU64 = AtomicU64::new(0);

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn audio() -> Vec<i16> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/speech/turns.8k.wav");
    hark::wav::read(&path).unwrap().samples
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    InPlace,
    Threads,
}

/// One call: a frame every 20 ms into its session for `secs`; returns
/// how late each tick fired (us) and the windows scored.
async fn call(
    mode: Mode,
    model: Arc<SileroModel>,
    threads: Arc<VadThreads>,
    audio: Arc<Vec<i16>>,
    offset: usize,
    secs: u64,
) -> Histogram<u64> {
    let rate = SampleRate::HZ_8000;
    let endpointer = match mode {
        Mode::InPlace => Endpointer::new(EndpointConfig::default(), Box::new(model.detector(rate))),
        Mode::Threads => {
            let (r, w) = silero_shape(rate);
            Endpointer::scored_elsewhere(EndpointConfig::default(), r, w)
        }
    };
    let mut session = Session::new(Time::ZERO, CallConfig::default(), Box::new(Transcribe))
        .with_endpointer(endpointer);
    let mut listening = Listening::new(threads);
    let epoch = Instant::now();
    let clock = || Time::from_micros(epoch.elapsed().as_micros() as u64);
    session.handle_start(clock(), CallId(uuid::Uuid::new_v4()));
    let mut late = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut tick = tokio::time::interval_at(epoch + FRAME, FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let frames = (secs * 50) as usize;
    let mut sent = 0;
    let mut at = offset % audio.len();
    while sent < frames {
        tokio::select! {
            due = tick.tick() => {
                late.record(due.elapsed().as_micros().max(1) as u64).unwrap();
                let n = rate.frame_samples();
                if at + n > audio.len() {
                    at = 0;
                }
                let now = clock();
                let busy = std::time::Instant::now();
                session.handle_audio(now, Frame::new(rate, &audio[at..at + n]));
                IN_SESSION_NS.fetch_add(busy.elapsed().as_nanos() as u64, Ordering::Relaxed);
                at += n;
                sent += 1;
                if session.poll_timeout().is_some_and(|d| d <= now) {
                    session.handle_timeout(now);
                }
            }
            Some(scored) = listening.next(), if listening.waiting() => {
                listening.take(&mut session, clock(), scored);
            }
        }
        let now = clock();
        while session.poll_transmit(now).is_some() {}
        while let Some(ev) = session.poll_event() {
            if let Event::Score { rate, window } = ev {
                listening.submit(&mut session, now, rate, window);
            }
        }
    }
    late
}

fn run(mode: Mode, calls: usize, secs: u64, model: &Arc<SileroModel>, threads: &Arc<VadThreads>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let audio = Arc::new(audio());
    let waits_before = model.lock_waits();
    let busy_before = IN_SESSION_NS.load(Ordering::Relaxed);
    let scored_before = threads.scored();
    let started = std::time::Instant::now();
    let late = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..calls {
            tasks.push(tokio::spawn(call(
                mode,
                Arc::clone(model),
                Arc::clone(threads),
                Arc::clone(&audio),
                i * 997,
                secs,
            )));
        }
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for t in tasks {
            all.add(t.await.unwrap()).unwrap();
        }
        all
    });
    let took = started.elapsed().as_secs_f64();
    let waits = model.lock_waits() - waits_before;
    let busy = (IN_SESSION_NS.load(Ordering::Relaxed) - busy_before) as f64 / 1e9;
    let label = match mode {
        Mode::InPlace => "VAD in place (pool locked on tokio workers)",
        Mode::Threads => "VAD on its inference threads",
    };
    println!("{label}:");
    println!(
        "  tokio workers blocked on a pool lock: {} in {:.1} s = {:.0}/s",
        waits,
        took,
        waits as f64 / took
    );
    println!(
        "  tokio worker time handing frames to sessions: {:.0} ms per s of wall time ({:.1} us per frame)",
        busy * 1e3 / took,
        busy * 1e6 / (calls as f64 * secs as f64 * 50.0)
    );
    if mode == Mode::Threads {
        println!(
            "  windows scored on the threads: {} ({} refused: queue full)",
            threads.scored() - scored_before,
            threads.refused()
        );
    }
    println!(
        "  frame tick lateness: p50 {} us  p95 {} us  p99 {} us  max {} us  (n={})",
        late.value_at_quantile(0.50),
        late.value_at_quantile(0.95),
        late.value_at_quantile(0.99),
        late.max(),
        late.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let calls: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let m = models();
    let library = m.join("onnxruntime/libonnxruntime.so.1.31.1");
    let onnx = m.join("silero/silero_vad.onnx");
    let model = SileroModel::load(&library, &onnx, 2)
        .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py"));
    let threads = VadThreads::start(&library, &onnx, 2).unwrap();
    println!("{calls} calls, {secs} s each, 8 kHz, Silero with 2 sessions, tokio with 2 workers\n");
    run(Mode::InPlace, calls, secs, &model, &threads);
    run(Mode::Threads, calls, secs, &model, &threads);
}
