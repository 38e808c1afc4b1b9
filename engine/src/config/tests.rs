//! The configuration's tests: parsing, defaults, and every bad value named by its key.

use super::*;

const GOOD: &str = r#"
[server]
max_calls = 50
drain_timeout_ms = 2000

[limits]
max_payload_bytes = 4096
uuid_timeout_ms = 3000
max_call_secs = 3600
send_ahead_frames = 2

[[listener]]
name = "main"
address = "127.0.0.1:9092"
agent = "echo"

[[listener]]
name = "wide"
address = "[::1]:9093"
agent = "slow"

[agent.echo]
kind = "echo"
delay_ms = 200

[agent.slow]
kind = "echo"
delay_ms = 1000
"#;

#[test]
fn a_good_file_parses_into_typed_values() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.max_calls, 50);
    assert_eq!(c.drain_timeout, Duration::from_secs(2));
    assert_eq!(c.max_payload, 4096);
    assert_eq!(c.call.uuid_timeout, Duration::from_secs(3));
    assert_eq!(c.call.max_duration, Some(Duration::from_secs(3600)));
    assert_eq!(c.call.send_ahead, 2);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[1].address, "[::1]:9093".parse().unwrap());
    assert_eq!(
        c.listeners[1].agent,
        AgentSpec::Echo {
            name: "slow".into(),
            delay: Duration::from_secs(1)
        }
    );
}

#[test]
fn defaults_apply() {
    let c = Config::parse(
        "[[listener]]\nname='a'\naddress='127.0.0.1:1'\nagent='e'\n[agent.e]\nkind='echo'\n",
    )
    .unwrap();
    assert_eq!(c.max_calls, 200);
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.max_payload, audiosocket::DEFAULT_MAX_PAYLOAD);
    assert_eq!(c.call.send_ahead, 1);
    assert_eq!(c.call.max_duration, None);
}

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn bad_values_name_the_key_and_the_reason() {
    let base = GOOD.to_string();
    let cases = [
        ("max_calls = 50", "max_calls = 0", "server.max_calls"),
        (
            "address = \"127.0.0.1:9092\"",
            "address = \"localhost\"",
            "listener[0].address",
        ),
        (
            "agent = \"echo\"",
            "agent = \"nobody\"",
            "listener[0].agent",
        ),
        (
            "send_ahead_frames = 2",
            "send_ahead_frames = 3",
            "limits.send_ahead_frames",
        ),
        (
            "max_payload_bytes = 4096",
            "max_payload_bytes = 100",
            "limits.max_payload_bytes",
        ),
        ("delay_ms = 1000", "delay_ms = 9000", "agent.slow.delay_ms"),
        (
            "max_call_secs = 3600",
            "max_call_secs = 0",
            "limits.max_call_secs",
        ),
        ("name = \"wide\"", "name = \"main\"", "listener[1].name"),
        (
            "address = \"[::1]:9093\"",
            "address = \"127.0.0.1:9092\"",
            "listener[1].address",
        ),
    ];
    for (from, to, key) in cases {
        let text = base.replacen(from, to, 1);
        let e = err(&text);
        assert!(e.contains(key), "{to}: {e}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_reported_by_name() {
    let e = err(&GOOD.replace("max_calls = 50", "max_cals = 50"));
    assert!(e.contains("max_cals"), "{e}");
    let e = err(&GOOD.replace("max_calls = 50", "max_calls = \"many\""));
    assert!(e.contains("max_calls"), "{e}");
    let e = err(&GOOD.replace("kind = \"echo\"\ndelay_ms = 200", "kind = \"parrot\""));
    assert!(e.contains("parrot"), "{e}");
    let e = err(&GOOD.replace("delay_ms = 200", "delay_ms = 200\ncolour = 1"));
    assert!(e.contains("colour"), "{e}");
    assert!(err("this is not toml").contains("line 1"));
}

#[test]
fn speech_settings_are_validated_by_name() {
    let base = "[[listener]]\nname='a'\naddress='127.0.0.1:1'\nagent='s'\n[agent.s]\nkind='say'\ntext='Hello.'\n";
    let c = Config::parse(base).unwrap();
    assert!(c.listeners[0].agent.speaks());
    assert!(matches!(
        c.speech.tts,
        TtsConfig::Piper {
            sessions: 1,
            threads: 2,
            ..
        }
    ));
    assert_eq!(c.speech.tts_max_wait, Duration::from_millis(300));
    let cases = [
        (base.replace("text='Hello.'", "text='  '"), "agent.s.text"),
        (
            format!("{base}length_scale = 9.0\n"),
            "agent.s.length_scale",
        ),
        (format!("{base}[tts]\nengine='espeak'\n"), "tts.engine"),
        (format!("{base}[tts]\nengine='http'\n"), "tts.url"),
        (format!("{base}[tts]\nmax_wait_ms=1\n"), "tts.max_wait_ms"),
        (
            format!("{base}[tts.prompts]\nhold=''\n"),
            "tts.prompts.hold",
        ),
        (format!("{base}[stt]\nmodel='huge'\n"), "stt.model"),
        (
            format!("{base}[stt]\nmodel='tiny.en'\nlanguage='de'\n"),
            "stt.language",
        ),
        (
            format!("{base}[speech]\nvad_sessions=0\n"),
            "speech.vad_sessions",
        ),
    ];
    for (text, key) in cases {
        let e = err(&text);
        assert!(e.contains(key), "{key}: {e}");
    }
    let c = Config::parse(&format!(
        "{base}[tts.prompts]\ngreeting='Hi there.'\n[tts]\nengine='http'\nurl='http://127.0.0.1:8880/v1'\n"
    ));
    let c = c.unwrap();
    assert!(
        matches!(&c.speech.tts, TtsConfig::Http(h) if h.model == "tts-1" && h.voice == "alloy")
    );
    assert_eq!(c.speech.prompts["greeting"], "Hi there.");
}

#[test]
fn api_keys_come_from_a_file_and_never_show_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("claude.key"), "sk-ant-very-secret\n").unwrap();
    let text = "[provider.claude]\nkind='anthropic'\nmodel='claude-3-5-haiku-20241022'\napi_key_file='claude.key'\n";
    let c = Config::parse_in(text, dir.path()).unwrap();
    let p = &c.providers["claude"];
    assert_eq!(p.api_key.as_ref().unwrap().expose(), "sk-ant-very-secret");
    assert!(!format!("{c:?}").contains("very-secret"));
    let e = err("[provider.x]\nkind='gemini'\nmodel='m'\n");
    assert!(e.contains("provider.x.api_key_env"), "{e}");
    let e = err("[provider.x]\nkind='openai'\nmodel='m'\napi_key_env='HARK_SURELY_UNSET_VAR'\n");
    assert!(e.contains("HARK_SURELY_UNSET_VAR"), "{e}");
    let e = err("[provider.x]\nkind='mistral'\nmodel='m'\n");
    assert!(e.contains("provider.x.kind"), "{e}");
}

