//! End to end: the real daemon, real TCP, the real `dial` client.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use hark::dial::{DialEnd, DialOptions, dial};
use media_core::SampleRate;

#[test]
fn echo_is_sample_exact_shifted_by_the_delay() {
    let daemon = Daemon::start(&echo_config(""));
    let rt = runtime();
    for (rate, frame_ms) in [
        (SampleRate::HZ_8000, 20u64),
        (SampleRate::HZ_8000, 30),
        (SampleRate::HZ_16000, 20),
    ] {
        // 2 s plus a short last frame.
        let sent = pattern(rate.samples_in(Duration::from_millis(2_010)));
        let mut opts = DialOptions::new(daemon.address, rate, sent.clone());
        opts.frame = Duration::from_millis(frame_ms);
        opts.tail = Duration::from_millis(ECHO_DELAY_MS + 600);
        let report = rt.block_on(dial(&opts)).expect("dial");
        assert_eq!(report.end, DialEnd::Finished);
        assert_eq!(report.received_rate, Some(rate));
        assert_echo(
            &report.received,
            &sent,
            rate,
            Duration::from_millis(ECHO_DELAY_MS),
        );
        // Frames come back at the call's rate in 20 ms frames (once the
        // caller's first frame told the rate: the keep-alive silence before
        // it is at the default 8 kHz).
        let full = rate.frame_samples();
        let short = report
            .arrivals
            .iter()
            .skip_while(|a| a.len != full)
            .filter(|a| a.len != full)
            .count();
        assert!(short <= 1, "{short} short frames at {rate}, {frame_ms} ms");
    }
}

#[test]
fn hangup_from_the_caller_and_dtmf_are_handled() {
    let mut daemon = Daemon::start(&echo_config(""));
    let rt = runtime();
    let mut opts = DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(8_000));
    opts.dtmf = "5#"
        .bytes()
        .filter_map(media_core::Digit::from_ascii)
        .collect();
    opts.hangup = true;
    opts.tail = Duration::from_millis(100);
    let report = rt.block_on(dial(&opts)).expect("dial");
    assert_eq!(report.end, DialEnd::Finished);
    assert!(
        daemon.wait_for_log("reason=peer sent hangup", Duration::from_secs(5)),
        "{:#?}",
        daemon.log
    );
    assert!(daemon.log.iter().any(|l| l.contains("dtmf digit=5")));
    assert!(daemon.log.iter().any(|l| l.contains("dtmf digit=#")));
}

#[test]
fn long_silence_without_frames_keeps_the_call_up() {
    // A Local channel sends nothing while the caller is silent: the call must
    // survive the gap and echo again afterwards.
    let daemon = Daemon::start(&echo_config(""));
    let rt = runtime();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(daemon.address)
            .await
            .unwrap();
        let mut uuid = vec![0x01, 0x00, 0x10];
        uuid.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        s.write_all(&uuid).await.unwrap();
        let frame = |v: i16| {
            let mut f = vec![0x10, 0x01, 0x40];
            for _ in 0..160 {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f
        };
        s.write_all(&frame(7)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        s.write_all(&frame(9)).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !got.windows(2).any(|w: &[u8]| w == [9, 0]) {
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("echo after the silence")
                .unwrap();
            assert!(n > 0, "hark closed the call during the silence");
            got.extend_from_slice(&buf[..n]);
        }
    });
}

#[test]
fn hark_dial_cli_records_the_echo_to_a_wav() {
    let daemon = Daemon::start(&echo_config(""));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    let output = dir.path().join("out.wav");
    // A 16 kHz file, sent at 8 kHz: dial resamples it.
    let sent16 = pattern(16_000);
    hark::wav::write(&input, SampleRate::HZ_16000, &sent16).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args([
            "dial",
            &daemon.address.to_string(),
            "--rate",
            "8000",
            "--tail-ms",
            "800",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .expect("run hark dial");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sent     50 frames"), "{stdout}");
    assert!(stdout.contains("receive interval p50"), "{stdout}");
    let rec = hark::wav::read(&output).unwrap();
    assert_eq!(rec.rate, SampleRate::HZ_8000);
    let sent8 =
        media_core::Resampler::convert_all(SampleRate::HZ_16000, SampleRate::HZ_8000, &sent16)
            .unwrap();
    assert_echo(
        &rec.samples,
        &sent8,
        SampleRate::HZ_8000,
        Duration::from_millis(ECHO_DELAY_MS),
    );
}

#[test]
fn dial_reports_a_clear_error_when_nobody_listens() {
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["dial", "127.0.0.1:1", "--tone-secs", "0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to 127.0.0.1:1"), "{err}");
}
