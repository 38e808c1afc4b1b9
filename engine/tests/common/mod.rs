//! Starts the real `hark` daemon on a free loopback port and talks to it over
//! real TCP. Shared by the end-to-end tests.
#![allow(dead_code, unreachable_pub)]

pub mod asterisk;
pub mod db;
pub mod sip;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use media_core::SampleRate;

/// A running `hark serve`; sends SIGKILL on drop if still running.
pub struct Daemon {
    child: Child,
    pub address: SocketAddr,
    /// Every log line so far (collected by a thread).
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
    _dir: tempfile::TempDir,
}

pub const ECHO_DELAY_MS: u64 = 200;

/// A config with one echo listener on an OS-chosen loopback port.
pub fn echo_config(extra_server: &str) -> String {
    format!(
        r#"
[server]
{extra_server}

[limits]
send_ahead_frames = 1

[[listener]]
name = "test"
address = "127.0.0.1:0"
agent = "echo"

[agent.echo]
kind = "echo"
delay_ms = {ECHO_DELAY_MS}
"#
    )
}

impl Daemon {
    pub fn start(config: &str) -> Daemon {
        Daemon::start_logging(config, "debug")
    }

    /// Starts it with `HARK_LOG` at `level` (the production default is info).
    pub fn start_logging(config: &str, level: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("hark.toml");
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hark"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("HARK_LOG", level)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hark serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("hark did not start listening; log: {log:#?}"));
            log.push(line.clone());
            if line.contains("listening listener=") {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
                    .expect("listening line names the address");
                break addr.parse().expect("a socket address");
            }
        };
        Daemon {
            child,
            address,
            lines: rx,
            log,
            _dir: dir,
        }
    }

    /// Collects log lines that have arrived.
    pub fn pump_log(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    /// Waits up to `within` for a log line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, within: Duration) -> bool {
        self.wait_for_log_count(needle, 1, within)
    }

    /// Waits up to `within` until `n` log lines contain `needle`.
    pub fn wait_for_log_count(&mut self, needle: &str, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            self.pump_log();
            if self.log.iter().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Ok(l) = self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                self.log.push(l);
            }
        }
    }

    /// The folder holding its config (relative paths in it start here).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon at once (SIGKILL), as a crash or the OOM killer would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.pump_log();
    }

    /// The SIP address, from the "sip listening" log line (waits for it).
    pub fn sip_address(&mut self) -> SocketAddr {
        assert!(
            self.wait_for_log("sip listening", Duration::from_secs(10)),
            "no sip listening line: {:#?}",
            self.log
        );
        self.log
            .iter()
            .find(|l| l.contains("sip listening"))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
            })
            .and_then(|a| a.parse().ok())
            .expect("the line names the address")
    }

    /// The API's address, from the "api listening" log line.
    pub fn api_address(&mut self) -> Option<SocketAddr> {
        self.wait_for_log("api listening", Duration::from_secs(5));
        self.log
            .iter()
            .find(|l| l.contains("api listening"))?
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address="))?
            .parse()
            .ok()
    }

    /// Sends SIGTERM and waits up to `within` for the daemon to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                self.pump_log();
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` samples where sample `i` is `(i % 20000) + 1`: never zero, so echo
/// silence and echoed audio cannot be confused.
pub fn pattern(n: usize) -> Vec<i16> {
    (0..n).map(|i| (i % 20_000) as i16 + 1).collect()
}

/// Asserts `received` is at least `delay` of silence followed by `sent`,
/// sample-exact. The line carries silence from the UUID on (hark keeps it
/// alive), so the echo starts after the delay measured from the caller's
/// first frame, which may come after more silence.
pub fn assert_echo(received: &[i16], sent: &[i16], rate: SampleRate, delay: Duration) {
    let silence = rate.samples_in(delay);
    // `sent` never has a zero sample (see `pattern`): the echo starts at
    // the first sample that is not silence.
    let start = received
        .iter()
        .position(|&s| s != 0)
        .unwrap_or(received.len());
    assert!(
        start >= silence,
        "the echo started after {start} samples of silence, before the {silence} of the delay"
    );
    assert!(
        received.len() >= start + sent.len(),
        "received {} samples, want {start} silence + {} echoed",
        received.len(),
        sent.len()
    );
    let echoed = &received[start..start + sent.len()];
    if let Some(i) = echoed.iter().zip(sent).position(|(a, b)| a != b) {
        panic!(
            "echo differs at sample {i}: got {}, sent {}",
            echoed[i], sent[i]
        );
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The repository root (models/ and testdata/ live there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whisper tiny.en from models/, as the speech tests use it.
pub fn whisper_tiny() -> hark::speech::stt::WhisperTranscriber {
    hark::speech::stt::WhisperTranscriber::start(hark::speech::stt::WhisperConfig {
        model: root().join("models/whisper/ggml-tiny.en.bin"),
        name: "tiny.en".into(),
        language: Some("en".into()),
        threads: 2,
        workers: 1,
        queue: 4,
        fit_window: true,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// What `stt` hears in `samples` (empty when it hears no speech).
pub fn hear(
    stt: &hark::speech::stt::WhisperTranscriber,
    rate: SampleRate,
    samples: Vec<i16>,
) -> String {
    use hark::speech::stt::Transcriber;
    let (tx, rx) = tokio::sync::oneshot::channel();
    stt.submit(hark::speech::stt::SttRequest {
        call: media_core::CallId(uuid::Uuid::new_v4()),
        turn: media_core::Turn::from_recording(rate, samples),
        reply: tx,
    })
    .expect("the queue has room");
    rx.blocking_recv()
        .expect("a reply")
        .map(|t| t.text)
        .unwrap_or_default()
}
