//! SIP mode through the real daemon, with a small SIP caller written here
//! over real UDP on loopback: the allow list, 486 at capacity, hold and
//! unhold by re-INVITE (hark stops and resumes its RTP), and hark's own
//! BYE when the agent ends the call.

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use sip_bridge::message::{self, Message, Method, Request, Response};
use sip_bridge::rtp::RtpSender;

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

/// One caller: its SIP and RTP sockets and its dialog.
struct Caller {
    sip: SocketAddr,
    sig: UdpSocket,
    rtp: UdpSocket,
    n: u32,
    cseq: u32,
    tag: Option<String>,
    remote_rtp: Option<SocketAddr>,
    sender: RtpSender,
    /// hark's last SDP.
    last_answer: String,
}

impl Caller {
    fn new(sip: SocketAddr, n: u32) -> Caller {
        let sig = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        sig.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        rtp.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        Caller {
            sip,
            sig,
            rtp,
            n,
            cseq: 0,
            tag: None,
            remote_rtp: None,
            sender: RtpSender::new(u64::from(n) + 11),
            last_answer: String::new(),
        }
    }

    fn offer(&self, direction: &str) -> String {
        format!(
            "v=0\r\no=- 1 {} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n",
            self.cseq,
            self.rtp.local_addr().unwrap().port()
        )
    }

    fn send(&mut self, method: &str, user: &str, body: &str) {
        if method != "ACK" {
            self.cseq += 1;
        }
        let me = self.sig.local_addr().unwrap();
        let to = match &self.tag {
            Some(t) => format!("<sip:{user}@{}>;tag={t}", self.sip),
            None => format!("<sip:{user}@{}>", self.sip),
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let text = format!(
            "{method} sip:{user}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKt{}m{method}c{}\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller{}@127.0.0.1>;tag=c{}\r\nTo: {to}\r\nCall-ID: test-{}\r\n\
CSeq: {} {method}\r\nContact: <sip:caller@{me}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            self.sip,
            self.n,
            self.cseq,
            self.n,
            self.n,
            self.n,
            self.cseq,
            body.len()
        );
        self.sig.send_to(text.as_bytes(), self.sip).unwrap();
    }

    /// The next SIP message within `within`, if any.
    fn recv(&self, within: Duration) -> Option<Message> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sig.recv_from(&mut buf) {
                return Some(message::parse(&buf[..n]).unwrap());
            }
        }
        None
    }

    /// The final response to the last request.
    fn final_response(&mut self) -> Response {
        loop {
            match self.recv(Duration::from_secs(10)) {
                Some(Message::Response(r)) if r.status >= 200 && r.common.cseq == self.cseq => {
                    return r;
                }
                Some(_) => {}
                None => panic!("no final response"),
            }
        }
    }

    /// INVITE and ACK: the final status.
    fn invite(&mut self, user: &str, direction: &str) -> u16 {
        let body = self.offer(direction);
        self.send("INVITE", user, &body);
        let r = self.final_response();
        if self.tag.is_none() {
            self.tag = r.common.to_tag.clone();
        }
        if r.status == 200 {
            let sd = sip_bridge::sdp::parse(&r.common.body).unwrap();
            let m = &sd.media[0];
            self.remote_rtp = Some(SocketAddr::new(
                m.connection.or(sd.connection).unwrap(),
                m.port,
            ));
            self.last_answer = String::from_utf8_lossy(&r.common.body).into_owned();
        }
        self.send("ACK", user, "");
        r.status
    }

    /// Sends 20 ms of µ-law tone for `time`, counting the packets hark
    /// sends back.
    fn talk(&mut self, time: Duration) -> usize {
        let to = self.remote_rtp.unwrap();
        let tone: Vec<u8> = (0..160)
            .map(|i| {
                let s = ((i as f32 * 0.3).sin() * 8000.0) as i16;
                media_core::g711::linear_to_ulaw(s)
            })
            .collect();
        let mut out = Vec::new();
        let mut got = 0;
        let mut buf = [0u8; 2048];
        let end = Instant::now() + time;
        let mut next = Instant::now();
        while Instant::now() < end {
            if Instant::now() >= next {
                self.sender.packet(0, false, &tone, 160, &mut out).unwrap();
                self.rtp.send_to(&out, to).unwrap();
                next += Duration::from_millis(20);
            }
            if self.rtp.recv_from(&mut buf).is_ok() {
                got += 1;
            }
        }
        got
    }
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
