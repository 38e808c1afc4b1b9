//! SIP mode's media figures.
//!
//! 1. Per-packet media cost, in process: one 20 ms packet of a real
//!    recorded prompt through what a SIP leg does with it, both ways: RTP
//!    parse, jitter buffer in and out, decode (Opus: 48 kHz decode and
//!    resample to 16 kHz), then encode of a 20 ms reply frame (Opus:
//!    resample to 48 kHz and encode) and its RTP packet. PCMU is the
//!    baseline of the same run. Nanoseconds per packet, hdrhistogram.
//! 2. Concurrent calls: the release daemon with an echo agent; this bench
//!    is N SIP callers on loopback (INVITE, ACK, then 20 ms RTP for the
//!    call's length, then BYE). hark's RTP back to each caller should come
//!    every 20 ms; a gap over 40 ms is a missed deadline (a packet at least
//!    one frame late). Also counted: hark's own late playout ticks (its
//!    "sip media ended" lines), and the CPU hark used.
//!
//! Run with `benches/run-sip` (builds the release daemon first).
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use media_core::{Resampler, SampleRate, Time};
use sip_bridge::codec::MediaCodec;
use sip_bridge::jitter::{JitterBuffer, Playout};
use sip_bridge::message::{self, Message};
use sip_bridge::rtp::{self, RtpSender};
use sip_bridge::sdp::Codec;
use tokio::net::UdpSocket;

use hark_benches::root;

const PACKETS: usize = 20_000;

fn prompt(rate: SampleRate) -> Vec<i16> {
    let p = hark::wav::read(Path::new(
        "/usr/share/asterisk/sounds/en/check-number-dial-again.wav",
    ))
    .unwrap();
    Resampler::convert_all(p.rate, rate, &p.samples).unwrap()
}

/// The sender's packets for `codec`: the prompt, looped, 20 ms each.
fn packets(codec: Codec, count: usize) -> Vec<Vec<u8>> {
    let mut enc = MediaCodec::new(codec).unwrap();
    let audio = prompt(enc.rate());
    let frame = enc.rate().samples_in(Duration::from_millis(20));
    let mut sender = RtpSender::new(7);
    let pt = codec.static_payload_type().unwrap_or(107);
    let mut out = Vec::with_capacity(count);
    let mut payload = Vec::new();
    let mut packet = Vec::new();
    for chunk in audio.chunks_exact(frame).cycle() {
        if out.len() >= count {
            break;
        }
        enc.encode(chunk, &mut payload, |p, ticks| {
            sender.packet(pt, false, p, ticks, &mut packet).unwrap();
            out.push(packet.clone());
        })
        .unwrap();
    }
    out
}

/// Per-packet cost of the leg's work for `codec`, in ns: in (RTP parse,
/// jitter buffer, decode), out (encode, RTP), and both.
struct Cost {
    inbound: Histogram<u64>,
    outbound: Histogram<u64>,
    both: Histogram<u64>,
}

fn per_packet(codec: Codec) -> Cost {
    let input = packets(codec, PACKETS);
    let mut dec = MediaCodec::new(codec).unwrap();
    let mut enc = MediaCodec::new(codec).unwrap();
    let reply = prompt(dec.rate());
    let frame = dec.rate().samples_in(Duration::from_millis(20));
    let mut jitter = JitterBuffer::new(Duration::from_millis(20), codec.clock_rate(), 2, 15);
    let mut sender = RtpSender::new(9);
    let pt = codec.static_payload_type().unwrap_or(107);
    let hist = || Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
    let mut cost = Cost {
        inbound: hist(),
        outbound: hist(),
        both: hist(),
    };
    let (mut pcm, mut payload, mut packet) = (Vec::new(), Vec::new(), Vec::new());
    let mut replies = reply.chunks_exact(frame).cycle();
    let mut sent = 0u64;
    for (i, datagram) in input.iter().enumerate() {
        let now = Time::from_micros(i as u64 * 20_000);
        let reply = replies.next().unwrap();
        let t = Instant::now();
        let p = rtp::parse(datagram).unwrap();
        jitter.handle_packet(now, p.sequence, p.timestamp, p.marker, p.payload);
        pcm.clear();
        match jitter.poll_frame() {
            Playout::Frame(f) => dec.decode(&f, &mut pcm).unwrap(),
            Playout::Lost => dec.conceal(frame, &mut pcm).unwrap(),
            Playout::Waiting => {}
        }
        let t_out = Instant::now();
        enc.encode(reply, &mut payload, |data, ticks| {
            sender.packet(pt, false, data, ticks, &mut packet).unwrap();
            sent += packet.len() as u64;
        })
        .unwrap();
        let done = Instant::now();
        cost.inbound
            .record(t_out.duration_since(t).as_nanos() as u64)
            .unwrap();
        cost.outbound
            .record(done.duration_since(t_out).as_nanos() as u64)
            .unwrap();
        cost.both
            .record(done.duration_since(t).as_nanos() as u64)
            .unwrap();
        std::hint::black_box((&pcm, &packet));
    }
    assert!(sent > 0);
    cost
}

