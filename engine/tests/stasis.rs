//! Stasis mode end to end: the real `hark serve` against a fake Asterisk
//! (`ari_client::fake`: ARI REST + events websocket on loopback) whose
//! external media channels connect to hark over real AudioSocket TCP, as
//! Asterisk's `chan_audiosocket` does.
//!
//! Each scenario checks what Asterisk would be left with: no bridge, no
//! media channel, and the caller either hung up or sent on in the dialplan.
//! As in Asterisk 22, the fake sends an external media channel's
//! StasisStart only after answering the POST that made it, and refuses to
//! bridge it before.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use ari_client::fake::{CallSpec, FakeAri, MediaLeg};
use common::*;
use hark::dial::{DialEnd, DialOptions, DialReport, dial};
use media_core::{Digit, SampleRate};
use tokio::sync::mpsc;
use tokio::time::Instant;

const RATE: SampleRate = SampleRate::HZ_8000;

/// What Asterisk's media side of one external media channel saw.
#[derive(Debug)]
struct Leg {
    uuid: String,
    /// `None`: the channel was hung up by hark before the dial finished.
    report: Option<DialReport>,
}

/// How the fake's media side behaves.
#[derive(Clone)]
struct Caller {
    audio: Vec<i16>,
    tail: Duration,
    dtmf: Vec<Digit>,
    /// Never connect (a broken media path).
    silent: bool,
}

impl Caller {
    fn talking(ms: usize) -> Caller {
        Caller {
            audio: pattern(RATE.samples_in(Duration::from_millis(ms as u64))),
            tail: Duration::from_millis(1500),
            dtmf: Vec::new(),
            silent: false,
        }
    }
}

/// Plays Asterisk's AudioSocket side for every external media channel:
/// connects to `external_host`, sends `data` as the UUID, streams the
/// caller's audio, and closes when done or when hark hangs the channel up.
fn media_side(fake: &FakeAri, caller: Caller) -> mpsc::Receiver<Leg> {
    let (tx, rx) = mpsc::channel(16);
    fake.on_external_media(move |leg: MediaLeg| {
        let tx = tx.clone();
        let caller = caller.clone();
        async move {
            let MediaLeg {
                external_host,
                data,
                mut hangup,
                encapsulation,
                format,
                ..
            } = leg;
            assert_eq!(
                (encapsulation.as_str(), format.as_str()),
                ("audiosocket", "slin")
            );
            let uuid = data.expect("hark passes the UUID as data");
            if caller.silent {
                let _ = hangup.wait_for(|h| *h).await;
                let _ = tx.send(Leg { uuid, report: None }).await;
                return;
            }
            let mut opts = DialOptions::new(
                external_host.parse().expect("host:port"),
                RATE,
                caller.audio.clone(),
            );
            opts.uuid = uuid.parse().expect("a UUID");
            opts.tail = caller.tail;
            opts.dtmf = caller.dtmf.clone();
            let report = tokio::select! {
                r = dial(&opts) => Some(r.expect("the media leg connects")),
                _ = hangup.wait_for(|h| *h) => None,
            };
            let _ = tx.send(Leg { uuid, report }).await;
        }
    });
    rx
}

fn config(fake: &FakeAri, agents: &str, extra_ari: &str) -> String {
    format!(
        r#"
[limits]
send_ahead_frames = 1

[[listener]]
name = "main"
address = "127.0.0.1:0"
agent = "echo"

[agent.echo]
kind = "echo"
delay_ms = 100

[[listener]]
name = "slow"
address = "127.0.0.1:0"
agent = "slow"

[agent.slow]
kind = "echo"
delay_ms = 700
{agents}

[store]
url = "sqlite://calls.db"

[ari]
url = "{url}"
username = "hark"
password = "pw"
app = "hark"
listener = "main"
setup_timeout_ms = 1500
{extra_ari}
"#,
        url = fake.url()
    )
}

