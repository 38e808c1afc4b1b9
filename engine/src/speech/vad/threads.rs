//! Silero VAD on inference threads of its own, off the async runtime.
//!
//! Each thread owns one ONNX Runtime session: no lock around a session, and
//! none ever taken on a tokio thread. A call's driver hands its windows in,
//! one at a time and in order, through one bounded queue shared by every
//! call ([`Listening::submit`]); the window's score comes back on the
//! call's own small channel, with the call's Silero state, which travels
//! with each window. A full queue (more windows than the threads can score)
//! scores the window as silence at once and counts it, so an overloaded
//! node makes turns end later rather than stalling every call.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use media_core::{SampleRate, Session, Time};
use tokio::sync::mpsc;

use super::silero::SileroState;
use crate::speech::onnx::{OnnxError, load_sessions};

/// Windows waiting for a thread, all calls together: about 2 s of 8 kHz
/// windows for 32 calls, far more than the threads ever hold back unless
/// they cannot keep up.
const QUEUE: usize = 2_048;

/// One window to score, and where its score goes.
struct Job {
    state: Box<SileroState>,
    window: Vec<i16>,
    reply: mpsc::Sender<Scored>,
}

/// A window's score, with the call's state coming home.
#[derive(Debug)]
pub struct Scored {
    state: Box<SileroState>,
    p: Option<f32>,
}

/// Silero's inference threads.
#[derive(Debug)]
pub struct VadThreads {
    tx: std_mpsc::SyncSender<Job>,
    /// Windows scored as silence because the queue was full.
    refused: AtomicU64,
    /// Windows scored.
    scored: Arc<AtomicU64>,
}

impl VadThreads {
    /// Loads the model once per thread and starts `threads` threads.
    pub fn start(library: &Path, model: &Path, threads: usize) -> Result<Arc<Self>, OnnxError> {
        let sessions = load_sessions(library, model, threads, 1)?;
        let (tx, rx) = std_mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let scored = Arc::new(AtomicU64::new(0));
        for (i, mut session) in sessions.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            let scored = Arc::clone(&scored);
            let spawned = std::thread::Builder::new()
                .name(format!("hark-vad-{i}"))
                .spawn(move || {
                    loop {
                        // Only these threads ever take this lock.
                        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(job) => job,
                            // Every sender is gone: hark is stopping.
                            Err(_) => return,
                        };
                        let Job {
                            mut state,
                            window,
                            reply,
                        } = job;
                        let p = state.score(&mut session, &window).ok();
                        scored.fetch_add(1, Ordering::Relaxed);
                        // The call may be over: its score is not needed.
                        let _ = reply.try_send(Scored { state, p });
                    }
                });
            if let Err(e) = spawned {
                return Err(OnnxError::Model {
                    path: model.to_path_buf(),
                    reason: format!("cannot start a VAD thread: {e}"),
                });
            }
        }
        Ok(Arc::new(Self {
            tx,
            refused: AtomicU64::new(0),
            scored,
        }))
    }

    /// Windows scored as silence because every thread was busy.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Windows scored so far.
    pub fn scored(&self) -> u64 {
        self.scored.load(Ordering::Relaxed)
    }
}

/// One call's side of the VAD threads: its Silero state (at home, or out
/// with the window being scored) and the windows waiting behind it.
#[derive(Debug)]
pub struct Listening {
    threads: Arc<VadThreads>,
    /// `None` while a window is out.
    state: Option<Box<SileroState>>,
    /// Windows after the one out, in order.
    queue: VecDeque<Vec<i16>>,
    /// The rate the windows are at.
    rate: Option<SampleRate>,
    tx: mpsc::Sender<Scored>,
    rx: mpsc::Receiver<Scored>,
}

impl Listening {
    /// A call's side of `threads`.
    pub fn new(threads: Arc<VadThreads>) -> Self {
        // One window is out at a time: its reply always has room.
        let (tx, rx) = mpsc::channel(2);
        Self {
            threads,
            state: None,
            queue: VecDeque::new(),
            rate: None,
            tx,
            rx,
        }
    }

    /// True while a window is being scored.
    pub fn waiting(&self) -> bool {
        self.state.is_none() && self.rate.is_some()
    }

    /// The session's next window (`Event::Score`).
    pub fn submit(&mut self, session: &mut Session, now: Time, rate: SampleRate, window: Vec<i16>) {
        if self.rate != Some(rate) {
            // First window, or a new rate (the session drops the scores of
            // the windows before): fresh state, once the one out is home.
            let out = self.waiting();
            self.rate = Some(rate);
            self.state = (!out).then(|| Box::new(SileroState::new(rate)));
        }
        self.queue.push_back(window);
        self.send(session, now);
    }

    /// Sends the next window if the state is at home. A window the threads
    /// cannot take is scored as silence, in its turn.
    fn send(&mut self, session: &mut Session, now: Time) {
        while let Some(state) = self.state.take() {
            let Some(window) = self.queue.pop_front() else {
                self.state = Some(state);
                return;
            };
            let job = Job {
                state,
                window,
                reply: self.tx.clone(),
            };
            match self.threads.tx.try_send(job) {
                Ok(()) => return,
                Err(
                    std_mpsc::TrySendError::Full(job) | std_mpsc::TrySendError::Disconnected(job),
                ) => {
                    self.threads.refused.fetch_add(1, Ordering::Relaxed);
                    self.state = Some(job.state);
                    session.handle_score(now, None);
                }
            }
        }
    }

