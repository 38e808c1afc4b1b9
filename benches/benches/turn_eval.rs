//! How turns end, on real recorded speech: smart turn-taking (Smart Turn
//! v3.2 and the preview's words, `turn = "smart"`) against silence only
//! (the baseline, `hangover_ms` 400), in the same run, on the same items.
//!
//! The set is built from Debian's `asterisk-core-sounds-en-wav` (real
//! human prompts): every prompt of 1.5 to 5 s, taken in name order, one in
//! `STEP`. Each prompt gives four items: as recorded (the sentence end),
//! and with a pause of 300, 600 or 1,000 ms inserted at its deepest dip in
//! level between 30 % and 80 % of its speech (a word boundary inside the
//! sentence). Each item is one call of its own through the real
//! `Session`: Silero VAD, local Whisper (tiny.en) on previews and turns,
//! the turn model on each pause. The call runs on a virtual clock; each
//! inference's result comes back after the wall time it really took, so
//! the race between the caller going on and the judgement is as in a
//! call (one call at a time: no contention).
//!
//! Prints, per mode: premature turn ends (an item heard as more than one
//! turn) in % by inserted pause; for the sentence ends, the time from the
//! end of speech to the text reaching the agent (endpointing plus STT, the
//! part of voice-to-voice that turn-taking decides), p50/p95; and the word
//! error rate of the items whose wording is in
//! `testdata/speech/asterisk-prompts.tsv`.
//!
//! Usage: cargo bench -p hark-benches --bench turn_eval
// A benchmark's setup may panic: a broken rig must stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hark::config::{smart_endpointing, voice_endpointing};
use hark::speech::stt::{SttRequest, Transcriber, WhisperConfig, WhisperTranscriber, word_errors};
use hark::speech::turn::TurnModel;
use hark::speech::vad::SileroModel;
use hdrhistogram::Histogram;
use media_core::{
    Agent, CallConfig, CallId, Endpointer, Event, Frame, Heard, Playout, SampleRate, Session,
    SmartTurn, Time, Transcribed, Turn, TurnId,
};

/// One prompt in this many (the rest are for other sets and checks).
const STEP: usize = 3;
const PAUSES: [u64; 3] = [300, 600, 1_000];
const FRAME: Duration = Duration::from_millis(20);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Remembers what reached the agent, and when.
#[derive(Debug, Default, Clone)]
struct Ear(Arc<Mutex<Vec<(Time, Heard)>>>);

impl Agent for Ear {
    fn handle_audio(&mut self, _: Time, _: Frame<'_>, _: &mut Playout) {}
    fn handle_transcript(&mut self, now: Time, heard: Heard, _: &mut Playout) {
        self.0.lock().unwrap().push((now, heard));
    }
}

/// 10 ms levels (mean square).
fn levels(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks(80)
        .map(|b| b.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / b.len() as f64)
        .collect()
}

/// Where speech starts and ends (10 ms blocks within 35 dB of the loudest).
fn speech_span(levels: &[f64]) -> Option<(usize, usize)> {
    let peak = levels.iter().cloned().fold(0.0, f64::max);
    let floor = peak / 10f64.powf(3.5);
    let first = levels.iter().position(|&l| l > floor)?;
    let last = levels.iter().rposition(|&l| l > floor)?;
    Some((first, last))
}

/// The deepest dip (over 30 ms) between 30 % and 80 % of the speech, as a
/// sample position.
fn word_gap(samples: &[i16]) -> Option<usize> {
    let lv = levels(samples);
    let (a, b) = speech_span(&lv)?;
    let (from, to) = (a + (b - a) * 3 / 10, a + (b - a) * 8 / 10);
    (from..to.saturating_sub(2))
        .min_by(|&i, &j| {
            let e = |k: usize| lv[k] + lv[k + 1] + lv[k + 2];
            e(i).total_cmp(&e(j))
        })
        .map(|i| (i + 1) * 80 + 40)
}

struct Item {
    prompt: String,
    /// Inserted pause, ms (0: as recorded).
    pause: u64,
    audio: Vec<i16>,
    /// Where the caller's speech ends in `audio`.
    speech_end: Duration,
}

fn items() -> (Vec<Item>, usize) {
    let dir = Path::new("/usr/share/asterisk/sounds/en");
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}: install asterisk-core-sounds-en-wav (scripts/test)"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    let mut prompts = 0;
    let lead = vec![0i16; 8 * 500];
    for path in names {
        let Ok(wav) = hark::wav::read(&path) else {
            continue;
        };
        let secs = wav.samples.len() as f64 / f64::from(wav.rate.hz());
        if wav.rate != SampleRate::HZ_8000 || !(1.5..=5.0).contains(&secs) {
            continue;
        }
        prompts += 1;
        if prompts % STEP != 0 {
            continue;
        }
        let Some(gap) = word_gap(&wav.samples) else {
            continue;
        };
        let Some((_, last)) = speech_span(&levels(&wav.samples)) else {
            continue;
        };
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        for pause in [0].into_iter().chain(PAUSES) {
            let mut audio = lead.clone();
            audio.extend_from_slice(&wav.samples[..gap]);
            audio.extend(std::iter::repeat_n(0i16, (pause * 8) as usize));
            audio.extend_from_slice(&wav.samples[gap..]);
            audio.extend(std::iter::repeat_n(0i16, 8 * 3_500));
            let speech_end = Duration::from_millis(500 + pause + (last as u64 + 1) * 10);
            out.push(Item {
                prompt: name.clone(),
                pause,
                audio,
                speech_end,
            });
        }
    }
    (out, prompts)
}