fn offer(codec: Codec, rtp: SocketAddr) -> String {
    let (fmt, map) = match codec {
        Codec::Opus => (
            "107 101",
            "a=rtpmap:107 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n",
        ),
        _ => (
            "0 101",
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        ),
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {fmt}\r\n{map}a=ptime:20\r\na=sendrecv\r\n",
        rtp.port()
    )
}

fn request(
    method: &str,
    sip: SocketAddr,
    me: SocketAddr,
    n: usize,
    tag: Option<&str>,
    cseq: u32,
    body: &str,
) -> String {
    let to = match tag {
        Some(t) => format!("<sip:echo@{sip}>;tag={t}"),
        None => format!("<sip:echo@{sip}>"),
    };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:echo@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}{n}x{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:bench{n}@127.0.0.1>;tag=b{n}\r\nTo: {to}\r\nCall-ID: bench-{n}@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:bench{n}@{me}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

struct CallResult {
    gaps_us: Vec<u64>,
    received: u64,
}

/// One caller: INVITE, ACK, `length` of 20 ms RTP, BYE.
async fn caller(
    n: usize,
    sip: SocketAddr,
    codec: Codec,
    media: Arc<Vec<Vec<u8>>>,
    length: Duration,
) -> CallResult {
    let sig = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sig.local_addr().unwrap();
    let body = offer(codec, rtp_sock.local_addr().unwrap());
    sig.send_to(
        request("INVITE", sip, me, n, None, 1, &body).as_bytes(),
        sip,
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 65536];
    let (tag, remote) = loop {
        let (len, _) = tokio::time::timeout(Duration::from_secs(10), sig.recv_from(&mut buf))
            .await
            .expect("hark answers within 10 s")
            .unwrap();
        let Ok(Message::Response(r)) = message::parse(&buf[..len]) else {
            continue;
        };
        if r.status < 200 {
            continue;
        }
        assert_eq!(r.status, 200, "call {n} refused");
        let sd = sip_bridge::sdp::parse(&r.common.body).unwrap();
        let m = &sd.media[0];
        let ip = m.connection.or(sd.connection).unwrap();
        break (
            r.common.to_tag.clone().unwrap(),
            SocketAddr::new(ip, m.port),
        );
    };
    sig.send_to(
        request("ACK", sip, me, n, Some(&tag), 1, "").as_bytes(),
        sip,
    )
    .await
    .unwrap();
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = tokio::time::Instant::now() + length;
    let mut gaps = Vec::new();
    let mut last: Option<Instant> = None;
    let mut received = 0u64;
    let mut i = n * 37;
    let mut rbuf = vec![0u8; 2048];
    let mut sender = RtpSender::new(n as u64 * 7919 + 1);
    let mut out = Vec::with_capacity(1500);
    let ticks = codec.clock_rate() / 50;
    let pt = codec.static_payload_type().unwrap_or(107);
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = ticker.tick() => {
                let p = rtp::parse(&media[i % media.len()]).unwrap();
                i += 1;
                sender.packet(pt, false, p.payload, ticks, &mut out).unwrap();
                let _ = rtp_sock.send_to(&out, remote).await;
            }
            got = rtp_sock.recv_from(&mut rbuf) => {
                if got.is_ok() {
                    let now = Instant::now();
                    received += 1;
                    if let Some(l) = last {
                        gaps.push(now.duration_since(l).as_micros() as u64);
                    }
                    last = Some(now);
                }
            }
        }
    }
    sig.send_to(
        request("BYE", sip, me, n, Some(&tag), 2, "").as_bytes(),
        sip,
    )
    .await
    .unwrap();
    CallResult {
        gaps_us: gaps,
        received,
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn concurrent(codec: Codec, calls: usize, length: Duration) {
    let config = r#"
[server]
max_calls = 1000
[[listener]]
name = "main"
address = "127.0.0.1:0"
agent = "echo"
[agent.echo]
kind = "echo"
delay_ms = 200
[sip]
listen = "127.0.0.1:0"
rtp_ports = [33000, 35999]
"#;
    let sip_addr = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let late_ticks = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicU64::new(0));
    // hark's jitter buffers, summed: packets received, lost, late.
    let inbound = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let i2 = Arc::clone(&inbound);
    let (s2, l2, e2) = (
        Arc::clone(&sip_addr),
        Arc::clone(&late_ticks),
        Arc::clone(&ended),
    );
    let echo_log = std::env::var_os("HARK_BENCH_LOG").is_some();
    let (mut child, _, _dir) =
        hark_benches::serve_release("sip", "benches/run-sip", config, move |line| {
            if echo_log {
                eprintln!("{line}");
            }
            if line.contains("sip listening")
                && let Some(a) = line
                    .split("address=")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next())
            {
                *s2.lock().unwrap() = a.parse().ok();
            }
            if line.contains("sip media ended") {
                e2.fetch_add(1, Ordering::Relaxed);
                for (k, key) in ["received=", "lost=", "late="].iter().enumerate() {
                    if let Some(n) = line
                        .split(key)
                        .nth(1)
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        i2[k].fetch_add(n, Ordering::Relaxed);
                    }
                }
                if let Some(n) = line
                    .split("late_ticks=")
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    l2.fetch_add(n, Ordering::Relaxed);
                }
            }
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    let sip = loop {
        if let Some(a) = *sip_addr.lock().unwrap() {
            break a;
        }
        assert!(Instant::now() < deadline, "no sip listening line");
        std::thread::sleep(Duration::from_millis(20));
    };
    let media = Arc::new(packets(codec, 500));
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..calls {
            tasks.push(tokio::spawn(caller(
                n,
                sip,
                codec,
                Arc::clone(&media),
                length,
            )));
            // Callers arrive over a second, not in one burst.
            tokio::time::sleep(Duration::from_millis(1000 / calls as u64)).await;
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let wall = t0.elapsed();
    let cpu = cpu_ticks(pid) - cpu0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ended.load(Ordering::Relaxed) < calls as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut missed = 0u64;
    let mut received = 0u64;
    for (n, r) in results.iter().enumerate() {
        let late: Vec<String> = r
            .gaps_us
            .iter()
            .enumerate()
            .filter(|(_, g)| **g > 40_000)
            .map(|(i, g)| format!("packet {} after {:.1} ms", i + 1, *g as f64 / 1000.0))
            .collect();
        if !late.is_empty() && std::env::var_os("HARK_BENCH_LOG").is_some() {
            eprintln!("call {n}: {}", late.join(", "));
        }
        received += r.received;
        for &g in &r.gaps_us {
            h.record(g.max(1)).unwrap();
            if g > 40_000 {
                missed += 1;
            }
        }
    }
    let hz = 100.0; // USER_HZ on Linux
    let cores = cpu as f64 / hz / wall.as_secs_f64();
    println!(
        "{codec:?} x{calls}: {received} packets back, gap p50 {:.1} ms p99 {:.1} ms max {:.1} ms; gaps > 40 ms: {missed} ({:.3}%); hark's late playout ticks: {}; hark received {} caller packets, lost {}, late {}; calls ended: {}; hark CPU {cores:.2} cores",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        100.0 * missed as f64 / h.len().max(1) as f64,
        late_ticks.load(Ordering::Relaxed),
        inbound[0].load(Ordering::Relaxed),
        inbound[1].load(Ordering::Relaxed),
        inbound[2].load(Ordering::Relaxed),
        ended.load(Ordering::Relaxed),
    );
}

