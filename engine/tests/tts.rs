//! Speech out with the real parts: Piper through ONNX Runtime, phonemes from
//! the espeak-ng program, and hark's own Whisper to check what was said.
//! Needs models/fetch.py and Debian's espeak-ng (scripts/test installs both).

// Test helpers may unwrap: a broken fixture must stop the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{hear, root, whisper_tiny};
use hark::speech::stt::word_errors;
use hark::speech::tts::{
    PiperSynthesizer, PiperVoice, PromptCache, SpeechStream, Synthesizer, normalize,
};
use media_core::SampleRate;

fn voice() -> Arc<PiperVoice> {
    PiperVoice::load(
        &root().join("models/onnxruntime/libonnxruntime.so.1.31.1"),
        &root().join("models/piper/en_US-joe-medium.onnx"),
        1,
        2,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn synth() -> Arc<dyn Synthesizer> {
    Arc::new(PiperSynthesizer::new(voice(), None))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const SENTENCES: &[&str] = &[
    "Good morning, thank you for calling.",
    "Your table for two is booked for tomorrow evening.",
    "The total comes to $12.50, including service.",
    "Please call us back on 555-123-4567.",
    "We open at 9:30 am on Saturday.",
    "Would you like me to transfer you to a person?",
    "Your appointment is on 2026-11-24 with Dr. Smith.",
    "I have cancelled your subscription and sent a confirmation.",
];

// Round trip: Piper speaks, Whisper tiny.en listens, both in this process.
// Measured over these 8 sentences at 16 kHz: 6.2-8.8 % WER across runs
// (Piper's output varies a little each time), most of it Whisper writing
// "November 24, 2026" where Piper said "November twenty-fourth, twenty
// twenty-six", and hearing "am" as "I am". The
// limit of 15 % leaves room for a slower or noisier build while failing on
// a wrong phoneme mapping, rate or normalization (those give 50 % or more).
const ROUND_TRIP_MAX_WER: f64 = 0.15;

#[test]
fn round_trip_through_whisper_is_within_the_wer_threshold() {
    let rt = rt();
    let synth = synth();
    let stt = whisper_tiny();
    let (mut errors, mut words) = (0, 0);
    for s in SENTENCES {
        let audio = rt
            .block_on(synth.synthesize(s.to_string(), SampleRate::HZ_16000))
            .unwrap();
        assert!(
            audio.len() > 16_000 / 2,
            "{s}: only {} samples",
            audio.len()
        );
        let heard = hear(&stt, SampleRate::HZ_16000, audio);
        // Whisper may write what Piper said in words ("9:30", "$12.50") or
        // spell it out: score against the spoken form and the written
        // sentence, and count the closer one.
        let spoken = word_errors(&normalize(s), &normalize(&heard));
        let written = word_errors(s, &heard);
        let (e, w) = if written.0 < spoken.0 {
            written
        } else {
            spoken
        };
        println!("{e}/{w}  said: {s}\n      heard: {heard}");
        errors += e;
        words += w;
    }
    let wer = errors as f64 / words as f64;
    println!("round trip WER {:.1} %", wer * 100.0);
    assert!(wer <= ROUND_TRIP_MAX_WER, "WER {wer:.3}");
}

#[test]
fn audio_starts_before_the_whole_text_has_arrived() {
    let rt = rt();
    rt.block_on(async {
        // A long max wait: the unfinished "And now " must not be spoken on
        // its own while the first sentence is synthesized on a busy machine
        // (400 ms failed once under a full test run).
        let mut stream = SpeechStream::start(synth(), SampleRate::HZ_8000, Duration::from_secs(5));
        stream.push("Hello there, ").await.unwrap();
        stream.push("thanks for calling. And now ").await.unwrap();
        // The first sentence is complete; the second is not, and no end yet.
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next_audio())
            .await
            .expect("first audio before the text is finished")
            .unwrap()
            .unwrap()
            .audio;
        assert!(first.len() > 4_000, "{} samples", first.len());
        stream.push("the rest of the reply.").await.unwrap();
        stream.finish();
        let second = stream.next_audio().await.unwrap().unwrap();
        assert!(
            second.text.trim().ends_with("the rest of the reply."),
            "{:?}",
            second.text
        );
        let second = second.audio;
        assert!(!second.is_empty());
        assert!(stream.next_audio().await.is_none());
    });
}

#[test]
fn cancel_drops_everything_at_once() {
    let rt = rt();
    rt.block_on(async {
        let mut stream =
            SpeechStream::start(synth(), SampleRate::HZ_8000, Duration::from_millis(400));
        for _ in 0..10 {
            stream
                .push("This is a sentence that will never be heard in full. ")
                .await
                .unwrap();
        }
        let _first = stream.next_audio().await.unwrap().unwrap();
        let t = Instant::now();
        stream.cancel();
        assert!(
            stream.next_audio().await.is_none(),
            "nothing queued survives"
        );
        assert!(t.elapsed() < Duration::from_millis(50));
        assert!(stream.push("more").await.is_err());
    });
}

#[test]
fn bad_input_gives_audio_or_a_clear_error_never_a_panic() {
    let rt = rt();
    let synth = synth();
    rt.block_on(async {
        assert!(
            synth
                .synthesize(String::new(), SampleRate::HZ_8000)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            synth
                .synthesize("🙂👍".into(), SampleRate::HZ_8000)
                .await
                .unwrap()
                .is_empty()
        );
        for odd in [
            "日本語のテキスト",
            "\u{0}\u{1}\u{7f}",
            "--help",
            "ÆØÅ café naïve",
        ] {
            let r = synth.synthesize(odd.into(), SampleRate::HZ_8000).await;
            assert!(r.is_ok(), "{odd:?}: {r:?}");
        }
        // 10 kB of text through the stream: chunked, spoken, no error.
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(230);
        assert!(long.len() > 10_000);
        let mut stream = SpeechStream::start(
            Arc::clone(&synth),
            SampleRate::HZ_8000,
            Duration::from_millis(300),
        );
        stream.push(long).await.unwrap();
        stream.finish();
        let mut chunks = 0;
        while let Some(c) = stream.next_audio().await {
            assert!(!c.unwrap().audio.is_empty());
            chunks += 1;
            if chunks == 3 {
                stream.cancel();
            }
        }
        assert!(chunks >= 3);
    });
}

#[test]
fn the_prompt_cache_synthesizes_once_per_rate() {
    let rt = rt();
    let synth = synth();
    let cache = rt
        .block_on(PromptCache::build(
            synth.as_ref(),
            &[
                ("greeting".into(), "Hello, how can I help?".into()),
                ("goodbye".into(), "Goodbye.".into()),
            ],
            &[SampleRate::HZ_8000, SampleRate::HZ_16000],
        ))
        .unwrap();
    assert_eq!(cache.len(), 4);
    let g8 = cache.get("greeting", SampleRate::HZ_8000).unwrap();
    let g16 = cache.get("greeting", SampleRate::HZ_16000).unwrap();
    // Piper's durations vary a little from run to run (noise_w): compare loosely.
    let (d8, d16) = (g8.len() as f64 / 8_000.0, g16.len() as f64 / 16_000.0);
    assert!((d16 / d8 - 1.0).abs() < 0.25, "{d8} s vs {d16} s");
    assert!(cache.get("hold", SampleRate::HZ_8000).is_none());
}

#[test]
fn hark_say_writes_a_wav_and_the_rate_setting_is_heard() {
    let dir = tempfile::tempdir().unwrap();
    let run = |scale: &str, name: &str| {
        let out = dir.path().join(name);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
            .args([
                "say",
                "Hello, this is hark speaking.",
                out.to_str().unwrap(),
                "--length-scale",
                scale,
            ])
            .arg("--models-dir")
            .arg(root().join("models"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("first audio after"));
        hark::wav::read(&out).unwrap()
    };
    let normal = run("1.0", "a.wav");
    // Piper's durations vary from run to run (noise_w): 1.4 against a 1.25
    // threshold failed once in CI, so the gap is wide.
    let slow = run("1.8", "b.wav");
    assert_eq!(normal.rate, SampleRate::HZ_8000);
    assert!(
        slow.samples.len() as f64 > normal.samples.len() as f64 * 1.25,
        "{} vs {} samples",
        slow.samples.len(),
        normal.samples.len()
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["say", "", "/tmp/never.wav"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("empty"));
}