enum Task {
    Transcript(TurnId, Option<Transcribed>),
    Check(TurnId, Option<f32>),
}

struct Rig {
    silero: Arc<SileroModel>,
    whisper: WhisperTranscriber,
    turn: TurnModel,
    rt: tokio::runtime::Runtime,
}

impl Rig {
    fn transcribe(&self, turn: Turn) -> Option<Transcribed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.whisper
            .submit(SttRequest {
                call: CallId(uuid::Uuid::new_v4()),
                turn,
                reply: tx,
            })
            .unwrap();
        rx.blocking_recv().ok()?.ok().map(|t| Transcribed {
            text: t.text,
            confidence: t.confidence,
        })
    }

    /// Runs one item as a call; returns what reached the agent.
    fn call(&self, item: &Item, smart: bool) -> Vec<(Time, Heard)> {
        let endpoint = if smart {
            smart_endpointing()
        } else {
            voice_endpointing()
        };
        let ear = Ear::default();
        let silero = Arc::clone(&self.silero);
        let mut session =
            Session::new(Time::ZERO, CallConfig::default(), Box::new(ear.clone())).with_endpointer(
                Endpointer::new(endpoint, Box::new(silero.detector(SampleRate::HZ_8000))),
            );
        if smart {
            session = session.with_smart_turn(SmartTurn::default());
        }
        let mut tasks: BTreeMap<(Time, u64), Task> = BTreeMap::new();
        let mut seq = 0u64;
        let mut now = Time::ZERO;
        session.handle_start(now, CallId(uuid::Uuid::new_v4()));
        let frames: Vec<&[i16]> = item.audio.chunks(160).collect();
        let mut next_frame = 0usize;
        loop {
            // Carry out what the session asked for.
            while let Some(event) = session.poll_event() {
                let (at, task) = match event {
                    Event::Transcribe { turn, audio } => {
                        let t = Instant::now();
                        let text = self.transcribe(audio);
                        (now + t.elapsed(), Task::Transcript(turn, text))
                    }
                    Event::CheckTurn {
                        turn,
                        samples,
                        rate,
                    } => {
                        let t = Instant::now();
                        let p = self.rt.block_on(self.turn.complete(rate, samples)).ok();
                        (now + t.elapsed(), Task::Check(turn, p))
                    }
                    _ => continue,
                };
                seq += 1;
                tasks.insert((at, seq), task);
            }
            while session.poll_transmit(now).is_some() {}
            let frame_at = (next_frame < frames.len()).then(|| FRAME * (next_frame as u32 + 1));
            let next = [
                frame_at.map(|d| Time::ZERO + d),
                tasks.keys().next().map(|k| k.0),
                session.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            if next_frame >= frames.len() && tasks.is_empty() {
                break;
            }
            now = now.max(next);
            if frame_at.is_some_and(|d| Time::ZERO + d <= now) {
                session.handle_audio(now, Frame::new(SampleRate::HZ_8000, frames[next_frame]));
                next_frame += 1;
            }
            while let Some(entry) = tasks.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                match entry.remove() {
                    Task::Transcript(turn, text) => session.handle_transcript(now, turn, text),
                    Task::Check(turn, p) => session.handle_turn_check(now, turn, p),
                }
            }
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
        }
        std::mem::take(&mut *ear.0.lock().unwrap())
    }
}