#[test]
fn serving_needs_a_listener() {
    let c = Config::parse("").unwrap();
    let e = c.check_serveable().unwrap_err().to_string();
    assert!(e.contains("`listener`"), "{e}");
}

#[test]
fn the_builtin_echo_config_is_valid() {
    let c = Config::echo("127.0.0.1:0".parse().unwrap(), Duration::from_millis(100));
    assert_eq!(c.listeners[0].agent.name(), "echo");
}

const VOICE: &str = "[[listener]]\nname='v'\naddress='127.0.0.1:1'\nagent='desk'\n[agent.desk]\nkind='chat'\n[agent.desk.script]\ngreeting='Hi.'\nclosing='Bye.'\n";

#[test]
fn a_chat_agent_on_a_listener_is_a_voice_agent() {
    let c = Config::parse(&format!(
        "{VOICE}[agent.desk.voice]\nhandoff_target='sales'\ntransfer_digit='*'\nbarge_in_min_ms=120\nhangover_ms=500\nbackchannels=['Uh-Huh ']\n"
    ))
    .unwrap();
    let AgentSpec::Voice(v) = &c.listeners[0].agent else {
        panic!("not a voice agent: {:?}", c.listeners[0].agent);
    };
    let conv = &v.conversation;
    assert_eq!(
        conv.handoff.as_ref().map(|h| h.target.as_str()),
        Some("sales")
    );
    assert_eq!(conv.transfer_digit.map(|d| d.as_char()), Some('*'));
    assert_eq!(conv.barge_in_min, Duration::from_millis(120));
    assert_eq!(conv.duck_db, Some(12.0), "ducking is on by default");
    assert_eq!(conv.backchannels, vec!["uh-huh".to_string()]);
    assert_eq!(v.endpoint.hangover, Duration::from_millis(500));
    // The voice defaults: a shorter hangover, STT on a preview.
    assert_eq!(v.endpoint.preview, Some(Duration::from_millis(200)));
    assert!(c.listeners[0].agent.listens() && c.listeners[0].agent.speaks());
    // Still reachable as a text agent.
    assert!(c.chats.contains_key("desk"));
    // Without a [voice] table everything has its default.
    let c = Config::parse(VOICE).unwrap();
    let AgentSpec::Voice(v) = &c.listeners[0].agent else {
        panic!("not a voice agent");
    };
    assert_eq!(v.endpoint.hangover, Duration::from_millis(400));
    assert!(v.conversation.handoff.is_none());
}