fn start(fake: &FakeAri, agents: &str, extra_ari: &str) -> Daemon {
    let mut daemon = Daemon::start(&config(fake, agents, extra_ari));
    assert!(
        daemon.wait_for_log("ARI events connected", Duration::from_secs(60)),
        "hark connects to ARI; log: {:#?}",
        daemon.log
    );
    daemon
}

fn call(vars: &[(&str, &str)]) -> CallSpec {
    CallSpec {
        caller: "+15551230001".into(),
        exten: "5000".into(),
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        args: Vec::new(),
    }
}

/// Waits until Asterisk holds nothing of hark's: no bridge, no channel
/// but `keep`.
async fn all_torn_down(fake: &FakeAri, keep: &[&str], within: Duration) -> bool {
    fake.wait_until(within, |f| {
        f.bridges().is_empty() && f.channel_ids().iter().all(|c| keep.contains(&c.as_str()))
    })
    .await
}

/// Waits until hark's bridges and media channels are gone and the caller
/// `id` went back to the dialplan with `HARK_OUTCOME=failed`.
async fn sent_back_failed(fake: &FakeAri, id: &str, within: Duration) -> bool {
    fake.wait_until(within, |f| {
        f.bridges().is_empty()
            && f.channel_ids().iter().all(|c| !c.starts_with("hark-em-"))
            && f.channel(id).is_some_and(|ch| {
                !ch.in_stasis
                    && ch.continued_to.is_some()
                    && ch.vars.get("HARK_OUTCOME").map(String::as_str) == Some("failed")
            })
    })
    .await
}

