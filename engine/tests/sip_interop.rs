//! Interop with a real SIP user agent: baresip (Debian's `baresip-core`,
//! installed by scripts/test) calls `hark serve` over SIP on loopback,
//! once with Opus and once with G.711 µ-law. It plays a recorded human
//! prompt (Asterisk's sound files), presses 4, 2, # as RFC 4733
//! telephone-events, and records what it hears. Checked:
//! - hark heard the caller: the stored transcript has the prompt's words
//!   (through Silero and Whisper, after the jitter buffer and the codec);
//! - hark got the DTMF: a `[keypad] 42` caller line;
//! - the caller heard hark: Whisper finds the agent's greeting in what
//!   baresip decoded.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use media_core::{Resampler, SampleRate};

const PROMPT: &str = "check-number-dial-again";

fn config(sip_codecs: &str) -> String {
    format!(
        r#"
[speech]
models_dir = "{models}"

[[listener]]
name = "voice"
address = "127.0.0.1:0"
agent = "desk"

[agent.desk]
kind = "chat"
providers = []

[agent.desk.script]
greeting = "Hello, this is the test line."
questions = [
  {{ slot = "problem", ask = "What can I do for you?" }},
  {{ slot = "code", ask = "Which code do you have?" }},
]
confirm = "I have noted that."
closing = "Thank you. Goodbye."

[agent.desk.voice]

[store]
url = "sqlite://calls.db"

[sip]
listen = "127.0.0.1:0"
codecs = {sip_codecs}
rtp_ports = [32000, 32999]
"#,
        models = root().join("models").display()
    )
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The caller's audio: 2 s of silence, the prompt, then silence until
/// `total` (baresip hangs up when its file ends), at `rate` with
/// `channels` (baresip's aufile wants the codec's own format).
fn caller_wav(path: &Path, rate: u32, channels: u16, total: Duration) {
    let prompt =
        hark::wav::read(&Path::new("/usr/share/asterisk/sounds/en").join(format!("{PROMPT}.wav")))
            .unwrap_or_else(|e| panic!("{e} (scripts/test installs asterisk-core-sounds-en-wav)"));
    let mut mono = vec![0i16; prompt.rate.hz() as usize * 2];
    mono.extend_from_slice(&prompt.samples);
    let want = (prompt.rate.hz() as f64 * total.as_secs_f64()) as usize;
    mono.resize(want.max(mono.len()), 0);
    let samples =
        Resampler::convert_all(prompt.rate, SampleRate::new(rate).unwrap(), &mono).unwrap();
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        for _ in 0..channels {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A wav as mono 16 kHz.
fn heard(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    let all: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    let ch = usize::from(spec.channels.max(1));
    let mono: Vec<i16> = all
        .chunks(ch)
        .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32) as i16)
        .collect();
    Resampler::convert_all(
        SampleRate::new(spec.sample_rate).unwrap(),
        SampleRate::HZ_16000,
        &mono,
    )
    .unwrap()
}

struct Outcome {
    transcript: Vec<(String, String)>,
    /// hark's log lines about keys and the call's end, for a failure.
    keys_log: Vec<String>,
    heard: String,
    codec_line: String,
}

/// One call from baresip with `modules` (its codecs) and a caller file
/// at `rate`/`channels`.
fn call(sip_codecs: &str, modules: &[&str], rate: u32, channels: u16) -> Outcome {
    let mut daemon = Daemon::start(&config(sip_codecs));
    let sip = daemon.sip_address();

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("baresip");
    let snd = dir.path().join("snd");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&snd).unwrap();
    let wav = dir.path().join("caller.wav");
    caller_wav(&wav, rate, channels, Duration::from_secs(20));
    let cons = free_udp_port();
    let mut text = format!(
        "sip_listen 127.0.0.1:{}\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n\
module_path /usr/lib/baresip/modules\nmodule aufile.so\nmodule sndfile.so\nmodule cons.so\n\
module_app account.so\nmodule_app menu.so\ncons_listen 127.0.0.1:{cons}\nsnd_path {}\n",
        free_udp_port(),
        wav.display(),
        snd.display()
    );
    for m in modules {
        text.push_str(&format!("module {m}\n"));
    }
    std::fs::write(conf.join("config"), text).unwrap();
    std::fs::write(conf.join("accounts"), "<sip:caller@127.0.0.1>;regint=0\n").unwrap();
    std::fs::write(conf.join("contacts"), "").unwrap();
    let baresip = which_baresip();
    let mut ua = Command::new(&baresip)
        .arg("-f")
        .arg(&conf)
        .arg("-e")
        .arg(format!("/dial sip:desk@{sip}"))
        .arg("-t")
        .arg("40")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", baresip.display()));
    assert!(
        daemon.wait_for_log("sip call answered", Duration::from_secs(15)),
        "hark did not answer baresip: {:#?}",
        daemon.log
    );
    let codec_line = daemon
        .log
        .iter()
        .find(|l| l.contains("sip call answered"))
        .cloned()
        .unwrap();
    let id = codec_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("call="))
        .unwrap()
        .to_string();
    // The prompt ends about 4.3 s in; the keys go after the agent's reply.
    std::thread::sleep(Duration::from_secs(9));
    let keys = UdpSocket::bind("127.0.0.1:0").unwrap();
    for k in ["4", "2", "#"] {
        keys.send_to(k.as_bytes(), ("127.0.0.1", cons)).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    // baresip hangs up when its file ends (20 s); -t 40 bounds it.
    let deadline = Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(s) = ua.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "baresip did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = ua.wait_with_output().unwrap();
    let ua_log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "baresip failed: {ua_log}");
    assert!(
        daemon.wait_for_log("sip media ended", Duration::from_secs(10)),
        "{:#?}",
        daemon.log
    );
    let db = format!("sqlite://{}", daemon.dir().join("calls.db").display());
    let transcript = runtime().block_on(async {
        let store = hark::store::Store::connect(&db).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            if let Ok(c) = store.call("default", &id).await
                && c.call.outcome.is_some()
            {
                got = c
                    .transcript
                    .iter()
                    .map(|s| (s.speaker.clone(), s.text.clone()))
                    .collect();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.close().await;
        got
    });
    let dec = std::fs::read_dir(&snd)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip recorded nothing: {ua_log}"));
    let samples = heard(&dec);
    let stt = whisper_tiny();
    // The greeting and the first question: the first 4 s.
    let heard = hear(
        &stt,
        SampleRate::HZ_16000,
        samples[..samples.len().min(16_000 * 4)].to_vec(),
    );
    daemon.pump_log();
    let keys_log = daemon
        .log
        .iter()
        .filter(|l| l.contains("dtmf") || l.contains("call ended") || l.contains("sip media"))
        .cloned()
        .collect();
    Outcome {
        transcript,
        keys_log,
        heard,
        codec_line,
    }
}

