//! The REST client and the events connection against the fake Asterisk
//! (real HTTP and a real websocket on loopback).

use std::collections::BTreeMap;
use std::time::Duration;

use ari_client::fake::{CallSpec, FakeAri};
use ari_client::{
    AriConfig, Client, Delivery, DialplanTarget, Encapsulation, Event, Events, ExternalMedia,
    Reconnect,
};

fn fast() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        ping_every: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(3),
    }
}

async fn next_event(events: &mut Events) -> Event {
    loop {
        let d = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a delivery within 5 s")
            .expect("stream open");
        if let Delivery::Event(e) = d {
            return *e;
        }
    }
}

async fn connected(events: &mut Events) -> Option<Duration> {
    loop {
        let d = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a delivery within 5 s")
            .expect("stream open");
        if let Delivery::Connected { down_for, .. } = d {
            return down_for;
        }
    }
}

#[tokio::test]
async fn rest_calls_reach_the_right_resources() {
    let fake = FakeAri::start("hark", "hark", "pw").await.expect("fake");
    let config = AriConfig::new(&fake.url(), "hark", "pw", "hark").expect("config");
    let client = Client::new(config.clone()).expect("client");
    let mut events = Events::connect(config, 64, fast());
    assert_eq!(connected(&mut events).await, None);

    let mut vars = BTreeMap::new();
    vars.insert("HARK_AGENT".to_string(), "sales".to_string());
    let (id, _) = fake.start_call(&CallSpec {
        caller: "+15550001".into(),
        exten: "5000".into(),
        vars,
        args: vec!["x".into()],
    });
    match next_event(&mut events).await {
        Event::StasisStart { channel, args, .. } => {
            assert_eq!(channel.id, id);
            assert_eq!(channel.caller.number, "+15550001");
            assert_eq!(args, vec!["x"]);
        }
        other => panic!("{other:?}"),
    }
    client.answer(&id).await.expect("answer");
    assert!(matches!(
        next_event(&mut events).await,
        Event::ChannelStateChange { .. }
    ));
    assert_eq!(client.channel(&id).await.expect("get").state, "Up");
    assert_eq!(
        client
            .variable(&id, "HARK_AGENT")
            .await
            .expect("var")
            .as_deref(),
        Some("sales")
    );
    assert_eq!(client.variable(&id, "UNSET").await.expect("var"), None);
    client
        .set_variable(&id, "HARK_OUTCOME", "done & dusted")
        .await
        .expect("set");
    assert_eq!(
        fake.channel(&id)
            .expect("exists")
            .vars
            .get("HARK_OUTCOME")
            .map(String::as_str),
        Some("done & dusted")
    );

    let bridge = client.create_bridge("b-1", "hark").await.expect("bridge");
    assert_eq!(bridge.bridge_type, "mixing");
    let em = client
        .external_media(&ExternalMedia {
            app: "hark".into(),
            external_host: "127.0.0.1:9092".into(),
            encapsulation: Encapsulation::AudioSocket,
            format: "slin".into(),
            channel_id: Some("em-1".into()),
            data: Some("2b1c0000-0000-4000-8000-000000000001".into()),
            variables: BTreeMap::new(),
        })
        .await
        .expect("external media");
    assert_eq!(em.id, "em-1");
    let seen = fake.seen();
    let req = seen
        .iter()
        .rev()
        .find(|s| s.path.ends_with("externalMedia"))
        .expect("seen");
    assert_eq!(req.param("encapsulation"), Some("audiosocket"));
    assert_eq!(req.param("transport"), Some("tcp"));
    assert_eq!(
        req.param("data"),
        Some("2b1c0000-0000-4000-8000-000000000001")
    );

    // As in Asterisk 22, the media channel enters the application after
    // the POST is answered; only then can it join a bridge.
    match next_event(&mut events).await {
        Event::StasisStart { channel, args, .. } => {
            assert_eq!(channel.id, "em-1");
            assert_eq!(args, vec!["2b1c0000-0000-4000-8000-000000000001"]);
        }
        other => panic!("{other:?}"),
    }
    client
        .add_channels("b-1", &[&id, "em-1"])
        .await
        .expect("add");
    assert_eq!(
        client.bridge("b-1").await.expect("get").channels,
        vec![id.clone(), "em-1".into()]
    );
    let pb = client
        .play_on_bridge("b-1", "sound:beep")
        .await
        .expect("play");
    assert_eq!(pb.target_uri, "bridge:b-1");
    client.remove_channel("b-1", &id).await.expect("remove");
    client
        .continue_in_dialplan(
            &id,
            &DialplanTarget {
                context: "humans".into(),
                extension: "100".into(),
                priority: Some(1),
                label: None,
            },
        )
        .await
        .expect("continue");
    let ch = fake.channel(&id).expect("still exists");
    assert!(!ch.in_stasis);
    let to = ch.continued_to.expect("continued");
    assert_eq!(
        (to.context.as_str(), to.exten.as_str(), to.priority),
        ("humans", "100", 1)
    );
    client
        .redirect(&id, "PJSIP/agent-7")
        .await
        .expect("redirect");
    client.hangup("em-1", "normal").await.expect("hangup");
    client.destroy_bridge("b-1").await.expect("destroy");
    assert!(fake.bridges().is_empty());
}