    /// The score of the window out (pending forever while none is).
    pub async fn next(&mut self) -> Option<Scored> {
        self.rx.recv().await
    }

    /// Hands a score to the session and sends the next window.
    pub fn take(&mut self, session: &mut Session, now: Time, scored: Scored) {
        let Scored { state, p } = scored;
        if Some(state.rate()) == self.rate {
            self.state = Some(state);
        } else if self.state.is_none() {
            // The rate changed while it was out: the session ignores this
            // score; the next window starts from fresh state.
            self.state = self.rate.map(|r| Box::new(SileroState::new(r)));
        }
        session.handle_score(now, p);
        self.send(session, now);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use media_core::{
        CallConfig, CallId, EndpointConfig, EndpointEvent, Endpointer, Event, Frame, Transcribe,
    };

    use super::*;
    use crate::speech::vad::{SileroModel, silero_shape};

    fn models() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    fn library() -> PathBuf {
        models().join("onnxruntime/libonnxruntime.so.1.31.1")
    }

    fn fixture() -> (SampleRate, Vec<i16>) {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/speech/turns.8k.wav");
        let a = crate::wav::read(&path).expect("fixture WAV");
        (a.rate, a.samples)
    }

    /// (start, end) of each turn with Silero scoring in place.
    fn inline_turns(rate: SampleRate, samples: &[i16]) -> Vec<(Time, Time)> {
        let model = SileroModel::load(&library(), &models().join("silero/silero_vad.onnx"), 1)
            .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py first"));
        let mut e = Endpointer::new(EndpointConfig::default(), Box::new(model.detector(rate)));
        let mut turns = Vec::new();
        let mut now = Time::ZERO;
        for chunk in samples.chunks(rate.frame_samples()) {
            now = now + rate.duration_of(chunk.len());
            while let Some(d) = e.poll_timeout().filter(|d| *d <= now) {
                e.handle_timeout(d);
            }
            e.handle_audio(now, Frame::new(rate, chunk));
            while let Some(ev) = e.poll_event() {
                if let EndpointEvent::TurnEnded(t) = ev {
                    turns.push((t.speech_start, t.speech_end));
                }
            }
        }
        e.finish(now + Duration::from_secs(3));
        while let Some(ev) = e.poll_event() {
            if let EndpointEvent::TurnEnded(t) = ev {
                turns.push((t.speech_start, t.speech_end));
            }
        }
        turns
    }

    #[tokio::test]
    async fn a_session_scoring_on_the_threads_finds_the_turns_silero_finds_in_place() {
        let (rate, samples) = fixture();
        let want = inline_turns(rate, &samples);
        assert!(want.len() >= 3, "the fixture has several turns");
        let threads = VadThreads::start(&library(), &models().join("silero/silero_vad.onnx"), 2)
            .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py first"));
        let (vad_rate, window) = silero_shape(rate);
        let mut session =
            Session::new(Time::ZERO, CallConfig::default(), Box::new(Transcribe)).with_endpointer(
                Endpointer::scored_elsewhere(EndpointConfig::default(), vad_rate, window),
            );
        let mut listening = Listening::new(Arc::clone(&threads));
        session.handle_start(Time::ZERO, CallId(uuid::Uuid::new_v4()));
        let mut got = Vec::new();
        let mut now = Time::ZERO;
        let mut drain = |session: &mut Session, listening: &mut Listening, now: Time| {
            // Frames out (the keep-alive silence) are not this test's.
            while session.poll_transmit(now).is_some() {}
            while let Some(ev) = session.poll_event() {
                match ev {
                    Event::Score { rate, window } => listening.submit(session, now, rate, window),
                    Event::Transcribe { audio, .. } => {
                        got.push((audio.speech_start, audio.speech_end));
                    }
                    _ => {}
                }
            }
        };
        for chunk in samples.chunks(rate.frame_samples()) {
            now = now + rate.duration_of(chunk.len());
            while session.poll_timeout().is_some_and(|d| d <= now) {
                session.handle_timeout(now);
                drain(&mut session, &mut listening, now);
            }
            session.handle_audio(now, Frame::new(rate, chunk));
            drain(&mut session, &mut listening, now);
            // The thread answers while the next frame is on its way.
            while listening.waiting() {
                let scored = listening.next().await.expect("a score");
                listening.take(&mut session, now, scored);
                drain(&mut session, &mut listening, now);
            }
        }
        let end = now + Duration::from_secs(3);
        while now < end {
            now = now + Duration::from_millis(20);
            session.handle_timeout(now);
            drain(&mut session, &mut listening, now);
        }
        assert_eq!(got, want);
        assert_eq!(threads.refused(), 0);
        assert!(threads.scored() as usize >= samples.len() / window - 1);
    }
}
