//! What can be known about a configuration before starting: the files it
//! names exist, its ports are free, its store can be written. `hark
//! check-config` runs every check, so what it passes `serve` does not then
//! refuse; `serve` itself refuses a store it could never write (it would
//! otherwise spool forever, taking a permanent refusal for an outage).

use std::fmt;
use std::path::Path;

use crate::config::{AgentSpec, Config, SttConfig, TtsConfig, VadKind};

/// One thing that would stop `serve` or keep it from working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration key at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn problem(key: &str, message: String) -> Problem {
    Problem {
        key: key.to_string(),
        message,
    }
}

/// Every check: files, ports, store.
pub fn check(config: &Config) -> Vec<Problem> {
    let mut out = files(config);
    out.extend(ports(config));
    out.extend(store(config));
    out
}

/// The model files, voices and programs the listeners' agents need.
pub fn files(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let s = &config.speech;
    let agents: Vec<&AgentSpec> = config.listeners.iter().map(|l| &l.agent).collect();
    let listens = agents.iter().any(|a| a.listens());
    let silero = agents
        .iter()
        .any(|a| matches!(a.ears(), Some((VadKind::Silero, _))));
    let piper = agents.iter().any(|a| a.speaks()) && matches!(s.tts, TtsConfig::Piper { .. });
    let smart = agents.iter().any(|a| a.smart_turn().is_some());
    if (listens || piper) && !s.models_dir.is_dir() {
        out.push(problem(
            "speech.models_dir",
            format!(
                "{} is not a folder (python3 models/fetch.py fills it)",
                s.models_dir.display()
            ),
        ));
    }
    let mut need = |key: &str, path: &Path| {
        if !path.is_file() {
            out.push(problem(key, format!("{} does not exist", path.display())));
        }
    };
    if silero || piper || smart {
        need("speech.onnxruntime", &s.onnxruntime);
    }
    if smart {
        need("speech.models_dir", &s.turn_model());
    }
    if silero {
        need("speech.models_dir", &s.silero_model());
    }
    if listens && let SttConfig::Whisper(w) = &s.stt {
        need("stt.model", &w.model);
    }
    if piper && let TtsConfig::Piper { voice, .. } = &s.tts {
        need("tts.voice", voice);
        let mut json = voice.as_os_str().to_owned();
        json.push(".json");
        need("tts.voice", Path::new(&json));
    }
    for a in &agents {
        if let AgentSpec::Voice(v) = a
            && let Some(voice) = &v.tts_voice
        {
            need(&format!("agent.{}.voice.tts_voice", v.name), voice);
        }
    }
    out
}

/// The addresses `serve` binds, tried now (a listener on port 0 always binds).
pub fn ports(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for l in &config.listeners {
        if l.address.port() != 0
            && let Err(e) = std::net::TcpListener::bind(l.address)
        {
            out.push(problem(
                &format!("listener {:?} address", l.name),
                format!("cannot listen on {}: {e}", l.address),
            ));
        }
    }
    if let Some(api) = &config.api
        && api.address.port() != 0
        && let Err(e) = std::net::TcpListener::bind(api.address)
    {
        out.push(problem(
            "api.address",
            format!("cannot listen on {}: {e}", api.address),
        ));
    }
    if let Some(sip) = &config.sip
        && sip.listen.port() != 0
        && let Err(e) = std::net::UdpSocket::bind(sip.listen)
    {
        out.push(problem(
            "sip.listen",
            format!("cannot listen on udp {}: {e}", sip.listen),
        ));
    }
    out
}

/// The store's SQLite file and the spool can be written.
pub fn store(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(st) = &config.store else {
        return out;
    };
    if let Some(file) = sqlite_file(&st.url)
        && let Err(e) = writable(file)
    {
        out.push(problem(
            "store.url",
            format!("the SQLite file {} cannot be written: {e}", file.display()),
        ));
    }
    if let Err(e) = writable(&st.spool) {
        out.push(problem(
            "store.spool",
            format!("{} cannot be written: {e}", st.spool.display()),
        ));
    }
    out
}

/// The file of a `sqlite://FILE` URL (without its `?options`).
fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let file = rest.split('?').next().unwrap_or(rest);
    (!file.is_empty() && file != ":memory:").then(|| Path::new(file))
}

/// Whether `file` can be created or appended to, without changing it: an
/// existing file is opened for append (nothing written), a missing one is
/// created in a folder that is made if needed, then removed again.
fn writable(file: &Path) -> std::io::Result<()> {
    if file.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map(drop);
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir
        && !d.exists()
    {
        // `serve` creates it too (the spool's folder, SQLite's file).
        std::fs::create_dir_all(d)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)?;
    std::fs::remove_file(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_file("sqlite://hark.db"), Some(Path::new("hark.db")));
        assert_eq!(
            sqlite_file("sqlite:///var/lib/hark/hark.db?mode=rwc"),
            Some(Path::new("/var/lib/hark/hark.db"))
        );
        assert_eq!(sqlite_file("mysql://root@127.0.0.1/test"), None);
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    #[test]
    fn a_file_under_proc_is_not_writable_and_a_temp_one_is() {
        assert!(writable(Path::new("/proc/hark/hark.db")).is_err());
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("sub/hark.db");
        assert!(writable(&f).is_ok());
        // Checking leaves nothing behind but the folder serve would make.
        assert!(!f.exists());
    }
}
