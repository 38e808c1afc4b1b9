//! Helpers the benches share.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts the release `hark serve` on `config` (written under a temp folder
/// named after `name`), hands every log line to `on_line`, and waits for
/// the first listener. Returns the process, that listener's address and the
/// folder. `run` names the script that builds the daemon, for the error.
///
/// # Panics
/// If the daemon is not built, or does not listen within 60 s: a broken
/// rig must stop a bench loudly.
pub fn serve_release(
    name: &str,
    run: &str,
    config: &str,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> (Child, SocketAddr, PathBuf) {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    let bin = target.join("release/hark");
    assert!(bin.exists(), "{} is missing: run {run}", bin.display());
    let dir = std::env::temp_dir().join(format!("hark-{name}-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench folder");
    let path = dir.join("hark.toml");
    std::fs::write(&path, config).expect("bench config");
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .env("HARK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hark serve");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening listener=") {
                let _ = tx.send(line.clone());
            }
            on_line(&line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hark listens within 60 s");
    let address = line
        .split("address=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("the listening line names an address");
    (child, address, dir)
}
