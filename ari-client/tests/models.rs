//! The resources and events parse from JSON bodies written to Asterisk 22's
//! ARI definitions (`tests/fixtures/`), and keep parsing when Asterisk adds
//! fields.

use ari_client::{Bridge, Channel, Event, Playback, Variable};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("fixtures/", $name))
    };
}

#[test]
fn resources_parse_with_every_field() {
    let c: Channel = serde_json::from_str(fixture!("channel.json")).expect("channel");
    assert_eq!(c.id, "1763800000.7");
    assert_eq!(c.caller.number, "+15551230001");
    assert_eq!(c.caller.name, "Alice");
    let dp = c.dialplan.expect("dialplan");
    assert_eq!(
        (dp.context.as_str(), dp.exten.as_str(), dp.priority),
        ("from-trunk", "5000", 2)
    );
    assert_eq!(dp.app_data.as_deref(), Some("hark,sales"));
    let vars = c.channelvars.expect("channelvars");
    assert_eq!(vars.get("HARK_TENANT").map(String::as_str), Some("acme"));

    let em: Channel =
        serde_json::from_str(fixture!("channel_external_media.json")).expect("external media");
    assert!(em.name.starts_with("AudioSocket/"));
    let b: Bridge = serde_json::from_str(fixture!("bridge.json")).expect("bridge");
    assert_eq!(b.bridge_type, "mixing");
    assert_eq!(b.channels, vec!["1763800000.7", "hark-em-2b1c"]);
    let p: Playback = serde_json::from_str(fixture!("playback.json")).expect("playback");
    assert_eq!(p.state, "playing");
    let v: Variable = serde_json::from_str(fixture!("variable.json")).expect("variable");
    assert_eq!(v.value, "sales");
}

#[test]
fn every_event_fixture_parses_to_its_variant() {
    let cases: &[(&str, &str)] = &[
        (fixture!("stasis_start.json"), "StasisStart"),
        (fixture!("stasis_end.json"), "StasisEnd"),
        (
            fixture!("channel_dtmf_received.json"),
            "ChannelDtmfReceived",
        ),
        (
            fixture!("channel_hangup_request.json"),
            "ChannelHangupRequest",
        ),
        (fixture!("channel_destroyed.json"), "ChannelDestroyed"),
        (fixture!("channel_state_change.json"), "ChannelStateChange"),
        (fixture!("channel_varset.json"), "ChannelVarset"),
        (
            fixture!("channel_entered_bridge.json"),
            "ChannelEnteredBridge",
        ),
        (fixture!("channel_left_bridge.json"), "ChannelLeftBridge"),
        (fixture!("bridge_destroyed.json"), "BridgeDestroyed"),
        (fixture!("playback_started.json"), "PlaybackStarted"),
        (fixture!("playback_finished.json"), "PlaybackFinished"),
        (fixture!("dial.json"), "Dial"),
    ];
    for (text, kind) in cases {
        let e = Event::parse(text).unwrap_or_else(|err| panic!("{kind}: {err}"));
        assert_eq!(e.kind(), *kind);
        assert!(
            !matches!(e, Event::Other { .. }) || *kind == "Dial",
            "{kind} fell to Other"
        );
    }
}

#[test]
fn event_fields_are_read() {
    match Event::parse(fixture!("stasis_start.json")).expect("parses") {
        Event::StasisStart {
            meta,
            args,
            channel,
            replace_channel,
        } => {
            assert_eq!(meta.application, "hark");
            assert_eq!(meta.asterisk_id.as_deref(), Some("52:54:00:12:34:56"));
            assert_eq!(args, vec!["sales"]);
            assert_eq!(channel.id, "1763800000.7");
            assert!(replace_channel.is_none());
        }
        other => panic!("{other:?}"),
    }
    match Event::parse(fixture!("channel_dtmf_received.json")).expect("parses") {
        Event::ChannelDtmfReceived {
            digit, duration_ms, ..
        } => {
            assert_eq!((digit.as_str(), duration_ms), ("5", 120));
        }
        other => panic!("{other:?}"),
    }
    match Event::parse(fixture!("channel_destroyed.json")).expect("parses") {
        Event::ChannelDestroyed {
            cause,
            cause_txt,
            channel,
            ..
        } => {
            assert_eq!((cause, cause_txt.as_str()), (16, "Normal Clearing"));
            assert_eq!(channel.state, "Up");
        }
        other => panic!("{other:?}"),
    }
    match Event::parse(fixture!("playback_finished.json")).expect("parses") {
        Event::PlaybackFinished { playback, .. } => assert_eq!(playback.state, "done"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_fields_everywhere_are_tolerated() {
    // Add a field at the top, in the channel and in its caller id.
    let mut v: serde_json::Value =
        serde_json::from_str(fixture!("stasis_start.json")).expect("json");
    v["added_in_asterisk_23"] = serde_json::json!({"x": [1, 2]});
    v["channel"]["new_field"] = serde_json::json!(true);
    v["channel"]["caller"]["presentation"] = serde_json::json!("allowed");
    let e = Event::parse(&v.to_string()).expect("still parses");
    assert_eq!(e.channel_id(), Some("1763800000.7"));
}

#[test]
fn truncated_fixtures_are_errors() {
    for text in [
        fixture!("stasis_start.json"),
        fixture!("channel_destroyed.json"),
    ] {
        for cut in [1, text.len() / 3, text.len() / 2, text.len() - 3] {
            assert!(Event::parse(&text[..cut]).is_err(), "cut at {cut}");
        }
    }
}
