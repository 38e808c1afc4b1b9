//! hark, the engine: the daemon that runs beside Asterisk.
//!
//! The pure media logic lives in `media-core`; this crate adds everything
//! with I/O: the configuration file, the AudioSocket server with one driver
//! task per call, the `dial` client, WAV files, and systemd integration.
//!
//! # Layout
//! - [`config`]: `hark.toml` -> validated [`Config`].
//! - [`chat`]: `hark chat`, a text conversation through an agent's router.
//! - `server`: listeners, graceful shutdown ([`Server`]).
//! - `admission`: when a connection becomes a call: places for connections
//!   waiting for their UUID, call slots, refusals, the UUID book.
//! - [`preflight`]: what `check-config` and `serve` check before starting.
//! - `driver`: the per-call task that owns the socket and the `Call`.
//! - `speaking`: a talking call's model replies and speech, in order.
//! - [`dial`]: the AudioSocket client behind `hark dial`, the e2e tests and `loadgen`.
//! - [`wav`]: WAV in and out.
//! - [`models`]: `hark models list|fetch`.
//! - [`stats`]: hdrhistogram percentiles.
//! - [`systemd`]: `sd_notify` readiness.
//! - [`onnx`]: the ONNX Runtime, loaded once from a shared library.
//! - [`vad`]: Silero VAD behind media-core's `Vad` trait.
//! - [`speech`]: the VAD model and transcriber shared by listening calls.
//! - [`tts`]: speech out: Piper, an OpenAI-compatible provider, streaming.
//! - [`llm`]: LLM providers behind one streaming interface.
//! - [`stt`]: speech to text: local Whisper and an OpenAI-compatible provider.
//! - `sip`: SIP mode, hark as a SIP endpoint (`sip-bridge`).
//! - `stasis`: Stasis mode, calls driven through ARI (`ari-client`).
//! - `tls`: the one rustls crypto provider (ring).
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
pub mod onnx;
pub mod preflight;
pub mod secret;
pub mod speech;
pub mod stats;
pub mod store;
pub mod stt;
pub mod systemd;
pub mod tts;
pub mod vad;
pub mod wav;

mod admission;
mod api;
mod driver;
pub mod leads;
mod recording;
mod registry;
mod rtp_ports;
mod server;
mod sip;
mod speaking;
mod stasis;
mod tls;

pub use api::{OPENAPI, ROUTES};
pub use config::{Config, ConfigError};
pub use server::{ServeError, ServeReport, Server};
