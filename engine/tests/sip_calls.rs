//! SIP mode through the real daemon, with a small SIP caller written here
//! over real UDP on loopback: the allow list, 486 at capacity, hold and
//! unhold by re-INVITE (hark stops and resumes its RTP), and hark's own
//! BYE when the agent ends the call.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::sip::Caller;
use common::*;
use sip_bridge::message::{Message, Method, Request};

/// hark with an echo agent (and a `say` agent that hangs up) and `[sip]`.
fn start(sip_extra: &str, server_extra: &str) -> (Daemon, SocketAddr) {
    let config = format!(
        r#"
[server]
{server_extra}

[speech]
models_dir = "{models}"

[[listener]]
name = "echo"
address = "127.0.0.1:0"
agent = "echo"

[[listener]]
name = "bye"
address = "127.0.0.1:0"
agent = "bye"

[agent.echo]
kind = "echo"
delay_ms = 100

[agent.bye]
kind = "say"
text = "Goodbye."

[sip]
listen = "127.0.0.1:0"
rtp_ports = [36000, 36999]
{sip_extra}
"#,
        models = root().join("models").display()
    );
    let mut daemon = Daemon::start(&config);
    let sip = daemon.sip_address();
    (daemon, sip)
}

#[test]
fn peers_outside_the_allow_list_get_no_answer() {
    let (mut daemon, sip) = start("allow = [\"192.0.2.1\"]", "");
    let mut c = Caller::new(sip, 1);
    let body = c.offer("sendrecv");
    c.send("INVITE", "echo", &body);
    assert!(
        c.recv(Duration::from_secs(1)).is_none(),
        "hark answered a peer it does not allow"
    );
    assert!(daemon.wait_for_log("outside sip.allow", Duration::from_secs(2)));
    daemon.pump_log();
    assert!(!daemon.log.iter().any(|l| l.contains("sip call answered")));
}

#[test]
fn a_full_hark_answers_486_and_the_next_call_fits_again() {
    let (_daemon, sip) = start("", "max_calls = 1");
    let mut first = Caller::new(sip, 1);
    assert_eq!(first.invite("echo", "sendrecv"), 200);
    let mut second = Caller::new(sip, 2);
    assert_eq!(second.invite("echo", "sendrecv"), 486);
    first.send("BYE", "echo", "");
    assert_eq!(first.final_response().status, 200);
    // The slot frees when the driver ends, just after the BYE.
    let mut third = Caller::new(sip, 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        third.tag = None;
        let status = third.invite("echo", "sendrecv");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after the BYE");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hold_stops_hark_sending_and_unhold_resumes_it() {
    let (_daemon, sip) = start("", "");
    let mut c = Caller::new(sip, 1);
    assert_eq!(c.invite("echo", "sendrecv"), 200);
    let echoed = c.talk(Duration::from_millis(1500));
    assert!(echoed > 40, "the echo comes back: {echoed} packets");
    // Hold: we send only; hark must answer recvonly and stop sending.
    assert_eq!(c.invite("echo", "sendonly"), 200);
    assert!(c.last_answer.contains("a=recvonly"), "{}", c.last_answer);
    let _ = c.talk(Duration::from_millis(300)); // what was in flight
    let held = c.talk(Duration::from_millis(1000));
    assert!(held <= 2, "hark kept sending on hold: {held} packets");
    // Unhold: the echo resumes.
    assert_eq!(c.invite("echo", "sendrecv"), 200);
    assert!(c.last_answer.contains("a=sendrecv"));
    let resumed = c.talk(Duration::from_millis(1500));
    assert!(resumed > 40, "the echo resumes: {resumed} packets");
    c.send("BYE", "echo", "");
    assert_eq!(c.final_response().status, 200);
}

#[test]
fn hark_sends_bye_when_the_agent_hangs_up() {
    let (_daemon, sip) = start("", "");
    let mut c = Caller::new(sip, 1);
    // The Request-URI's user picks the `say` agent, which hangs up.
    assert_eq!(c.invite("bye", "sendrecv"), 200);
    let mut heard = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    let bye: Request = loop {
        assert!(Instant::now() < deadline, "no BYE from hark");
        heard += c.talk(Duration::from_millis(50));
        if let Some(Message::Request(r)) = c.recv(Duration::from_millis(50)) {
            break r;
        }
    };
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.common.call_id, "test-1");
    assert_eq!(bye.common.to_tag.as_deref(), Some("c1"));
    c.sig
        .send_to(&bye.response(200, "OK", None, &[], None), sip)
        .unwrap();
    // "Goodbye." came first: about half a second of 20 ms packets.
    assert!(heard > 15, "{heard} packets of the announcement");
}
