//! Stasis mode against the fake Asterisk of `ari-client` (REST and events
//! websocket on loopback), with the release daemon:
//!
//! 1. StasisStart -> first agent audio frame at Asterisk's media side,
//!    over 100 sequential calls to a `say` agent (its greeting is
//!    synthesized at start-up, so the figure is hark's call set-up, not
//!    TTS), split into StasisStart -> media leg connected and connected ->
//!    first audio. Baseline in the same run: the same agent dialled
//!    directly over AudioSocket (connect -> first audio frame).
//! 2. Reconnect time after the events websocket is dropped (no close
//!    frame), over 30 drops: drop -> the next websocket accepted.
//!
//! Run with `benches/run-stasis` (builds the release daemon first).
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use ari_client::fake::{CallSpec, FakeAri, MediaLeg};
use hark::dial::{DialOptions, DialReport, dial};
use hark::stats::Percentiles;
use media_core::SampleRate;
use tokio::sync::mpsc;
use tokio::time::Instant;

const RATE: SampleRate = SampleRate::HZ_8000;
const CALLS: usize = 100;
const DROPS: usize = 30;

use hark_benches::root;

struct Daemon {
    child: Child,
    /// The `say` listener (for the baseline).
    address: SocketAddr,
    ari_ready: std::sync::mpsc::Receiver<()>,
    _dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(ari_url: &str) -> Daemon {
    let config = format!(
        r#"
[speech]
models_dir = "{models}"
[[listener]]
name = "main"
address = "127.0.0.1:0"
agent = "hello"
[agent.hello]
kind = "say"
text = "Hello, thank you for calling."
hangup = false
[ari]
url = "{ari_url}"
username = "hark"
password = "pw"
app = "hark"
"#,
        models = root().join("models").display(),
    );
    let (ready_tx, ari_ready) = std::sync::mpsc::channel();
    // HARK_BENCH_LOG=1 shows the daemon's log.
    let echo = std::env::var_os("HARK_BENCH_LOG").is_some();
    let (child, address, dir) =
        hark_benches::serve_release("stasis", "benches/run-stasis", &config, move |line| {
            if echo {
                eprintln!("{line}");
            }
            if line.contains("ARI events connected") {
                let _ = ready_tx.send(());
            }
        });
    Daemon {
        child,
        address,
        ari_ready,
        _dir: dir,
    }
}

/// When the first frame with sound arrived, from the dial's start.
fn first_sound(report: &DialReport) -> Option<Duration> {
    report
        .arrivals
        .iter()
        .find(|a| {
            report.received[a.offset..a.offset + a.len]
                .iter()
                .any(|&s| s != 0)
        })
        .map(|a| report.connect_time + a.at)
}

fn caller(address: SocketAddr, uuid: Option<&str>) -> DialOptions {
    let mut o = DialOptions::new(
        address,
        RATE,
        vec![0; RATE.samples_in(Duration::from_millis(400))],
    );
    if let Some(u) = uuid {
        o.uuid = u.parse().unwrap();
    }
    o.tail = Duration::from_millis(200);
    o
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeAri::start("hark", "hark", "pw")).unwrap();
    let daemon = start(&fake.url());
    daemon
        .ari_ready
        .recv_timeout(Duration::from_secs(60))
        .unwrap();

    // Asterisk's media side: when the leg connected and when sound came.
    let (tx, mut legs) = mpsc::channel::<(Instant, Instant)>(4);
    fake.on_external_media(move |leg: MediaLeg| {
        let tx = tx.clone();
        async move {
            let invoked = Instant::now();
            let opts = caller(leg.external_host.parse().unwrap(), leg.data.as_deref());
            let report = dial(&opts).await.unwrap();
            let sound = first_sound(&report).expect("the greeting is heard");
            let _ = tx
                .send((invoked + report.connect_time, invoked + sound))
                .await;
        }
    });

    println!(
        "== StasisStart -> first agent audio ({CALLS} sequential calls, `say` agent, release daemon, fake ARI on loopback)"
    );
    let (mut total, mut connected, mut audio) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..CALLS {
            let (id, sent) = fake.start_call(&CallSpec {
                caller: "+15550001".into(),
                exten: "700".into(),
                ..CallSpec::default()
            });
            let (conn_at, sound_at) = legs.recv().await.unwrap();
            total.push(sound_at - sent);
            connected.push(conn_at - sent);
            audio.push(sound_at - conn_at);
            fake.hangup_from_caller(&id);
            assert!(
                fake.wait_until(Duration::from_secs(5), |f| f.bridges().is_empty()
                    && f.channel_ids().is_empty())
                    .await
            );
        }
    });
    let total = Percentiles::from_durations(total);
    println!("  StasisStart -> first audio frame:  {total}");
    println!(
        "  StasisStart -> media leg connected: {}",
        Percentiles::from_durations(connected)
    );
    println!(
        "  connected -> first audio frame:     {}",
        Percentiles::from_durations(audio)
    );

    let mut base = Vec::new();
    rt.block_on(async {
        for _ in 0..CALLS {
            let report = dial(&caller(daemon.address, None)).await.unwrap();
            base.push(first_sound(&report).unwrap());
        }
    });
    let base = Percentiles::from_durations(base);
    println!("  baseline, AudioSocket dialled directly (connect -> first audio frame): {base}");
    println!(
        "  ratio Stasis/direct: p50 {:.2}, p95 {:.2}; ARI adds p50 {:.1} ms",
        total.p50.as_secs_f64() / base.p50.as_secs_f64(),
        total.p95.as_secs_f64() / base.p95.as_secs_f64(),
        (total.p50.as_secs_f64() - base.p50.as_secs_f64()) * 1e3
    );

    println!(
        "\n== events websocket: drop (no close frame) -> next websocket accepted ({DROPS} drops)"
    );
    let mut gaps = Vec::new();
    rt.block_on(async {
        for _ in 0..DROPS {
            let before = fake.websocket_connects().len();
            let dropped = Instant::now();
            fake.drop_websockets();
            assert!(
                fake.wait_until(Duration::from_secs(10), |f| f.websocket_connects().len()
                    > before)
                    .await
            );
            gaps.push(fake.websocket_connects()[before] - dropped);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    println!("  reconnect: {}", Percentiles::from_durations(gaps));
}