/// The stored row of call `uuid`, once `done` holds for it (within 5 s).
async fn stored_call(
    dir: &std::path::Path,
    tenant: &str,
    uuid: &str,
    done: impl Fn(&hark::store::CallRow) -> bool,
) -> hark::store::CallRow {
    let store = hark::store::Store::open(
        &format!("sqlite://{}", dir.join("calls.db").display()),
        false,
        "default",
    )
    .await
    .unwrap();
    let mut last = None;
    for _ in 0..100 {
        if let Ok(d) = store.call(tenant, uuid).await {
            if done(&d.call) {
                return d.call;
            }
            last = Some(d.call);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {uuid} not stored as expected; last seen: {last:#?}");
}

async fn next_leg(legs: &mut mpsc::Receiver<Leg>, within: Duration) -> Leg {
    tokio::time::timeout(within, legs.recv())
        .await
        .expect("the media leg finishes in time")
        .expect("hook alive")
}

#[test]
fn a_full_call_gets_its_agent_from_channel_variables_and_is_torn_down() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let daemon = start(&fake, "", "");
    let dir = daemon.dir().to_path_buf();
    rt.block_on(async {
        let caller = Caller::talking(1000);
        let sent = caller.audio.clone();
        let mut legs = media_side(&fake, caller);
        let (id, _) = fake.start_call(&call(&[("HARK_AGENT", "slow"), ("HARK_TENANT", "acme")]));
        let leg = next_leg(&mut legs, Duration::from_secs(15)).await;
        let report = leg.report.expect("the call ran to its end");
        assert_eq!(report.end, DialEnd::Finished);
        // The channel's agent (700 ms echo), not the listener's (100 ms).
        assert_echo(&report.received, &sent, RATE, Duration::from_millis(700));
        assert!(
            all_torn_down(&fake, &[], Duration::from_secs(5)).await,
            "left: {:?} {:?}",
            fake.channel_ids(),
            fake.bridges()
        );

        let seen = fake.seen();
        let find = |method: &str, end: &str| {
            seen.iter()
                .find(|s| s.method == method && s.path.ends_with(end))
                .unwrap_or_else(|| panic!("no {method} …{end} in {seen:#?}"))
                .clone()
        };
        find("POST", &format!("channels/{id}/answer"));
        let em = find("POST", "channels/externalMedia");
        assert_eq!(em.param("data"), Some(leg.uuid.as_str()));
        assert_eq!(em.param("encapsulation"), Some("audiosocket"));
        let media_id = em.param("channelId").unwrap().to_string();
        let add = find("POST", "addChannel");
        assert_eq!(
            add.param("channel"),
            Some(format!("{id},{media_id}").as_str())
        );
        find("DELETE", &format!("channels/{id}"));
        find("DELETE", &format!("channels/{media_id}"));
        let bridge = find("POST", "/bridges");
        find(
            "DELETE",
            &format!("bridges/{}", bridge.param("bridgeId").unwrap()),
        );

        // The call is stored with the channel's metadata.
        let store = hark::store::Store::open(
            &format!("sqlite://{}", dir.join("calls.db").display()),
            false,
            "default",
        )
        .await
        .unwrap();
        let mut detail = None;
        for _ in 0..100 {
            if let Ok(d) = store.call("acme", &leg.uuid).await
                && d.call.end_ms.is_some()
            {
                detail = Some(d);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let d = detail.expect("the call reaches the store under the channel's tenant");
        assert_eq!(d.call.agent, "slow");
        assert_eq!(d.call.caller_id.as_deref(), Some("+15551230001"));
        assert_eq!(d.call.dnis.as_deref(), Some("5000"));
        let meta = d.call.metadata.expect("metadata");
        assert_eq!(meta["source"], "ari");
        assert_eq!(meta["channel"], id.as_str());
    });
    drop(daemon);
}

#[test]
fn the_caller_hanging_up_first_ends_the_media_leg_and_the_bridge() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let mut daemon = start(&fake, "", "");
    rt.block_on(async {
        let mut legs = media_side(&fake, Caller::talking(20_000));
        let (id, _) = fake.start_call(&call(&[]));
        assert!(
            fake.wait_until(Duration::from_secs(5), |f| f
                .bridges()
                .first()
                .is_some_and(|b| b.channels.len() == 2))
                .await,
            "bridged"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        fake.hangup_from_caller(&id);
        let leg = next_leg(&mut legs, Duration::from_secs(5)).await;
        assert!(
            leg.report.is_none(),
            "hark hung the media channel up before the audio ended"
        );
        assert!(all_torn_down(&fake, &[], Duration::from_secs(5)).await);
    });
    assert!(daemon.wait_for_log("caller hung up", Duration::from_secs(5)));
    assert!(
        daemon.wait_for_log("call ended", Duration::from_secs(5)),
        "{:#?}",
        daemon.log
    );
}

#[test]
fn a_handoff_continues_the_caller_in_the_dialplan_with_the_target() {
    let ch = handoff("");
    assert!(!ch.in_stasis, "left the application");
    let to = ch.continued_to.expect("continued");
    assert_eq!(
        (to.context.as_str(), to.exten.as_str(), to.priority),
        ("hark-handoff", "s", 1)
    );
    assert!(ch.redirected_to.is_none());
}

#[test]
fn a_handoff_can_redirect_the_caller_to_an_endpoint_instead() {
    let ch = handoff("handoff_redirect = \"PJSIP/{target}\"");
    assert_eq!(ch.redirected_to.as_deref(), Some("PJSIP/sales-queue"));
    assert!(ch.continued_to.is_none());
}

/// A voice agent hands off on DTMF 0: the media leg ends with 0x00 and
/// the bridge and media channel go. Returns the caller's channel after.
fn handoff(extra_ari: &str) -> ari_client::fake::FakeChannel {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let agents = format!(
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
greeting = "Hello."
questions = [ {{ slot = "problem", ask = "What can I do for you?" }} ]
closing = "Goodbye."

[agent.desk.voice]
handoff_target = "sales-queue"
handoff_phrase = "One moment."
"#,
        models = root().join("models").display()
    );
    let _daemon = start(&fake, &agents, extra_ari);
    rt.block_on(async {
        let mut caller = Caller::talking(0);
        caller.audio = vec![0; RATE.samples_in(Duration::from_millis(1500))];
        caller.dtmf = vec![Digit::from_ascii(b'0').unwrap()];
        caller.tail = Duration::from_secs(8);
        let mut legs = media_side(&fake, caller);
        let (id, _) = fake.start_call(&call(&[("HARK_AGENT", "desk")]));
        let leg = next_leg(&mut legs, Duration::from_secs(30)).await;
        let report = leg.report.expect("the media leg ran");
        assert_eq!(
            report.end,
            DialEnd::ServerHangup,
            "hark ends the media leg with 0x00"
        );
        assert!(
            all_torn_down(&fake, &[&id], Duration::from_secs(5)).await,
            "{:?}",
            fake.bridges()
        );
        let ch = fake.channel(&id).expect("the caller is still up");
        assert_eq!(
            ch.vars.get("HARK_HANDOFF_TARGET").map(String::as_str),
            Some("sales-queue")
        );
        assert_eq!(
            ch.vars.get("HARK_OUTCOME").map(String::as_str),
            Some("transferred")
        );
        ch
    })
}

#[test]
fn calls_survive_a_websocket_drop_and_a_hangup_missed_meanwhile_is_cleaned_up() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let mut daemon = start(&fake, "", "");
    rt.block_on(async {
        let long = Caller::talking(4000);
        let sent = long.audio.clone();
        let mut legs = media_side(&fake, long);
        let (a, _) = fake.start_call(&call(&[]));
        let (b, _) = fake.start_call(&call(&[]));
        assert!(
            fake.wait_until(Duration::from_secs(5), |f| f.bridges().len() == 2
                && f.bridges().iter().all(|b| b.channels.len() == 2))
                .await
        );
        // The websocket goes down and stays down for 600 ms; call A's
        // caller hangs up meanwhile, so its events are lost.
        fake.refuse_websockets(true);
        fake.drop_websockets();
        tokio::time::sleep(Duration::from_millis(200)).await;
        fake.hangup_from_caller(&a);
        tokio::time::sleep(Duration::from_millis(400)).await;
        fake.refuse_websockets(false);

        // A is found gone after the reconnect and torn down; B goes on and
        // its echo is whole.
        let first = next_leg(&mut legs, Duration::from_secs(10)).await;
        assert!(first.report.is_none(), "A's media leg was hung up by hark");
        let second = next_leg(&mut legs, Duration::from_secs(10)).await;
        let report = second.report.expect("B ran to its end");
        assert_eq!(report.end, DialEnd::Finished);
        assert_echo(&report.received, &sent, RATE, Duration::from_millis(100));
        assert!(all_torn_down(&fake, &[], Duration::from_secs(5)).await);
        assert!(fake.channel(&b).is_none());
        assert!(fake.websocket_connects().len() >= 2, "reconnected");
    });
    assert!(daemon.wait_for_log(
        "the caller hung up while ARI events were down",
        Duration::from_secs(2)
    ));
}

#[test]
fn rest_errors_and_a_dead_media_path_leave_nothing_behind() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let mut daemon = start(&fake, "", "");
    let dir = daemon.dir().to_path_buf();
    rt.block_on(async {
        // Each failed set-up sends its caller back to the dialplan.
        // 500 on answer: the call cannot start.
        let _legs = media_side(&fake, Caller::talking(500));
        fake.fail("POST", "/answer", 500, 1);
        let (a, _) = fake.start_call(&call(&[]));
        assert!(
            sent_back_failed(&fake, &a, Duration::from_secs(5)).await,
            "a: {:?}",
            fake.channel(&a)
        );

        // 500 on externalMedia after the bridge exists: bridge destroyed.
        fake.fail("POST", "/externalMedia", 500, 1);
        let (b, _) = fake.start_call(&call(&[]));
        assert!(
            sent_back_failed(&fake, &b, Duration::from_secs(5)).await,
            "{:?}",
            fake.bridges()
        );

        // The channel is gone (404) when hark adds it to the bridge.
        fake.fail("POST", "/addChannel", 404, 1);
        let (c, _) = fake.start_call(&call(&[]));
        assert!(
            sent_back_failed(&fake, &c, Duration::from_secs(5)).await,
            "{:?}",
            fake.bridges()
        );

        // Cleanup itself meets a 500 once: retried.
        fake.fail("DELETE", "/bridges/", 500, 1);
        fake.fail("POST", "/externalMedia", 500, 1);
        let (d, _) = fake.start_call(&call(&[]));
        assert!(
            sent_back_failed(&fake, &d, Duration::from_secs(5)).await,
            "{:?}",
            fake.bridges()
        );
    });
    rt.block_on(async {
        // The media leg never connects: torn down after setup_timeout_ms.
        let mut legs = media_side(
            &fake,
            Caller {
                silent: true,
                ..Caller::talking(0)
            },
        );
        let started = Instant::now();
        let (id, _) = fake.start_call(&call(&[]));
        let leg = next_leg(&mut legs, Duration::from_secs(5)).await;
        assert!(leg.report.is_none());
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert!(sent_back_failed(&fake, &id, Duration::from_secs(5)).await);
        // No driver ever had this call: the session records it alone.
        let row = stored_call(&dir, "default", &leg.uuid, |c| c.end_ms.is_some()).await;
        assert_eq!(row.outcome.as_deref(), Some("failed"));
        assert_eq!(
            row.end_reason.as_deref(),
            Some("the media leg did not connect within 1500 ms")
        );

        // And hark still takes calls.
        let mut legs = media_side(&fake, Caller::talking(500));
        let (id, _) = fake.start_call(&call(&[]));
        let leg = next_leg(&mut legs, Duration::from_secs(10)).await;
        assert_eq!(leg.report.expect("ran").end, DialEnd::Finished);
        assert!(
            fake.wait_until(Duration::from_secs(5), |f| f.bridges().is_empty()
                && f.channel(&id).is_none()
                && f.channel_ids().iter().all(|c| !c.starts_with("hark-em-")))
                .await
        );
    });
    assert!(daemon.wait_for_log("did not connect within 1500 ms", Duration::from_secs(1)));
}

#[test]
fn every_setup_bridges_though_the_media_channel_enters_the_application_late() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    // A busy Asterisk: each external media channel's StasisStart comes
    // 80 ms after the answer to its POST, and bridging it before then is
    // refused with 422 (6 set-ups in 17 failed so on a real Asterisk 22).
    fake.delay_media_stasis_start(Some(Duration::from_millis(80)));
    let _daemon = start(&fake, "", "");
    rt.block_on(async {
        let caller = Caller::talking(2000);
        let sent = caller.audio.clone();
        let mut legs = media_side(&fake, caller);
        const CALLS: usize = 10;
        for _ in 0..CALLS {
            fake.start_call(&call(&[]));
        }
        assert!(
            fake.wait_until(Duration::from_secs(10), |f| f.bridges().len() == CALLS
                && f.bridges().iter().all(|b| b.channels.len() == 2))
                .await,
            "every call bridged: {:?}",
            fake.bridges()
        );
        for _ in 0..CALLS {
            let leg = next_leg(&mut legs, Duration::from_secs(20)).await;
            let report = leg.report.expect("the call ran to its end");
            assert_eq!(report.end, DialEnd::Finished);
            assert_echo(&report.received, &sent, RATE, Duration::from_millis(100));
        }
        // Every caller hung up at the end, none sent back as failed.
        assert!(
            all_torn_down(&fake, &[], Duration::from_secs(5)).await,
            "left: {:?} {:?}",
            fake.channel_ids(),
            fake.bridges()
        );
    });
}

#[test]
fn a_call_hung_up_by_shutdown_goes_back_to_the_dialplan() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let mut daemon = Daemon::start(
        &config(&fake, "", "").replace("[limits]", "[server]\ndrain_timeout_ms = 300\n\n[limits]"),
    );
    assert!(daemon.wait_for_log("ARI events connected", Duration::from_secs(60)));
    let dir = daemon.dir().to_path_buf();
    rt.block_on(async {
        let mut legs = media_side(&fake, Caller::talking(20_000));
        let (id, _) = fake.start_call(&call(&[]));
        assert!(
            fake.wait_until(Duration::from_secs(10), |f| f.bridges().len() == 1)
                .await,
            "the call is bridged"
        );
        // SIGTERM: the drain timeout passes and hark hangs the call up, as
        // it sends 0x00 to an AudioSocket caller, who goes on in the
        // dialplan: so does this one.
        let pid = daemon.pid();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let leg = next_leg(&mut legs, Duration::from_secs(10)).await;
        assert!(
            fake.wait_until(Duration::from_secs(10), |f| f.channel(&id).is_some_and(
                |ch| {
                    ch.continued_to.is_some()
                        && ch.vars.get("HARK_OUTCOME").map(String::as_str) == Some("shutdown")
                }
            ))
            .await,
            "{:?}",
            fake.channel(&id)
        );
        // And the record says the shutdown cut it.
        let row = stored_call(&dir, "default", &leg.uuid, |c| c.end_ms.is_some()).await;
        assert_eq!(row.outcome.as_deref(), Some("completed"), "{row:?}");
        assert_eq!(row.end_reason.as_deref(), Some("shutdown"), "{row:?}");
    });
    drop(daemon);
}

