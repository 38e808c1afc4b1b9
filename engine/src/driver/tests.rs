//! The driver on tokio's paused clock: a 30-second conversation over an
//! AudioSocket byte stream, with inference faked on threads of its own
//! (STT answers from a plain thread, as Whisper's workers do; TTS gives
//! audio whose length follows the words; the scripted model replies). The
//! paused clock jumps whenever every task waits, so the call takes virtual
//! seconds and very little wall time, and its pacing is exact.

use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;

use media_core::audiosocket::{Decoder, Message};
use media_core::{
    CallConfig, Conversation, ConversationConfig, EndpointConfig, Endpointer, EnergyVad,
    EnergyVadConfig, SampleRate,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::llm::{Provider, Router, RouterConfig, Script, ScriptQuestion, ScriptedModel};
use crate::speaking::Brain;
use crate::speech::stt::SubmitError;
use crate::speech::tts::{PromptCache, SynthFuture, Synthesizer};

/// Audio per spoken word, from the fake voice.
const WORD: Duration = Duration::from_millis(200);
const FRAME: Duration = Duration::from_millis(20);

/// STT on a thread of its own: answers each turn with the next line.
#[derive(Debug)]
struct ThreadStt {
    tx: Mutex<std_mpsc::Sender<SttRequest>>,
}

impl ThreadStt {
    fn start(lines: Vec<&'static str>) -> Arc<Self> {
        let (tx, rx) = std_mpsc::channel::<SttRequest>();
        std::thread::spawn(move || {
            let mut lines = lines.into_iter();
            while let Ok(req) = rx.recv() {
                let result = match lines.next() {
                    Some(text) => Ok(Transcript {
                        text: text.into(),
                        confidence: 0.9,
                        audio: req.turn.duration(),
                        queued: Duration::ZERO,
                        processing: Duration::ZERO,
                        engine: "fake/thread".into(),
                    }),
                    None => Err(SttError::NoSpeech),
                };
                let _ = req.reply.send(result);
            }
        });
        Arc::new(Self { tx: Mutex::new(tx) })
    }
}

impl Transcriber for ThreadStt {
    fn submit(&self, request: SttRequest) -> Result<(), SubmitError> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.send(request).map_err(|_| SubmitError::Stopped)
    }
    fn name(&self) -> &str {
        "fake/thread"
    }
}

/// A voice whose every sample is 4000 and whose length follows the words.
#[derive(Debug)]
struct WordVoice;

impl Synthesizer for WordVoice {
    fn synthesize(&self, text: String, rate: SampleRate) -> SynthFuture {
        let words = text.split_whitespace().count() as u32;
        Box::pin(async move { Ok(vec![4_000; rate.samples_in(WORD * words)]) })
    }
    fn name(&self) -> &str {
        "fake/words"
    }
}

fn brain() -> Arc<Brain> {
    let script = Script {
        greeting: "Hello, welcome.".into(),
        questions: vec![
            ScriptQuestion {
                slot: "party".into(),
                ask: "How many people?".into(),
            },
            ScriptQuestion {
                slot: "day".into(),
                ask: "Which day?".into(),
            },
        ],
        confirm: "A table for {party} on {day}.".into(),
        closing: "Booked, goodbye.".into(),
        retry: "Let's try again.".into(),
    };
    let router = Router::new(
        vec![Provider {
            model: Arc::new(ScriptedModel::new(script)),
            price: Default::default(),
        }],
        None,
        RouterConfig::default(),
        None,
    );
    Arc::new(Brain {
        router,
        system_prompt: "You book tables.".into(),
        tools: crate::llm::builtin_tools(),
        max_tokens: 100,
        temperature: 0.0,
        tenant: "default".into(),
    })
}

fn setup(stt: Arc<ThreadStt>) -> CallSetup {
    let ears = Ears(Box::new(|rate| {
        let vad = EnergyVad::new(rate, EnergyVadConfig::default());
        Endpointer::new(EndpointConfig::default(), Box::new(vad))
    }));
    CallSetup {
        call_config: CallConfig::default(),
        agent: Box::new(Conversation::new(ConversationConfig {
            greeting: None,
            // No re-prompt inside the 30 s: the caller's pauses are shorter.
            silence_timeout: Duration::from_secs(20),
            ..ConversationConfig::default()
        })),
        ears: Some(ears),
        vad: None,
        transcriber: Some(stt),
        mouth: Some(Mouth {
            synth: Arc::new(WordVoice),
            cache: Arc::new(PromptCache::default()),
            max_wait: Duration::from_millis(500),
        }),
        brain: Some(brain()),
        recording: None,
        place: None,
        turn: None,
    }
}

