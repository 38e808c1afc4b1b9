//! `hark check-config` refuses what `serve` would refuse (or could never
//! run with): missing models and voices, a port in use, a store that can
//! never be written; and `serve` refuses such a store instead of spooling
//! forever. Each refusal names the key.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::root;

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hark.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn listener(agent: &str, kind: &str) -> String {
    format!(
        "[[listener]]\nname = \"l\"\naddress = \"127.0.0.1:0\"\nagent = \"{agent}\"\n\n[agent.{agent}]\nkind = \"{kind}\"\n"
    )
}

#[test]
fn what_serve_would_refuse_is_refused_with_its_key() {
    let models = root().join("models");
    let say = format!(
        "[speech]\nmodels_dir = \"{}\"\n\n{}text = \"Hi.\"\n",
        models.display(),
        listener("hi", "say")
    );
    // The shipped models: fine.
    let (code, text) = check(&say);
    assert_eq!(code, 0, "{text}");
    // A voice file that is not there.
    let (code, text) = check(&format!(
        "{say}\n[tts]\nvoice = \"/nonexistent/voice.onnx\"\n"
    ));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("tts.voice"), "{text}");
    // A models folder that is not there.
    let (code, text) = check(&format!(
        "[speech]\nmodels_dir = \"/nonexistent/models\"\n\n{}",
        listener("ears", "transcribe")
    ));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("speech.models_dir"), "{text}");
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, text) =
        check(&listener("e", "echo").replace("127.0.0.1:0", &format!("127.0.0.1:{port}")));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("listener \"l\" address"), "{text}");
    // A SQLite file that can never be written.
    let store = format!(
        "{}\n[store]\nurl = \"sqlite:///proc/hark/hark.db\"\nspool = \"{}\"\n",
        listener("e", "echo"),
        std::env::temp_dir().join("hark-check.spool").display()
    );
    let (code, text) = check(&store);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("store.url"), "{text}");
}

#[test]
fn serve_refuses_a_store_it_can_never_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hark.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[store]\nurl = \"sqlite:///proc/hark/hark.db\"\nspool = \"{}\"\n",
            listener("e", "echo"),
            dir.path().join("hark.spool").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.url"), "{err}");
}

/// `turn = "smart"` needs the end-of-turn model: without it the start is
/// refused, naming the file; with silence-only turns it is not needed.
#[test]
fn smart_turns_without_the_turn_model_are_refused_with_its_file() {
    let models = root().join("models");
    let dir = tempfile::tempdir().unwrap();
    // Every fetched model but Smart Turn.
    for sub in ["onnxruntime", "silero", "whisper", "piper"] {
        std::os::unix::fs::symlink(models.join(sub), dir.path().join(sub)).unwrap();
    }
    let voice = |turn: &str| {
        format!(
            "[speech]\nmodels_dir = \"{}\"\n\n{}providers = []\n[agent.desk.script]\ngreeting = \"Hi.\"\nclosing = \"Bye.\"\n[agent.desk.voice]\nturn = \"{turn}\"\n",
            dir.path().display(),
            listener("desk", "chat")
        )
    };
    let (code, text) = check(&voice("silence"));
    assert_eq!(code, 0, "{text}");
    let (code, text) = check(&voice("smart"));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("speech.models_dir") && text.contains("smart-turn-v3.2-cpu.onnx"),
        "{text}"
    );
}