#[test]
fn a_setup_that_fails_for_good_sends_the_caller_back_and_is_stored_failed() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    // The media channel never enters the application: every addChannel
    // for it is refused with 422.
    fake.delay_media_stasis_start(None);
    let daemon = start(&fake, "", "");
    let dir = daemon.dir().to_path_buf();
    rt.block_on(async {
        // Its media leg connects and the call runs meanwhile, as with
        // Asterisk, so a driver records the call too.
        let mut legs = media_side(&fake, Caller::talking(20_000));
        let started = Instant::now();
        let (id, _) = fake.start_call(&call(&[("HARK_TENANT", "acme")]));
        let leg = next_leg(&mut legs, Duration::from_secs(10)).await;
        assert!(leg.report.is_none(), "hark hung the media channel up");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "hark waited for the StasisStart first: {:?}",
            started.elapsed()
        );
        assert!(
            sent_back_failed(&fake, &id, Duration::from_secs(5)).await,
            "{:?} {:?}",
            fake.channel(&id),
            fake.bridges()
        );
        let seen = fake.seen();
        let adds = seen
            .iter()
            .filter(|s| s.method == "POST" && s.path.ends_with("/addChannel"))
            .count();
        assert!(adds > 1, "a 422 is tried again: {adds} attempt(s)");
        assert!(
            !seen
                .iter()
                .any(|s| s.method == "DELETE" && s.path.ends_with(&format!("channels/{id}"))),
            "the caller is not hung up"
        );

        let row = stored_call(&dir, "acme", &leg.uuid, |c| {
            c.outcome.as_deref() == Some("failed")
        })
        .await;
        let reason = row.end_reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with("add to bridge:")
                && reason.contains("422 Channel not in Stasis application"),
            "{reason}"
        );
        assert!(row.duration_ms.unwrap_or(0) >= 2000, "{row:?}");
        // The media leg's own end, written first, does not overwrite it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = stored_call(&dir, "acme", &leg.uuid, |_| true).await;
        assert_eq!(again.outcome.as_deref(), Some("failed"));
        assert_eq!(again.end_reason, row.end_reason);
    });
    drop(daemon);
}

