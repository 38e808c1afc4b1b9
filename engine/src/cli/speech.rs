//! `hark models` and `hark say`: the models folder and Piper by hand.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hark::Config;
use media_core::SampleRate;

use crate::{ModelsAction, runtime};

/// The models folder: the flag, else hark.toml's, else ./models.
pub(crate) fn models_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| {
        Config::load(Path::new("hark.toml"))
            .map(|c| c.speech.models_dir)
            .unwrap_or_else(|_| PathBuf::from("models"))
    })
}

pub(crate) fn say(
    text: &str,
    output: &Path,
    rate: u32,
    length_scale: Option<f32>,
    voice: Option<PathBuf>,
    dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use hark::speech::tts::{PiperSynthesizer, PiperVoice, SpeechStream, Synthesizer};
    let rate =
        SampleRate::new(rate).with_context(|| format!("--rate {rate} is not a sample rate"))?;
    if let Some(l) = length_scale
        && !(0.3..=3.0).contains(&l)
    {
        bail!("--length-scale {l} is out of range: use 0.3 (fast) to 3.0 (slow)");
    }
    if text.trim().is_empty() {
        bail!("nothing to say: the text is empty");
    }
    let dir = models_dir(dir);
    let model = voice.unwrap_or_else(|| dir.join("piper/en_US-joe-medium.onnx"));
    let library = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("onnxruntime/libonnxruntime.so.1.31.1"));
    let loaded = std::time::Instant::now();
    let voice = PiperVoice::load(&library, &model, 1, 2)?;
    let load_time = loaded.elapsed();
    let synth: std::sync::Arc<dyn Synthesizer> =
        std::sync::Arc::new(PiperSynthesizer::new(voice, length_scale));
    let name = synth.name().to_string();
    let (audio, first, total) = runtime()?.block_on(async move {
        let start = std::time::Instant::now();
        let mut stream = SpeechStream::start(synth, rate, Duration::from_millis(300));
        stream.push(text.to_string()).await?;
        stream.finish();
        let mut audio = Vec::new();
        let mut first = None;
        while let Some(chunk) = stream.next_audio().await {
            let chunk = chunk?.audio;
            if first.is_none() && !chunk.is_empty() {
                first = Some(start.elapsed());
            }
            audio.extend_from_slice(&chunk);
        }
        anyhow::Ok((audio, first, start.elapsed()))
    })?;
    hark::wav::write(output, rate, &audio)?;
    let secs = audio.len() as f64 / f64::from(rate.hz());
    println!(
        "{name}: {secs:.2} s of audio at {} Hz -> {}",
        rate.hz(),
        output.display()
    );
    println!(
        "  voice loaded in {:.0} ms; first audio after {}; total {:.0} ms (real-time factor {:.3})",
        load_time.as_secs_f64() * 1e3,
        first
            .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into()),
        total.as_secs_f64() * 1e3,
        if secs > 0.0 {
            total.as_secs_f64() / secs
        } else {
            0.0
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn models(action: ModelsAction, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = models_dir(dir);
    match action {
        ModelsAction::List => {
            let files = hark::models::list(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            let mut missing = false;
            for f in files {
                let state = match f.state {
                    hark::models::ModelState::Ok => "ok",
                    hark::models::ModelState::Unverified => "present (no checksum)",
                    hark::models::ModelState::Mismatch => "CHECKSUM MISMATCH",
                    hark::models::ModelState::Missing => {
                        missing = true;
                        "missing"
                    }
                };
                let size = f
                    .size
                    .map(|s| format!("{:.1} MB", s as f64 / 1e6))
                    .unwrap_or_default();
                println!("{state:<22} {size:>9}  {}  ({})", f.path.display(), f.what);
            }
            if missing {
                println!(
                    "fetch what is missing with: hark models fetch (or python3 models/fetch.py)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsAction::Fetch { only } => {
            let status = hark::models::fetch(&dir, only.as_deref()).map_err(anyhow::Error::msg)?;
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
