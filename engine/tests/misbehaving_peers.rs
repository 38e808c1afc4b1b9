//! A broken or hostile peer loses its own call and nobody else's; the call
//! over capacity is refused cleanly.

mod common;

use std::time::Duration;

use common::*;
use hark::dial::{DialEnd, DialOptions, dial};
use media_core::SampleRate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection not closed within {within:?}"),
        }
    }
}

fn uuid_msg() -> Vec<u8> {
    let mut b = vec![0x01, 0x00, 0x10];
    b.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    b
}

#[test]
fn malformed_peers_are_closed_while_a_good_call_goes_on() {
    let mut daemon = Daemon::start(&echo_config(""));
    let rt = runtime();
    rt.block_on(async {
        let sent = pattern(24_000); // 3 s
        let mut opts = DialOptions::new(daemon.address, SampleRate::HZ_8000, sent.clone());
        opts.tail = Duration::from_millis(ECHO_DELAY_MS + 500);
        let good = tokio::spawn(async move { dial(&opts).await });

        tokio::time::sleep(Duration::from_millis(300)).await;
        let bad_inputs: Vec<Vec<u8>> = vec![
            // Unknown kind after a valid UUID.
            [uuid_msg(), vec![0x42, 0x00, 0x02, 1, 2]].concat(),
            // Odd-length audio.
            [uuid_msg(), vec![0x10, 0x00, 0x03, 1, 2, 3]].concat(),
            // Larger than the payload limit.
            [uuid_msg(), vec![0x10, 0xff, 0xfe]].concat(),
            // Audio before the UUID.
            vec![0x10, 0x00, 0x02, 0, 0],
            // Plain garbage.
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ];
        for bytes in bad_inputs {
            let mut s = TcpStream::connect(daemon.address).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            read_until_closed(&mut s, Duration::from_secs(3)).await;
        }
        // A peer that vanishes mid-frame.
        let mut s = TcpStream::connect(daemon.address).await.unwrap();
        s.write_all(&[uuid_msg(), vec![0x10, 0x01, 0x40, 1, 2, 3]].concat())
            .await
            .unwrap();
        drop(s);

        let report = good.await.unwrap().expect("good call");
        assert_eq!(report.end, DialEnd::Finished);
        assert_echo(
            &report.received,
            &sent,
            SampleRate::HZ_8000,
            Duration::from_millis(ECHO_DELAY_MS),
        );
    });
    assert!(daemon.wait_for_log(
        "reason=peer closed in the middle of a message",
        Duration::from_secs(3)
    ));
    daemon.pump_log();
    let abnormal = daemon
        .log
        .iter()
        .filter(|l| l.contains("call ended abnormally"))
        .count();
    assert!(abnormal >= 5, "{:#?}", daemon.log);
}

#[test]
fn a_silent_connection_is_closed_after_the_uuid_timeout() {
    let daemon =
        Daemon::start(&echo_config("").replace("[limits]", "[limits]\nuuid_timeout_ms = 300"));
    let rt = runtime();
    rt.block_on(async {
        let mut s = TcpStream::connect(daemon.address).await.unwrap();
        let started = tokio::time::Instant::now();
        read_until_closed(&mut s, Duration::from_secs(3)).await;
        // The timeout runs once: closed after 300 ms, not after two of them.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_millis(550), "{took:?}");
    });
}

#[test]
fn idle_connections_take_no_call_slot_and_have_their_own_bound() {
    let mut daemon = Daemon::start(&echo_config(
        "max_calls = 5
max_pending = 8",
    ));
    let rt = runtime();
    rt.block_on(async {
        // Eight connections that never say who they are: the pending bound.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(TcpStream::connect(daemon.address).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A ninth makes the oldest give up its place (0x00: in a dialplan
        // it would go on): the newest is the likeliest real call.
        let _ninth = TcpStream::connect(daemon.address).await.unwrap();
        let got = read_until_closed(&mut idle[0], Duration::from_secs(2)).await;
        assert_eq!(got, vec![0x00, 0x00, 0x00]);
        // Real calls still get all five call slots, however many idle
        // connections wait: each new one evicts an older idle one.
        let mut calls = Vec::new();
        for _ in 0..5 {
            let mut opts = DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(4_000));
            opts.tail = Duration::from_millis(ECHO_DELAY_MS + 300);
            calls.push(tokio::spawn(async move { dial(&opts).await }));
        }
        for c in calls {
            let report = c.await.unwrap().unwrap();
            assert_eq!(report.end, DialEnd::Finished);
            assert!(!report.received.is_empty());
        }
    });
    assert!(daemon.wait_for_log("closing the oldest connection", Duration::from_secs(2)));
}