#[test]
fn smart_turns_judge_the_short_pause_and_wait_longer_for_a_misjudged_one() {
    let c = Config::parse(&format!("{VOICE}[agent.desk.voice]\nturn='smart'\n")).unwrap();
    let agent = &c.listeners[0].agent;
    let AgentSpec::Voice(v) = agent else {
        panic!("not a voice agent");
    };
    assert_eq!(
        agent.smart_turn(),
        Some(media_core::SmartTurn { threshold: 0.5 })
    );
    assert_eq!(v.endpoint.preview, Some(Duration::from_millis(200)));
    assert_eq!(v.endpoint.hangover, Duration::from_millis(2_000));
    let c = Config::parse(&format!(
        "{VOICE}[agent.desk.voice]\nturn='smart'\nturn_threshold=0.7\npreview_ms=150\nhangover_ms=1500\n"
    ))
    .unwrap();
    let agent = &c.listeners[0].agent;
    let AgentSpec::Voice(v) = agent else {
        panic!("not a voice agent");
    };
    assert_eq!(agent.smart_turn().map(|t| t.threshold), Some(0.7));
    assert_eq!(v.endpoint.preview, Some(Duration::from_millis(150)));
    assert_eq!(v.endpoint.hangover, Duration::from_millis(1_500));
    // Silence only, as before, unless asked.
    let c = Config::parse(VOICE).unwrap();
    assert_eq!(c.listeners[0].agent.smart_turn(), None);
    let c = Config::parse(&format!("{VOICE}[agent.desk.voice]\nturn='silence'\n")).unwrap();
    assert_eq!(c.listeners[0].agent.smart_turn(), None);
}

#[test]
fn a_voice_agent_may_have_its_own_whisper_and_voice() {
    let c = Config::parse(&format!(
        "{VOICE}[agent.desk.voice]\nstt_model='base'\nlanguage='de'\ntts_voice='voices/other.onnx'\n"
    ))
    .unwrap();
    let AgentSpec::Voice(v) = &c.listeners[0].agent else {
        panic!("not a voice agent");
    };
    let w = v.stt.as_ref().expect("its own Whisper");
    assert_eq!(w.name, "base");
    assert!(w.model.ends_with("whisper/ggml-base.bin"));
    assert_eq!(w.language.as_deref(), Some("de"));
    assert_eq!(
        v.tts_voice.as_deref(),
        Some(Path::new("./voices/other.onnx"))
    );
    // The default voice named again is no voice of its own.
    let c = Config::parse(&format!(
        "{VOICE}[agent.desk.voice]\ntts_voice='models/piper/en_US-joe-medium.onnx'\n"
    ))
    .unwrap();
    let AgentSpec::Voice(v) = &c.listeners[0].agent else {
        panic!("not a voice agent");
    };
    assert_eq!(v.tts_voice, None);
    assert_eq!(v.stt, None);
}

#[test]
fn bad_voice_settings_name_the_key() {
    let cases = [
        ("transfer_digit='05'", "agent.desk.voice.transfer_digit"),
        ("transfer_digit='x'", "agent.desk.voice.transfer_digit"),
        (
            "handoff_phrase='Hold on.'",
            "agent.desk.voice.handoff_phrase",
        ),
        ("handoff_target=' '", "agent.desk.voice.handoff_target"),
        ("preview_ms=400", "agent.desk.voice.preview_ms"),
        (
            "silence_timeout_ms=10",
            "agent.desk.voice.silence_timeout_ms",
        ),
        ("reprompt=''", "agent.desk.voice.reprompt"),
        ("max_call_secs=1", "agent.desk.voice.max_call_secs"),
        ("length_scale=9.0", "agent.desk.voice.length_scale"),
        ("vad='webrtc'", "agent.desk.voice.vad"),
        ("turn='model'", "agent.desk.voice.turn"),
        ("barge_in_duck_db=90", "agent.desk.voice.barge_in_duck_db"),
        ("barge_in_duck_db=-3", "agent.desk.voice.barge_in_duck_db"),
        ("turn_threshold=0.7", "agent.desk.voice.turn_threshold"),
        (
            "turn='smart'\nturn_threshold=1.5",
            "agent.desk.voice.turn_threshold",
        ),
        ("turn='smart'\npreview_ms=0", "agent.desk.voice.preview_ms"),
        (
            "turn='smart'\nhangover_ms=300\npreview_ms=400",
            "agent.desk.voice.preview_ms",
        ),
        ("stt_model='large'", "agent.desk.voice.stt_model"),
        ("language='de'", "agent.desk.voice.language"),
        ("language='german'", "agent.desk.voice.language"),
        // A wrong type inside an agent table: serde's tagged enum loses
        // the key's position, but the message names the type wanted.
        ("barge_in='yes'", "expected a boolean"),
        ("bargein=true", "bargein"),
    ];
    for (line, key) in cases {
        let e = err(&format!("{VOICE}[agent.desk.voice]\n{line}\n"));
        assert!(e.contains(key), "{line}: {e}");
    }
}