fn main() {
    let models = root().join("models");
    let library = models.join("onnxruntime/libonnxruntime.so.1.31.1");
    let rig = Rig {
        silero: SileroModel::load(&library, &models.join("silero/silero_vad.onnx"), 1)
            .unwrap_or_else(|e| panic!("{e}\nrun models/fetch.py")),
        whisper: WhisperTranscriber::start(WhisperConfig {
            model: models.join("whisper/ggml-tiny.en.bin"),
            name: "tiny.en".into(),
            language: Some("en".into()),
            threads: 2,
            workers: 1,
            queue: 4,
            fit_window: true,
        })
        .unwrap_or_else(|e| panic!("{e}")),
        turn: TurnModel::load(
            &library,
            &models.join("smart-turn/smart-turn-v3.2-cpu.onnx"),
            1,
        )
        .unwrap(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    let truth: HashMap<String, String> =
        std::fs::read_to_string(root().join("testdata/speech/asterisk-prompts.tsv"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .skip(1)
            .filter_map(|l| l.split_once('\t'))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
    let (items, prompts) = items();
    let used = items.len() / (PAUSES.len() + 1);
    println!(
        "turn-taking on {used} real prompts (of {prompts} of 1.5-5 s, one in {STEP}), {} calls per mode\n",
        items.len()
    );
    let started = Instant::now();
    // HARK_TURN_EVAL_VERBOSE=1: every item's turns (prompt texts, for study).
    let verbose = std::env::var_os("HARK_TURN_EVAL_VERBOSE").is_some();
    for smart in [false, true] {
        let mode = if smart {
            "smart (Smart Turn + words, 200 ms / 2 s)"
        } else {
            "silence only (baseline, 400 ms)"
        };
        let mut split: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        let mut ready = Histogram::<u64>::new_with_bounds(1, 60_000, 3).unwrap();
        let (mut errors, mut words) = (0, 0);
        let mut never = 0;
        for item in &items {
            let heard = rig.call(item, smart);
            let heard: Vec<&(Time, Heard)> =
                heard.iter().filter(|(_, h)| !h.text.is_empty()).collect();
            let e = split.entry(item.pause).or_default();
            e.1 += 1;
            if heard.len() > 1 {
                e.0 += 1;
            }
            if verbose {
                let texts: Vec<&str> = heard.iter().map(|(_, h)| h.text.as_str()).collect();
                let last = heard
                    .last()
                    .map(|(at, _)| at.saturating_since(Time::ZERO + item.speech_end));
                println!(
                    "    {} +{} ms: {texts:?} (text {last:?} after the end)",
                    item.prompt, item.pause
                );
            }
            if item.pause == 0 {
                match heard.last() {
                    Some((at, _)) => {
                        let ms = at
                            .saturating_since(Time::ZERO + item.speech_end)
                            .as_millis();
                        ready.record((ms as u64).max(1)).unwrap();
                    }
                    None => never += 1,
                }
            }
            if let Some(reference) = truth.get(&item.prompt) {
                let text: Vec<&str> = heard.iter().map(|(_, h)| h.text.as_str()).collect();
                let (de, dw) = word_errors(reference, &text.join(" "));
                errors += de;
                words += dw;
            }
        }
        println!("{mode}:");
        for (pause, (bad, n)) in &split {
            let label = if *pause == 0 {
                "as recorded".to_string()
            } else {
                format!("{pause} ms pause inside")
            };
            println!(
                "  premature turn ends, {label:<20} {:>5.1} %  ({bad} of {n})",
                100.0 * *bad as f64 / *n as f64
            );
        }
        println!(
            "  end of speech -> text at the agent     p50 {} ms  p95 {} ms  max {} ms  (n={}, {never} never heard)",
            ready.value_at_quantile(0.5),
            ready.value_at_quantile(0.95),
            ready.max(),
            ready.len()
        );
        println!(
            "  WER on the items with known wording    {:.3} ({errors} of {words} words)\n",
            errors as f64 / words.max(1) as f64
        );
    }
    println!("took {:.0?}", started.elapsed());
}