#[test]
fn a_reused_uuid_is_refused_and_the_first_call_keeps_its_record() {
    let mut daemon = Daemon::start(&echo_config(""));
    let rt = runtime();
    rt.block_on(async {
        let mut first = DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(8_000));
        first.tail = Duration::from_millis(ECHO_DELAY_MS + 300);
        let uuid = first.uuid;
        let running = {
            let o = first.clone();
            tokio::spawn(async move { dial(&o).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The same UUID while the first call is up.
        let mut again = DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(1_600));
        again.uuid = uuid;
        assert_eq!(dial(&again).await.unwrap().end, DialEnd::Refused);
        assert_eq!(running.await.unwrap().unwrap().end, DialEnd::Finished);
        // And after it ended.
        assert_eq!(dial(&again).await.unwrap().end, DialEnd::Refused);
    });
    assert!(daemon.wait_for_log("UUID already in a call", Duration::from_secs(2)));
}

#[test]
fn a_peer_that_stops_reading_loses_its_call_within_seconds() {
    let mut daemon = Daemon::start(&echo_config(""));
    let rt = runtime();
    rt.block_on(async {
        // A peer that sends its UUID and then never reads: hark keeps
        // sending a frame every 20 ms, which piles up in the buffers.
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        // Its own receive buffer as small as the kernel allows, as a
        // stuck process that never drains a default one would be after
        // its first seconds.
        s.set_recv_buffer_size(4096).unwrap();
        let mut s = s.connect(daemon.address).await.unwrap();
        s.write_all(&uuid_msg()).await.unwrap();
        let started = std::time::Instant::now();
        assert!(
            daemon.wait_for_log("peer stopped reading", Duration::from_secs(30)),
            "{:#?}",
            daemon.log
        );
        eprintln!(
            "call ended {:?} after the peer stopped reading",
            started.elapsed()
        );
        drop(s);
    });
}

#[test]
fn the_call_over_capacity_is_refused_with_hangup() {
    let mut daemon = Daemon::start(&echo_config("max_calls = 2"));
    let rt = runtime();
    rt.block_on(async {
        let mut holders = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(daemon.address).await.unwrap();
            s.write_all(&uuid_msg()).await.unwrap();
            holders.push(s);
        }
        // Let the server register both.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = TcpStream::connect(daemon.address).await.unwrap();
        third.write_all(&uuid_msg()).await.unwrap();
        let got = read_until_closed(&mut third, Duration::from_secs(3)).await;
        // Hangup (0x00), the one refusal Asterisk takes: `res_audiosocket.c`
        // hangs the caller up on an error frame, and `AudioSocket()` returns
        // into the dialplan on 0x00.
        assert_eq!(got, vec![0x00, 0x00, 0x00]);

        // The `dial` client says so clearly.
        let opts = DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(1_600));
        let report = dial(&opts).await.unwrap();
        assert_eq!(report.end, DialEnd::Refused);

        // The calls in progress were not disturbed: they still echo.
        let frame: Vec<u8> = [vec![0x10, 0x01, 0x40], vec![5u8; 320]].concat();
        holders[0].write_all(&frame).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), holders[0].read(&mut buf))
            .await
            .expect("echo still flows")
            .unwrap();
        assert!(n > 0);

        // A slot frees up when a call ends; the next call is accepted.
        drop(holders.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut opts = DialOptions::new(daemon.address, SampleRate::HZ_8000, pattern(1_600));
        opts.tail = Duration::from_millis(ECHO_DELAY_MS + 300);
        let report = dial(&opts).await.unwrap();
        assert_eq!(report.end, DialEnd::Finished);
        assert!(!report.received.is_empty());
    });
    assert!(daemon.wait_for_log("refusing call", Duration::from_secs(2)));
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("refusing call") && l.contains("at capacity")),
        "{:#?}",
        daemon.log
    );
}