/// A frame of the caller: loud noise while talking, near silence otherwise.
fn caller_frame(talking: bool, seed: &mut u64) -> Vec<u8> {
    let mut out = vec![0x10, 0x01, 0x40];
    for _ in 0..160 {
        let s: i16 = if talking {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ((*seed % 16_001) as i32 - 8_000) as i16
        } else {
            0
        };
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_thirty_second_conversation_runs_on_the_paused_clock() {
    let wall = std::time::Instant::now();
    let start = Instant::now();
    let stt = ThreadStt::start(vec!["two people", "on friday"]);
    let (driver_end, peer) = tokio::io::duplex(64 * 1024);
    let (_phase_tx, phase_rx) = watch::channel(Phase::Running);
    let mut first = vec![0x01, 0x00, 0x10];
    first.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let peer_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let leg = Leg::Socket(SocketLeg::new(driver_end, 4_096, first));
    let driver = tokio::spawn(drive(leg, peer_addr, setup(Arc::clone(&stt)), phase_rx));

    // The caller: a frame every 20 ms for 30 s, talking 6-7 s and 14-15 s.
    let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
    let caller = tokio::spawn(async move {
        let mut seed = 7u64;
        let mut tick = tokio::time::interval_at(start + FRAME, FRAME);
        for k in 1..=1_500u64 {
            tick.tick().await;
            let ms = k * 20;
            let talking = (6_000..7_000).contains(&ms) || (14_000..15_000).contains(&ms);
            if peer_tx
                .write_all(&caller_frame(talking, &mut seed))
                .await
                .is_err()
            {
                break;
            }
        }
        // The caller hangs up (AudioSocket 0x00), as Asterisk does at hangup.
        let _ = peer_tx.write_all(&[0x00, 0x00, 0x00]).await;
    });

    // What the caller hears: every frame with the virtual time it came.
    let mut heard: Vec<(Duration, bool)> = Vec::new();
    let mut buf = Vec::new();
    let decoder = Decoder::default();
    loop {
        let mut chunk = [0u8; 4096];
        let n = match peer_rx.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let at = start.elapsed();
        let mut used = 0;
        while let Ok((m, len)) = decoder.decode(&buf[used..]) {
            if let Message::Audio { pcm, .. } = m {
                heard.push((at, pcm.iter().any(|&b| b != 0)));
            }
            used += len;
        }
        buf.drain(..used);
    }
    let outcome = driver.await.expect("driver task");
    caller.await.expect("caller task");
    let took = start.elapsed();
    let wall = wall.elapsed();
    eprintln!("a {took:?} call ran in {wall:?} of wall time");

    assert_eq!(outcome.reason, EndReason::PeerHangup);
    assert!(took >= Duration::from_secs(30), "virtual time: {took:?}");
    assert!(
        wall < took / 10,
        "the paused clock runs the call far faster than real time: {wall:?} for {took:?}"
    );
    // A frame every 20 ms from the UUID to the hangup, speech or silence.
    assert!(
        (1_490..=1_510).contains(&heard.len()),
        "{} frames in 30 s",
        heard.len()
    );
    // The agent's frames may leave one slot early (send-ahead 1) and
    // silence never does, so two frames are at most two slots apart.
    let late: Vec<_> = heard
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > 2 * FRAME + Duration::from_millis(1))
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(late.is_empty(), "no slot missed: {late:?}");
    // The agent spoke three times: the greeting and a reply to each turn,
    // each reply after the turn it answers.
    // A stretch of the agent's audio starts after 500 ms without any.
    let mut talks: Vec<Duration> = Vec::new();
    let mut last_voiced: Option<Duration> = None;
    for &(at, voiced) in &heard {
        if voiced {
            if last_voiced.is_none_or(|l| at - l > Duration::from_millis(500)) {
                talks.push(at);
            }
            last_voiced = Some(at);
        }
    }
    assert_eq!(talks.len(), 3, "greeting and two replies: {talks:?}");
    assert!(talks[0] < Duration::from_secs(1), "{talks:?}");
    assert!(
        talks[1] > Duration::from_secs(7) && talks[1] < Duration::from_secs(9),
        "{talks:?}"
    );
    assert!(
        talks[2] > Duration::from_secs(15) && talks[2] < Duration::from_secs(17),
        "{talks:?}"
    );
}

/// Dropped with the call's place: tells the test when that happened.
struct Witness(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Witness {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The call's place (its admission slot) is given back as the call ends,
/// before the caller sees the socket close: a dialplan that dials again
/// at once is never refused for a call that is already over.
#[tokio::test(start_paused = true)]
async fn the_place_is_given_back_before_the_socket_closes() {
    let stt = ThreadStt::start(vec![]);
    let (driver_end, mut peer) = tokio::io::duplex(64 * 1024);
    let (_phase_tx, phase_rx) = watch::channel(Phase::Running);
    let mut first = vec![0x01, 0x00, 0x10];
    first.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let peer_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let leg = Leg::Socket(SocketLeg::new(driver_end, 4_096, first));
    let given_back = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut setup = setup(stt);
    setup.place = Some(Place::new(Witness(Arc::clone(&given_back))));
    let driver = tokio::spawn(drive(leg, peer_addr, setup, phase_rx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!given_back.load(std::sync::atomic::Ordering::SeqCst));
    peer.write_all(&[0x00, 0x00, 0x00]).await.expect("hangup");
    let mut sink = Vec::new();
    let _ = peer.read_to_end(&mut sink).await;
    assert!(
        given_back.load(std::sync::atomic::Ordering::SeqCst),
        "the socket closed while the call still held its place"
    );
    let outcome = driver.await.expect("driver task");
    assert_eq!(outcome.reason, EndReason::PeerHangup);
}
