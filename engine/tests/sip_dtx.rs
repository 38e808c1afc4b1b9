//! A SIP caller that sends nothing in its pauses (DTX; Asterisk bridging a
//! Local channel does the same) is heard as over AudioSocket: each new
//! talkspurt (marker bit, timestamp jump) plays from its first packet, so
//! the turn starts when it does over AudioSocket and the words are the same.
//! Real recorded speech (asterisk-core-sounds-en-wav), real Whisper.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::sip::Caller;
use common::*;
use tokio::io::AsyncWriteExt;

fn prompt(name: &str) -> Vec<i16> {
    let path = Path::new("/usr/share/asterisk/sounds/en").join(format!("{name}.wav"));
    hark::wav::read(&path)
        .unwrap_or_else(|e| panic!("{e} (scripts/test installs asterisk-core-sounds-en-wav)"))
        .samples
}

fn config() -> String {
    format!(
        r#"
[speech]
models_dir = "{models}"

[stt]
model = "tiny.en"
# One core stays free for the media: a turn transcribed on both would
# delay the packets of the next one, which measures the machine, not hark.
threads = 1

[[listener]]
name = "ears"
address = "127.0.0.1:0"
agent = "listen"

[agent.listen]
kind = "transcribe"

[sip]
listen = "127.0.0.1:0"
rtp_ports = [37000, 37999]
"#,
        models = root().join("models").display()
    )
}

/// The talkspurts: (offset from the call's start, samples at 8 kHz).
fn talkspurts() -> Vec<(Duration, Vec<i16>)> {
    vec![
        (Duration::from_millis(500), prompt("conf-waitforleader")),
        (
            Duration::from_millis(6_500),
            prompt("check-number-dial-again"),
        ),
    ]
}

/// (start_ms, text) of each "caller turn" line logged since `from`.
fn turns(daemon: &mut Daemon, from: usize, n: usize) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        daemon.pump_log();
        let lines: Vec<&String> = daemon.log[from..]
            .iter()
            .filter(|l| l.contains("caller turn") && l.contains("start_ms="))
            .collect();
        if lines.len() >= n {
            return lines
                .iter()
                .map(|l| {
                    let start = l
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("start_ms="))
                        .unwrap()
                        .parse()
                        .unwrap();
                    let text = l
                        .split(" text=")
                        .nth(1)
                        .unwrap_or("")
                        .split(" confidence=")
                        .next()
                        .unwrap_or("")
                        .to_string();
                    (start, text)
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "only {} turns: {:#?}",
            lines.len(),
            daemon.log
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_pausing_sip_sender_is_heard_as_over_audiosocket() {
    let mut daemon = Daemon::start(&config());
    let sip = daemon.sip_address();
    let audiosocket = daemon.address;
    let spurts = talkspurts();
    let end = Duration::from_millis(12_000);

    // Over AudioSocket: frames during speech only, as a Local channel sends.
    let from = daemon.log.len();
    runtime().block_on(async {
        let s = tokio::net::TcpStream::connect(audiosocket).await.unwrap();
        // Read what hark sends (its keep-alive silence), as Asterisk does.
        let (mut rx, mut s) = s.into_split();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut rx, &mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let mut hello = vec![0x01, 0x00, 0x10];
        hello.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        s.write_all(&hello).await.unwrap();
        let t0 = tokio::time::Instant::now();
        for (at, samples) in &spurts {
            for (i, chunk) in samples.chunks(160).enumerate() {
                tokio::time::sleep_until(t0 + *at + Duration::from_millis(20 * i as u64)).await;
                let mut f = vec![0x10];
                f.extend_from_slice(&((chunk.len() * 2) as u16).to_be_bytes());
                for x in chunk {
                    f.extend_from_slice(&x.to_le_bytes());
                }
                s.write_all(&f).await.unwrap();
            }
        }
        tokio::time::sleep_until(t0 + end).await;
    });
    let over_tcp = turns(&mut daemon, from, 2);

    // Over SIP with DTX: µ-law packets during speech only; each talkspurt
    // starts with the marker bit, its timestamp moved on by the pause,
    // its sequence number continuing (RFC 3551 §4.1).
    let from = daemon.log.len();
    let mut c = Caller::new(sip, 1);
    assert_eq!(c.invite("listen", "sendrecv"), 200);
    let to = c.remote_rtp.unwrap();
    // (due, marker, payload) of every packet, then each packet's ticks:
    // the real time to the next one at 8 kHz, so the pause shows in the
    // timestamps.
    let mut packets: Vec<(Duration, bool, Vec<u8>)> = Vec::new();
    for (at, samples) in &spurts {
        for (i, chunk) in samples.chunks(160).enumerate() {
            let payload = chunk
                .iter()
                .map(|&s| media_core::g711::linear_to_ulaw(s))
                .collect();
            packets.push((*at + Duration::from_millis(20 * i as u64), i == 0, payload));
        }
    }
    let t0 = Instant::now();
    let mut out = Vec::new();
    for k in 0..packets.len() {
        let (due, marker, payload) = &packets[k];
        let ticks = packets
            .get(k + 1)
            .map_or(160, |next| (next.0 - *due).as_millis() as u32 * 8);
        while Instant::now() < t0 + *due {
            std::thread::sleep(Duration::from_millis(1));
        }
        c.sender
            .packet(0, *marker, payload, ticks, &mut out)
            .unwrap();
        c.rtp.send_to(&out, to).unwrap();
    }
    while Instant::now() < t0 + end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let over_sip = turns(&mut daemon, from, 2);
    c.send("BYE", "listen", "");

    println!("AudioSocket: {over_tcp:?}\nSIP with DTX: {over_sip:?}");
    for (tcp, sip) in over_tcp.iter().zip(&over_sip) {
        // The SIP call starts its clock a little before its first packet
        // (the INVITE exchange) and buffers 40 ms or more: the same start
        // within 200 ms, where a lost talkspurt start was 556 ms late.
        assert!(
            tcp.0.abs_diff(sip.0) <= 200,
            "turn start {} ms over AudioSocket, {} ms over SIP",
            tcp.0,
            sip.0
        );
        let (errors, words) = hark::speech::stt::word_errors(&tcp.1, &sip.1);
        assert!(
            errors * 5 <= words,
            "heard {:?} over AudioSocket, {:?} over SIP",
            tcp.1,
            sip.1
        );
    }
}