#[test]
fn malformed_and_unknown_events_are_skipped_and_calls_still_work() {
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let _daemon = start(&fake, "", "");
    rt.block_on(async {
        for text in [
            "",
            "{",
            "null",
            "[1,2]",
            r#"{"type":"StasisStart"}"#,
            r#"{"type":"StasisStart","channel":{"id":null}}"#,
            r#"{"type":"StasisEnd","channel":"x"}"#,
            r#"{"type":"ChannelDestroyed","channel":{"id":"no-such"},"cause":"sixteen"}"#,
            r#"{"type":"BrandNewEvent","application":"hark","whatever":[{}]}"#,
            &"x".repeat(100_000),
        ] {
            fake.send_raw(text);
        }
        let caller = Caller::talking(500);
        let sent = caller.audio.clone();
        let mut legs = media_side(&fake, caller);
        fake.start_call(&call(&[]));
        let leg = next_leg(&mut legs, Duration::from_secs(10)).await;
        let report = leg.report.expect("ran");
        assert_echo(&report.received, &sent, RATE, Duration::from_millis(100));
        assert!(all_torn_down(&fake, &[], Duration::from_secs(5)).await);
    });
}

#[test]
fn rtp_media_carries_ulaw_both_ways_through_the_same_agent() {
    use media_core::g711;
    let rt = runtime();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let _daemon = start(&fake, "", "media = \"rtp\"\nrtp_ports = [41000, 41099]");
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<(Vec<u8>, Vec<u8>)>(1);
        // Asterisk's UnicastRTP side: 20 ms of µ-law per packet, PT 0, from
        // its own port; whatever comes back is collected.
        fake.on_external_media(move |leg: MediaLeg| {
            let tx = tx.clone();
            async move {
                assert_eq!(
                    (leg.encapsulation.as_str(), leg.format.as_str()),
                    ("rtp", "ulaw")
                );
                let to: std::net::SocketAddr = leg.external_host.parse().unwrap();
                assert!((41000..=41099).contains(&to.port()), "{to}");
                let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let samples = pattern(RATE.samples_in(Duration::from_millis(1000)));
                let sent: Vec<u8> = samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect();
                let mut got = Vec::new();
                let mut buf = [0u8; 2048];
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let end = Instant::now() + Duration::from_millis(2500);
                let mut chunks = sent.chunks(160).enumerate();
                while Instant::now() < end {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Some((i, chunk)) = chunks.next() {
                                let mut p = vec![0x80, 0x00];
                                p.extend_from_slice(&(i as u16).to_be_bytes());
                                p.extend_from_slice(&((i * 160) as u32).to_be_bytes());
                                p.extend_from_slice(&[0, 0, 0, 7]);
                                p.extend_from_slice(chunk);
                                sock.send_to(&p, to).await.unwrap();
                            }
                        }
                        r = sock.recv_from(&mut buf) => {
                            let (n, from) = r.unwrap();
                            assert_eq!(from, to, "symmetric: replies come from where we send");
                            assert_eq!(buf[0] & 0xc0, 0x80);
                            assert_eq!(buf[1] & 0x7f, 0, "PCMU");
                            got.extend_from_slice(&buf[12..n]);
                        }
                    }
                }
                let _ = tx.send((sent, got)).await;
            }
        });
        fake.start_call(&call(&[]));
        let (sent, got) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        // 100 ms of silence (µ-law 0xff), then the caller's bytes exactly:
        // µ-law -> linear -> µ-law is lossless.
        let silence = RATE.samples_in(Duration::from_millis(100));
        assert!(got.len() >= silence + sent.len(), "got {} bytes", got.len());
        assert!(got[..silence].iter().all(|&b| b == g711::linear_to_ulaw(0)));
        assert_eq!(&got[silence..silence + sent.len()], &sent[..]);
        // The media side stops sending and hark is hung up by the caller.
        let id = fake
            .channel_ids()
            .into_iter()
            .find(|c| !c.starts_with("hark-em-"))
            .unwrap();
        fake.hangup_from_caller(&id);
        assert!(all_torn_down(&fake, &[], Duration::from_secs(5)).await);
    });
}
