//! A small SIP caller over real UDP on loopback, for the SIP tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sip_bridge::message::{self, Message, Response};
use sip_bridge::rtp::RtpSender;

/// One caller: its SIP and RTP sockets and its dialog.
pub struct Caller {
    pub sip: SocketAddr,
    pub sig: UdpSocket,
    pub rtp: UdpSocket,
    pub n: u32,
    pub cseq: u32,
    pub tag: Option<String>,
    pub remote_rtp: Option<SocketAddr>,
    pub sender: RtpSender,
    /// hark's last SDP.
    pub last_answer: String,
}

impl Caller {
    pub fn new(sip: SocketAddr, n: u32) -> Caller {
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

    pub fn offer(&self, direction: &str) -> String {
        format!(
            "v=0\r\no=- 1 {} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n",
            self.cseq,
            self.rtp.local_addr().unwrap().port()
        )
    }

    pub fn send(&mut self, method: &str, user: &str, body: &str) {
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
    pub fn recv(&self, within: Duration) -> Option<Message> {
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
    pub fn final_response(&mut self) -> Response {
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
    pub fn invite(&mut self, user: &str, direction: &str) -> u16 {
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
    pub fn talk(&mut self, time: Duration) -> usize {
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