fn which_baresip() -> PathBuf {
    let p = PathBuf::from("/usr/bin/baresip");
    assert!(
        p.exists(),
        "baresip is not installed: scripts/test installs Debian's baresip-core"
    );
    p
}

fn check(o: &Outcome) {
    let caller: Vec<&str> = o
        .transcript
        .iter()
        .filter(|(s, _)| s == "caller")
        .map(|(_, t)| t.as_str())
        .collect();
    let said = caller.join(" | ").to_lowercase();
    assert!(
        said.contains("check the number") && said.contains("again"),
        "hark heard the caller's prompt: {said:?} ({:?})",
        o.transcript
    );
    assert!(
        caller.contains(&"[keypad] 42"),
        "the DTMF reached the agent: {caller:?}; hark's log: {:#?}",
        o.keys_log
    );
    let heard = o.heard.to_lowercase();
    assert!(
        heard.contains("test line"),
        "baresip heard the greeting: {heard:?}"
    );
}

#[test]
fn baresip_calls_hark_over_opus() {
    let o = call(r#"["opus", "pcmu"]"#, &["opus.so", "g711.so"], 48_000, 2);
    assert!(o.codec_line.contains("codec=Opus"), "{}", o.codec_line);
    check(&o);
}

#[test]
fn baresip_calls_hark_over_pcmu() {
    let o = call(r#"["pcmu", "opus"]"#, &["g711.so"], 8_000, 1);
    assert!(o.codec_line.contains("codec=Pcmu"), "{}", o.codec_line);
    check(&o);
}