#[tokio::test]
async fn rest_errors_are_typed() {
    let fake = FakeAri::start("hark", "hark", "pw").await.expect("fake");
    let client = Client::new(AriConfig::new(&fake.url(), "hark", "pw", "hark").expect("config"))
        .expect("client");
    let e = client.answer("nope").await.expect_err("404");
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("Channel not found"), "{e}");
    fake.fail("POST", "/bridges", 500, 1);
    let e = client.create_bridge("b", "n").await.expect_err("500");
    assert_eq!(e.status(), Some(500));
    assert!(e.is_transient());
    client
        .create_bridge("b", "n")
        .await
        .expect("second try works");

    let wrong = Client::new(AriConfig::new(&fake.url(), "hark", "bad", "hark").expect("config"))
        .expect("client");
    assert_eq!(
        wrong.bridge("b").await.expect_err("401").status(),
        Some(401)
    );

    // Nothing listens: a transport error, not a panic.
    let gone = Client::new(
        AriConfig::new("http://127.0.0.1:9/ari", "u", "p", "hark")
            .expect("config")
            .with_timeout(Duration::from_secs(1)),
    )
    .expect("client");
    let e = gone.answer("x").await.expect_err("unreachable");
    assert!(e.is_transient() && e.status().is_none(), "{e}");
}

#[tokio::test]
async fn the_websocket_reconnects_and_malformed_text_is_skipped() {
    let fake = FakeAri::start("hark", "hark", "pw").await.expect("fake");
    let config = AriConfig::new(&fake.url(), "hark", "pw", "hark").expect("config");
    let mut events = Events::connect(config, 64, fast());
    connected(&mut events).await;

    fake.send_raw("{not json");
    fake.send_raw(r#"{"type":"StasisStart","channel":{"id":7}}"#);
    fake.send_raw(r#"{"type":"SomethingNew","application":"hark"}"#);
    let mut malformed = 0;
    loop {
        match events.recv().await.expect("open") {
            Delivery::Malformed(_) => malformed += 1,
            Delivery::Event(e) => {
                assert_eq!(e.kind(), "SomethingNew");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(malformed, 2);

    // Dropped, refused for a while, then back.
    fake.refuse_websockets(true);
    fake.drop_websockets();
    match events.recv().await.expect("open") {
        Delivery::Disconnected { .. } => {}
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.refuse_websockets(false);
    let down = connected(&mut events)
        .await
        .expect("a reconnect reports its gap");
    assert!(down >= Duration::from_millis(300), "{down:?}");
    assert!(down < Duration::from_secs(2), "{down:?}");
    let (id, _) = fake.start_call(&CallSpec::default());
    assert_eq!(
        next_event(&mut events).await.channel_id(),
        Some(id.as_str())
    );
}

#[tokio::test]
async fn a_wrong_password_never_connects_and_keeps_retrying() {
    let fake = FakeAri::start("hark", "hark", "pw").await.expect("fake");
    let config = AriConfig::new(&fake.url(), "hark", "wrong", "hark").expect("config");
    let mut events = Events::connect(config, 8, fast());
    let got = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
    assert!(got.is_err(), "nothing is delivered: {got:?}");
    assert_eq!(fake.open_websockets(), 0);
}
