//! `hark dial`: an AudioSocket call from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hark::dial::{DialEnd, DialOptions};
use media_core::{Digit, Resampler, SampleRate};
use uuid::Uuid;

use crate::runtime;

#[derive(clap::Args)]
pub(crate) struct DialArgs {
    /// The server's address, e.g. 127.0.0.1:9092.
    address: SocketAddr,
    /// A WAV file to send (any rate; resampled). Without it, a 440 Hz tone.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Where to record what the server sends back.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The slin rate to send: 8000 (kind 0x10), 16000 (0x12), ...
    #[arg(long, default_value_t = 8000)]
    rate: u32,
    /// Frame length in ms (Asterisk: 20; some SIP callers: 30).
    #[arg(long, default_value_t = 20)]
    frame_ms: u64,
    /// Keep listening this long after the last frame.
    #[arg(long, default_value_t = 1000)]
    tail_ms: u64,
    /// Length of the test tone when no --input is given.
    #[arg(long, default_value_t = 3.0)]
    tone_secs: f64,
    /// The call's UUID (default: random).
    #[arg(long)]
    uuid: Option<Uuid>,
    /// DTMF digits to send after the audio, e.g. "12#".
    #[arg(long, default_value = "")]
    dtmf: String,
    /// Send AudioSocket hangup at the end instead of just closing.
    #[arg(long)]
    hangup: bool,
}

pub(crate) fn dial(args: DialArgs) -> anyhow::Result<ExitCode> {
    let rate = SampleRate::new(args.rate)
        .filter(|r| media_core::audiosocket::slin_kind(*r).is_some())
        .with_context(|| format!("--rate {} has no AudioSocket slin kind: use 8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000 or 192000", args.rate))?;
    let audio = match &args.input {
        Some(path) => {
            let wav = hark::wav::read(path)?;
            Resampler::convert_all(wav.rate, rate, &wav.samples)?
        }
        None => {
            if !(0.0..=3600.0).contains(&args.tone_secs) {
                bail!("--tone-secs must be between 0 and 3600");
            }
            tone(rate, 440.0, args.tone_secs)
        }
    };
    let dtmf = args
        .dtmf
        .bytes()
        .map(|b| {
            Digit::from_ascii(b).with_context(|| {
                format!(
                    "--dtmf: {:?} is not a DTMF digit (0-9 * # A-D)",
                    char::from(b)
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut opts = DialOptions::new(args.address, rate, audio);
    opts.uuid = args.uuid.unwrap_or_else(Uuid::new_v4);
    opts.frame = Duration::from_millis(args.frame_ms);
    opts.tail = Duration::from_millis(args.tail_ms);
    opts.dtmf = dtmf;
    opts.hangup = args.hangup;

    let report = runtime()?.block_on(hark::dial::dial(&opts))?;
    let secs = |n: usize| n as f64 / f64::from(rate.hz());
    println!("call {}", opts.uuid);
    println!(
        "  sent     {} frames, {:.2} s at {} Hz",
        report.sent_frames,
        secs(opts.audio.len()),
        rate.hz()
    );
    println!(
        "  received {} frames, {:.2} s{}",
        report.arrivals.len(),
        secs(report.received.len()),
        report
            .received_rate
            .map(|r| format!(" at {} Hz", r.hz()))
            .unwrap_or_default()
    );
    println!(
        "  connect  {:.3} ms; first audio back after {}",
        report.connect_time.as_secs_f64() * 1e3,
        report
            .first_audio()
            .map(|d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into())
    );
    if report.arrivals.len() > 1 {
        println!("  receive interval {}", report.intervals());
    } else {
        println!("  no audio came back (a listening agent does not reply)");
    }
    let (end, code) = match report.end {
        DialEnd::Finished => ("we finished and closed".to_string(), ExitCode::SUCCESS),
        DialEnd::ServerHangup => (
            "server hung up (0x00): the dialplan would continue".to_string(),
            ExitCode::SUCCESS,
        ),
        DialEnd::ServerClosed => (
            "server closed the connection".to_string(),
            ExitCode::SUCCESS,
        ),
        DialEnd::Refused => (
            "server refused the call (0x00 before any audio: at capacity, shutting down, or a UUID already in a call); the dialplan would continue"
                .to_string(),
            ExitCode::from(2),
        ),
        DialEnd::ServerError(c) => (format!("server sent error {c:?}"), ExitCode::from(2)),
        DialEnd::Protocol => (
            "server sent bytes that are not AudioSocket".to_string(),
            ExitCode::from(2),
        ),
    };
    println!("  ended: {end}");
    if let Some(path) = &args.output {
        let out_rate = report.received_rate.unwrap_or(rate);
        hark::wav::write(path, out_rate, &report.received)?;
        println!("  wrote {}", path.display());
    }
    Ok(code)
}

pub(crate) fn tone(rate: SampleRate, hz: f64, secs: f64) -> Vec<i16> {
    let n = (f64::from(rate.hz()) * secs) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate.hz());
            (8_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}
