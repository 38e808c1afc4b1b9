//! `loadgen`: N concurrent AudioSocket callers against a running `hark serve`
//! with an echo agent, on loopback only.
//!
//! Every caller streams 20 ms frames in real time for `--secs`, each frame
//! filled with its sequence number so the echo of every frame can be matched
//! to when it was sent. Reports (hdrhistogram):
//! - outbound pacing: gap between consecutive frames received from hark, and
//!   its deviation from 20 ms (p50/p99/max). Measured at the caller, so it
//!   includes the load generator's own scheduling: an upper bound.
//! - echo round trip of each frame, from its send to its echo's arrival
//!   (includes the configured echo delay) (p50/p99/max);
//! - frames lost (sent, never echoed);
//! - with `--pid`: the daemon's CPU% over the run and RSS per call (peak RSS
//!   during the calls minus RSS before them, divided by the calls).
//!
//! The run is bounded: calls last `--secs`, and the whole run stops by itself.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use hark::dial::{DialEnd, DialOptions, DialReport, dial};
use hark::stats::LatencyHistogram;
use media_core::SampleRate;

#[derive(Parser, Debug)]
#[command(about = "Concurrent AudioSocket callers against hark serve (echo agent)")]
struct Args {
    /// hark's AudioSocket address (loopback only).
    #[arg(long, default_value = "127.0.0.1:9092")]
    addr: SocketAddr,
    /// Concurrent calls.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Length of each call in seconds.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Calls start spread over this many ms.
    #[arg(long, default_value_t = 2000)]
    ramp_ms: u64,
    /// The echo agent's configured delay (the round trip includes it).
    #[arg(long, default_value_t = 0)]
    echo_delay_ms: u64,
    /// The slin rate: 8000 or 16000.
    #[arg(long, default_value_t = 8000)]
    rate: u32,
    /// The daemon's pid, for CPU% and RSS.
    #[arg(long)]
    pid: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        bail!(
            "loadgen only sends to loopback addresses, not {}",
            args.addr
        );
    }
    if args.calls == 0 || args.calls > 5_000 || args.secs == 0 || args.secs > 600 {
        bail!("--calls must be 1..=5000 and --secs 1..=600");
    }
    let rate = SampleRate::new(args.rate).context("bad --rate")?;
    // One thread: the load generator must leave the other core to hark.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args, rate))
}

struct ProcSample {
    cpu_ticks: u64,
    rss_kib: u64,
}

fn sample_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(ProcSample { cpu_ticks, rss_kib })
}

fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

async fn run(args: Args, rate: SampleRate) -> anyhow::Result<()> {
    let frame = rate.frame_samples();
    let frames = (args.secs * 50) as usize;
    // Frame k carries k+1 in every sample (0 is the echo delay's silence).
    let audio: Vec<i16> = (0..frames)
        .flat_map(|k| std::iter::repeat_n((k % 30_000 + 1) as i16, frame))
        .collect();
    let before = args.pid.and_then(sample_proc);
    let wall = std::time::Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.calls {
        let mut opts = DialOptions::new(args.addr, rate, audio.clone());
        opts.tail = Duration::from_millis(args.echo_delay_ms + 500);
        let start_after = Duration::from_millis(args.ramp_ms * i as u64 / args.calls as u64);
        tasks.spawn(async move {
            tokio::time::sleep(start_after).await;
            dial(&opts).await
        });
    }
    // Sample the daemon's RSS while calls run.
    let mut peak_rss = before.as_ref().map_or(0, |s| s.rss_kib);
    let mut reports = Vec::with_capacity(args.calls);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(r) => reports.push(r?),
                None => break,
            },
            _ = ticker.tick() => {
                if let Some(s) = args.pid.and_then(sample_proc) {
                    peak_rss = peak_rss.max(s.rss_kib);
                }
            }
        }
    }
    let elapsed = wall.elapsed();
    let after = args.pid.and_then(sample_proc);

    let mut interval = LatencyHistogram::new();
    let mut deviation = LatencyHistogram::new();
    let mut rtt = LatencyHistogram::new();
    let (mut sent, mut lost, mut failed, mut refused) = (0u64, 0u64, 0u64, 0u64);
    let delay = Duration::from_millis(args.echo_delay_ms);
    let frame_len = Duration::from_millis(20);
    for r in &reports {
        match r {
            Err(e) => {
                failed += 1;
                eprintln!("call failed: {e}");
            }
            Ok(report) if matches!(report.end, DialEnd::ServerError(_)) => refused += 1,
            Ok(report) => {
                sent += report.sent_frames;
                lost += record_call(
                    report,
                    frame,
                    frame_len,
                    &mut interval,
                    &mut deviation,
                    &mut rtt,
                );
            }
        }
    }

    let i = interval.percentiles();
    let d = deviation.percentiles();
    let t = rtt.percentiles();
    println!(
        "loadgen: {} calls x {} s at {} Hz against {} ({:.1} s wall)",
        args.calls,
        args.secs,
        rate.hz(),
        args.addr,
        elapsed.as_secs_f64()
    );
    println!(
        "  calls ok {}, refused {refused}, failed {failed}",
        reports.len() as u64 - refused - failed
    );
    println!("  pacing interval        {i}");
    println!("  pacing |dev from 20ms| {d}");
    println!("  echo round trip        {t}");
    println!(
        "    (includes the {} ms echo delay, less the send-ahead frame hark may release early)",
        delay.as_millis()
    );
    println!("  frames sent {sent}, lost {lost}");
    if let (Some(b), Some(a)) = (before, after) {
        let secs = elapsed.as_secs_f64();
        let cpu = (a.cpu_ticks - b.cpu_ticks) as f64 / clock_ticks_per_sec() as f64 / secs * 100.0;
        let per_call = peak_rss.saturating_sub(b.rss_kib) as f64 / args.calls as f64;
        println!(
            "  daemon CPU {cpu:.1}% of one core over the run; RSS {} KiB idle, {} KiB peak, {per_call:.1} KiB per call",
            b.rss_kib, peak_rss
        );
    }
    if failed > 0 {
        bail!("{failed} calls failed");
    }
    Ok(())
}

/// Adds one call's figures; returns its lost frames.
fn record_call(
    report: &DialReport,
    frame: usize,
    frame_len: Duration,
    interval: &mut LatencyHistogram,
    deviation: &mut LatencyHistogram,
    rtt: &mut LatencyHistogram,
) -> u64 {
    let mut seen = HashSet::new();
    // Skip the first gaps: send-ahead releases the first frames back to back.
    for w in report.arrivals.windows(2).skip(2) {
        let gap = w[1].at - w[0].at;
        interval.record(gap);
        deviation.record(gap.abs_diff(frame_len));
    }
    for a in &report.arrivals {
        let Some(&v) = report.received.get(a.offset) else {
            continue;
        };
        if v <= 0 || a.len != frame {
            continue;
        }
        let k = (v - 1) as u64;
        if seen.insert(k) {
            let sent_at = frame_len * k as u32;
            rtt.record(a.at.saturating_sub(sent_at));
        }
    }
    report.sent_frames.saturating_sub(seen.len() as u64)
}
