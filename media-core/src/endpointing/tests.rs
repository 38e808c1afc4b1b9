//! The endpointer on scripted VAD probabilities.
use super::*;
use crate::vad::VadError;

/// A VAD that replays a script of probabilities, one per window.
#[derive(Debug)]
struct Scripted {
    probs: Vec<f32>,
    next: usize,
}

impl Vad for Scripted {
    fn rate(&self) -> SampleRate {
        SampleRate::HZ_8000
    }
    fn window_samples(&self) -> usize {
        256
    }
    fn probability(&mut self, _w: &[i16]) -> Result<f32, VadError> {
        let p = self.probs.get(self.next).copied().unwrap_or(0.0);
        self.next += 1;
        Ok(p)
    }
    fn reset(&mut self) {}
}

/// Runs `probs` (one per 32 ms window) through an endpointer, window
/// index as the sample value, then 3 s of nothing. Returns the events.
fn run(probs: &[f32], config: EndpointConfig) -> Vec<EndpointEvent> {
    let mut e = Endpointer::new(
        config,
        Box::new(Scripted {
            probs: probs.to_vec(),
            next: 0,
        }),
    );
    let mut events = Vec::new();
    let mut t = 0u64;
    for i in 0..probs.len() {
        t += 32_000;
        let w = vec![i as i16; 256];
        e.handle_audio(Time::from_micros(t), Frame::new(SampleRate::HZ_8000, &w));
        while let Some(ev) = e.poll_event() {
            events.push(ev);
        }
    }
    // The line goes quiet with no frames at all: timers end the turn.
    let end = Time::from_micros(t + 3_000_000);
    while let Some(d) = e.poll_timeout() {
        if d > end {
            break;
        }
        e.handle_timeout(d);
    }
    e.finish(end);
    while let Some(ev) = e.poll_event() {
        events.push(ev);
    }
    events
}

/// Like [`run`], with window `i`'s samples at amplitude `amps[i]`
/// (a square wave, so its level is exact).
fn run_levels(probs: &[f32], amps: &[i16], config: EndpointConfig) -> Vec<EndpointEvent> {
    let mut e = Endpointer::new(
        config,
        Box::new(Scripted {
            probs: probs.to_vec(),
            next: 0,
        }),
    );
    let mut events = Vec::new();
    let mut t = 0u64;
    for &a in amps.iter().take(probs.len()) {
        t += 32_000;
        let w: Vec<i16> = (0..256).map(|k| if k % 2 == 0 { a } else { -a }).collect();
        e.handle_audio(Time::from_micros(t), Frame::new(SampleRate::HZ_8000, &w));
        while let Some(ev) = e.poll_event() {
            events.push(ev);
        }
        if let Some(d) = e.poll_timeout().filter(|d| d.as_micros() <= t) {
            e.handle_timeout(d);
        }
    }
    let end = Time::from_micros(t + 3_000_000);
    while let Some(d) = e.poll_timeout() {
        if d > end {
            break;
        }
        e.handle_timeout(d);
        while let Some(ev) = e.poll_event() {
            events.push(ev);
        }
    }
    events
}

#[test]
fn the_pause_counts_from_the_end_of_audible_speech() {
    let config = EndpointConfig {
        hangover: Duration::from_millis(400),
        ..EndpointConfig::default()
    };
    let ms = |t: Time| t.as_micros() / 1_000;
    // Loud speech in windows 10..40 (ends at 40 x 32 = 1280 ms); the
    // VAD trails on, quieter than 30 dB below the speech.
    let mut amps = vec![0i16; 10];
    amps.extend(vec![8_000; 30]);
    amps.extend(vec![30; 60]);
    // A short VAD tail (windows 40, 41: to 1344 ms): the pause counts
    // from the loud end, 1280 ms.
    let mut p = vec![0.0; 10];
    p.extend(vec![0.9; 32]);
    p.extend(vec![0.0; 58]);
    let t = run_levels(&p, &amps, config);
    let turn = turns(&t)[0];
    assert_eq!(ms(turn.speech_end), 1_280, "old rule: 1344");
    assert!(ms(turn.decided_at) >= 1_680 && ms(turn.decided_at) < 1_680 + 32);
    // A long VAD tail (to window 47: 1536 ms): never more than 160 ms
    // before the VAD's end, so the pause counts from 1376 ms.
    let mut p = vec![0.0; 10];
    p.extend(vec![0.9; 38]);
    p.extend(vec![0.0; 52]);
    let t = run_levels(&p, &amps, config);
    let turn = turns(&t)[0];
    assert_eq!(ms(turn.speech_end), 1_536 - 160);
    assert!(ms(turn.decided_at) >= 1_776);
    // Digital silence (no level to judge): the VAD's end, as before.
    let t = run_levels(&p, &[0i16; 100], config);
    assert_eq!(ms(turns(&t)[0].speech_end), 1_536);
}