fn main() {
    // `cargo bench` passes --bench; a test run (`cargo test --benches`)
    // does not and only checks the bench builds and starts.
    let bench = std::env::args().any(|a| a == "--bench");
    let _ = root();
    println!("per-packet media cost (hdrhistogram, {PACKETS} packets of 20 ms each way):");
    let base = per_packet(Codec::Pcmu).both.value_at_quantile(0.5).max(1);
    for (name, codec) in [
        ("PCMU", Codec::Pcmu),
        ("PCMA", Codec::Pcma),
        ("Opus", Codec::Opus),
    ] {
        let c = per_packet(codec);
        for (part, h) in [("in", &c.inbound), ("out", &c.outbound), ("both", &c.both)] {
            println!(
                "  {name:5} {part:4} p50 {:>7.2} us  p95 {:>7.2} us  p99 {:>7.2} us  max {:>8.2} us   p50 x{:.1} PCMU both",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.95) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
                h.value_at_quantile(0.5) as f64 / base as f64,
            );
        }
    }
    if !bench {
        return;
    }
    let length = Duration::from_secs(
        std::env::var("HARK_SIP_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15),
    );
    println!(
        "\nconcurrent SIP calls, echo agent, {} s each, on this machine's 2 cores:",
        length.as_secs()
    );
    let plan: Vec<(Codec, usize)> = std::env::var("HARK_SIP_PLAN")
        .ok()
        .map(|p| {
            p.split(',')
                .filter_map(|x| {
                    let (c, n) = x.split_once(':')?;
                    Some((Codec::from_config(c)?, n.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_else(|| {
            vec![
                (Codec::Pcmu, 50),
                (Codec::Pcmu, 100),
                (Codec::Pcmu, 200),
                (Codec::Opus, 50),
                (Codec::Opus, 100),
            ]
        });
    for (codec, calls) in plan {
        concurrent(codec, calls, length);
    }
}
