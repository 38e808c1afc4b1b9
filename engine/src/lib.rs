//! hark, the engine: the daemon that runs beside Asterisk.
//!
//! The pure media logic lives in `media-core`; this crate adds everything
//! with I/O: the configuration file, the AudioSocket server with one driver
//! task per call, the `dial` client, WAV files, and systemd integration.
//!
//! # Layout
//! Grouped by concern; a module imports only those below it in this list.
//! - `cli` (in the binary): the `hark` command, one file per subcommand.
//! - `server`: start-up, listeners, graceful shutdown ([`Server`]).
//! - `transport`: how calls arrive: AudioSocket accept loops, SIP mode
//!   (`sip-bridge`), Stasis mode (`ari-client`), the RTP port range.
//! - `api`: the REST API.
//! - `admission`: when a connection becomes a call: what transports share
//!   (`Shared`), places for connections waiting for their UUID, call
//!   slots, refusals, the UUID book, and starting a call's driver.
//! - `driver`: the per-call task that owns the call's leg (AudioSocket or
//!   RTP) and its media-core `Session`.
//! - `speaking`: a talking call's model replies and speech, in order.
//! - `recording`, [`leads`]: a call's records; lead capture.
//! - [`speech`]: the models, each on inference threads of its own: ONNX
//!   Runtime, Silero VAD, STT (Whisper or a provider), TTS (Piper or a
//!   provider).
//! - [`llm`]: LLM providers behind one streaming interface.
//! - [`chat`]: `hark chat`, a text conversation through an agent's router.
//! - [`store`], `registry`: MySQL/SQLite; registrations and outcomes.
//! - [`config`]: `hark.toml` -> validated [`Config`].
//! - [`preflight`]: what `check-config` and `serve` check before starting.
//! - [`dial`]: the AudioSocket client behind `hark dial`, the e2e tests and `loadgen`.
//! - [`wav`], [`models`], [`stats`], [`systemd`], [`secret`], `tls`: WAV
//!   files, `hark models`, hdrhistogram percentiles, `sd_notify`, secrets,
//!   the one rustls crypto provider (ring).
//!
//! # Concurrency
//! One accept task per listener, one driver task per call; they share only
//! the admission state (a semaphore for the call cap, two mutexes each taken
//! once per connection) and a `watch` channel (the shutdown phase). No lock
//! is taken per frame.
#![deny(unsafe_code)]

pub mod chat;
pub mod config;
pub mod dial;
pub mod llm;
pub mod models;
pub mod preflight;
pub mod secret;
pub mod speech;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod wav;

mod admission;
mod api;
mod driver;
pub mod leads;
mod recording;
mod registry;
mod server;
mod speaking;
mod tls;
mod transport;

pub use api::{OPENAPI, ROUTES};
pub use config::{Config, ConfigError};
pub use server::{ServeError, ServeReport, Server};