fn turns(events: &[EndpointEvent]) -> Vec<&Turn> {
    events
        .iter()
        .filter_map(|e| match e {
            EndpointEvent::TurnEnded(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// Events of an endpointer whose VAD runs elsewhere: each window's
/// score comes back `lag` after the window (while the next frames keep
/// coming), from the same script.
fn run_elsewhere(probs: &[f32], config: EndpointConfig, lag: u64) -> Vec<EndpointEvent> {
    let mut e = Endpointer::scored_elsewhere(config, SampleRate::HZ_8000, 256);
    let mut vad = Scripted {
        probs: probs.to_vec(),
        next: 0,
    };
    let mut due: VecDeque<(u64, Vec<i16>)> = VecDeque::new();
    let mut events = Vec::new();
    let mut t = 0u64;
    let end = 32_000 * probs.len() as u64 + 3_000_000;
    let mut next_window = 32_000;
    while t <= end {
        // The next thing: a window, a score, or the endpointer's timer.
        let timer = e.poll_timeout().map(|d| d.as_micros());
        let score = due.front().map(|d| d.0);
        let window = (next_window <= 32_000 * probs.len() as u64).then_some(next_window);
        let Some(at) = [timer, score, window].into_iter().flatten().min() else {
            break;
        };
        t = at;
        let now = Time::from_micros(t);
        if score == Some(t) {
            let (_, w) = due.pop_front().expect("due");
            e.handle_score(vad.probability(&w).ok());
        } else if window == Some(t) {
            let i = (t / 32_000 - 1) as i16;
            e.handle_audio(now, Frame::new(SampleRate::HZ_8000, &[i; 256]));
            next_window += 32_000;
        } else {
            e.handle_timeout(now);
        }
        while let Some(ev) = e.poll_event() {
            match ev {
                EndpointEvent::Score { samples, .. } => due.push_back((t + lag, samples)),
                other => events.push(other),
            }
        }
    }
    e.finish(Time::from_micros(end));
    while let Some(ev) = e.poll_event() {
        events.push(ev);
    }
    events
}

#[test]
fn a_vad_elsewhere_gives_the_turns_of_the_vad_in_place() {
    // Speech, a pause shorter than the hangover, speech, a long pause,
    // a blip, speech to the end.
    let mut probs = vec![0.0; 5];
    probs.extend([0.9; 20]);
    probs.extend([0.1; 6]);
    probs.extend([0.9; 15]);
    probs.extend([0.0; 30]);
    probs.extend([0.9; 2]);
    probs.extend([0.0; 20]);
    probs.extend([0.9; 12]);
    let config = EndpointConfig::default();
    let inline = run(&probs, config);
    let turns = |ev: &[EndpointEvent]| -> Vec<(Time, Time, TurnEnd, Vec<i16>)> {
        ev.iter()
            .filter_map(|e| match e {
                EndpointEvent::TurnEnded(t) => {
                    Some((t.speech_start, t.speech_end, t.reason, t.samples.clone()))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(turns(&inline).len(), 2, "the blip is no turn");
    // Scores a moment late, or more than a window late: the same turns.
    for lag in [300, 20_000, 45_000] {
        let elsewhere = run_elsewhere(&probs, config, lag);
        assert!(
            turns(&elsewhere) == turns(&inline),
            "lag {lag} us: other turns"
        );
        let starts = |ev: &[EndpointEvent]| {
            ev.iter()
                .filter(|e| matches!(e, EndpointEvent::SpeechStarted { .. }))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(starts(&elsewhere), starts(&inline), "lag {lag} us");
    }
}

#[test]
fn a_short_blip_is_not_a_turn() {
    // 2 voiced windows = 64 ms < 200 ms.
    let mut p = vec![0.0; 20];
    p.extend([0.9, 0.9]);
    p.extend(vec![0.0; 30]);
    assert!(run(&p, EndpointConfig::default()).is_empty());
}

#[test]
fn a_turn_has_pre_roll_and_ends_after_the_hangover() {
    let mut p = vec![0.0; 20];
    p.extend(vec![0.9; 30]); // windows 20..50 voiced (960 ms)
    p.extend(vec![0.1; 40]);
    let events = run(&p, EndpointConfig::default());
    assert_eq!(
        events[0],
        EndpointEvent::SpeechStarted {
            at: Time::from_micros(20 * 32_000)
        }
    );
    let t = turns(&events);
    assert_eq!(t.len(), 1);
    let turn = t[0];
    assert_eq!(turn.reason, TurnEnd::Silence);
    // Pre-roll: 300 ms = 2400 samples = 9.4 windows before window 20.
    assert_eq!(turn.samples[0], 10);
    // Last voiced window is 49; the trimmed tail keeps 150 ms after it.
    let last_voiced_sample = turn.samples.iter().rposition(|&s| s == 49).unwrap();
    assert_eq!(turn.samples.len() - 1 - last_voiced_sample, 1_200);
    assert_eq!(turn.speech_end, Time::from_micros(50 * 32_000));
    // Decided one hangover (700 ms, rounded up to whole windows) later.
    let delay = turn.decided_at - turn.speech_end;
    assert!(delay >= Duration::from_millis(700) && delay < Duration::from_millis(740));
}

#[test]
fn hysteresis_keeps_a_soft_middle_in_the_turn() {
    let mut p = vec![0.9; 10];
    p.extend(vec![0.4; 40]); // above the silence threshold: still talking
    p.extend(vec![0.9; 5]);
    let t = run(&p, EndpointConfig::default());
    assert_eq!(turns(&t).len(), 1);
}

#[test]
fn a_pause_shorter_than_the_hangover_does_not_split_the_turn() {
    let mut p = vec![0.9; 10];
    p.extend(vec![0.0; 15]); // 480 ms pause
    p.extend(vec![0.9; 10]);
    let events = run(&p, EndpointConfig::default());
    assert_eq!(turns(&events).len(), 1);
    let mut p = vec![0.9; 10];
    p.extend(vec![0.0; 30]); // 960 ms pause
    p.extend(vec![0.9; 10]);
    assert_eq!(turns(&run(&p, EndpointConfig::default())).len(), 2);
}

#[test]
fn a_long_monologue_is_cut_at_max_turn_and_goes_on() {
    let config = EndpointConfig {
        max_turn: Duration::from_secs(2),
        ..EndpointConfig::default()
    };
    let p = vec![0.9; 160]; // 5.1 s of speech
    let events = run(&p, config);
    let t = turns(&events);
    assert!(t.len() >= 2, "{} turns", t.len());
    assert_eq!(t[0].reason, TurnEnd::MaxLength);
    assert!(t[0].duration() <= Duration::from_millis(2_100));
}

#[test]
fn hanging_up_mid_turn_keeps_the_turn() {
    let mut e = Endpointer::new(
        EndpointConfig::default(),
        Box::new(Scripted {
            probs: vec![0.9; 20],
            next: 0,
        }),
    );
    for i in 1..=20u64 {
        e.handle_audio(
            Time::from_micros(i * 32_000),
            Frame::new(SampleRate::HZ_8000, &[1; 256]),
        );
    }
    e.finish(Time::from_micros(700_000));
    let mut last = None;
    while let Some(ev) = e.poll_event() {
        last = Some(ev);
    }
    match last {
        Some(EndpointEvent::TurnEnded(t)) => assert_eq!(t.reason, TurnEnd::Finished),
        other => panic!("{other:?}"),
    }
}

#[test]
fn audio_at_another_rate_is_resampled_for_the_vad() {
    let mut e = Endpointer::new(
        EndpointConfig::default(),
        Box::new(Scripted {
            probs: vec![0.9; 100],
            next: 0,
        }),
    );
    // 1 s of 16 kHz in 20 ms frames: 8000 samples at 8 kHz = 31 windows.
    for i in 1..=50u64 {
        e.handle_audio(
            Time::from_micros(i * 20_000),
            Frame::new(SampleRate::HZ_16000, &[100; 320]),
        );
    }
    assert!(e.is_speaking());
    assert_eq!(e.vad_errors(), 0);
}

/// Like `run`, but wakes up at every deadline between windows (as the
/// driver does), with `gap_after` windows followed by `gap` of no frames.
fn run_live(probs: &[f32], config: EndpointConfig) -> Vec<(Time, EndpointEvent)> {
    let mut e = Endpointer::new(
        config,
        Box::new(Scripted {
            probs: probs.to_vec(),
            next: 0,
        }),
    );
    let mut out = Vec::new();
    let mut t = 0u64;
    let step = |e: &mut Endpointer, until: Time, out: &mut Vec<(Time, EndpointEvent)>| {
        while let Some(d) = e.poll_timeout().filter(|&d| d <= until) {
            e.handle_timeout(d);
            while let Some(ev) = e.poll_event() {
                out.push((d, ev));
            }
        }
    };
    for i in 0..probs.len() {
        t += 32_000;
        let now = Time::from_micros(t);
        step(&mut e, now, &mut out);
        e.handle_audio(now, Frame::new(SampleRate::HZ_8000, &[i as i16; 256]));
        while let Some(ev) = e.poll_event() {
            out.push((now, ev));
        }
    }
    step(&mut e, Time::from_micros(t + 3_000_000), &mut out);
    out
}

#[test]
fn a_pause_is_previewed_once_and_matches_the_turn() {
    let config = EndpointConfig {
        hangover: Duration::from_millis(400),
        preview: Some(Duration::from_millis(200)),
        ..EndpointConfig::default()
    };
    // Speech, a 256 ms pause (previewed, not an end), speech, silence.
    let mut probs = vec![0.9; 10];
    probs.extend([0.0; 8]);
    probs.extend([0.9; 10]);
    probs.extend([0.0; 30]);
    let events = run_live(&probs, config);
    let previews: Vec<&Turn> = events
        .iter()
        .filter_map(|(_, e)| match e {
            EndpointEvent::Preview(t) => Some(t),
            _ => None,
        })
        .collect();
    let turns: Vec<&Turn> = events
        .iter()
        .filter_map(|(_, e)| match e {
            EndpointEvent::TurnEnded(t) => Some(t),
            _ => None,
        })
        .collect();
    // One turn; a preview for each pause of 200 ms or more.
    assert_eq!(turns.len(), 1);
    assert_eq!(previews.len(), 2);
    // The first pause's preview is not the turn; the second's is.
    assert_ne!(previews[0].speech_end, turns[0].speech_end);
    assert_eq!(previews[1].speech_start, turns[0].speech_start);
    assert_eq!(previews[1].speech_end, turns[0].speech_end);
    assert_eq!(previews[1].samples, turns[0].samples);
    // The preview came 200 ms before the turn was decided.
    let at = |e: &EndpointEvent| events.iter().find(|(_, x)| x == e).map(|(t, _)| *t);
    let preview_at = at(&EndpointEvent::Preview(previews[1].clone())).unwrap();
    let turn_at = at(&EndpointEvent::TurnEnded(turns[0].clone())).unwrap();
    assert_eq!(turn_at - preview_at, Duration::from_millis(200));
}
