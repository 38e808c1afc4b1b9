//! A typed client for the Asterisk REST Interface (ARI), as of Asterisk 22.
//!
//! Two halves, usable apart:
//! - [`Client`]: REST requests for channels (answer, hangup, continue,
//!   redirect, variables, external media), bridges (create, add and remove
//!   channels, destroy, play) and playbacks.
//! - [`Events`]: the `/ari/events` websocket for one Stasis application,
//!   reconnected with backoff, delivering typed [`Event`]s through a
//!   bounded channel.
//!
//! Unknown event types and unknown fields are carried or ignored, never
//! fatal; a malformed message is reported and skipped.
//!
//! ```no_run
//! use ari_client::{AriConfig, Client, Delivery, Event, Events, Reconnect};
//!
//! # async fn demo() -> Result<(), ari_client::AriError> {
//! let config = AriConfig::new("http://127.0.0.1:8088/ari", "hark", "secret", "hark")?;
//! let client = Client::new(config.clone())?;
//! let mut events = Events::connect(config, 256, Reconnect::default());
//! while let Some(delivery) = events.recv().await {
//!     if let Delivery::Event(event) = delivery {
//!         if let Event::StasisStart { channel, .. } = *event {
//!             client.answer(&channel.id).await?;
//!             client.hangup(&channel.id, "normal").await?;
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - `config`: where Asterisk is, credentials, the application.
//! - `model`: the resources (Channel, Bridge, Playback, Variable).
//! - `event`: the events, parsed from websocket text.
//! - `rest`: the REST client.
//! - `stream`: the events websocket with reconnect.
//! - `error`: REST errors.
//! - `fake` (feature `fake`): a scripted fake Asterisk for tests.
//!
//! # Features
//! - `client` (default): the REST client and the events websocket. Without
//!   it the crate is only the models and [`Event::parse`], with no I/O
//!   dependencies.
//! - `fake`: the fake Asterisk.
#![forbid(unsafe_code)]

#[cfg(feature = "client")]
mod config;
#[cfg(feature = "client")]
mod error;
mod event;
mod model;
#[cfg(feature = "client")]
mod rest;
#[cfg(feature = "client")]
mod stream;

#[cfg(feature = "fake")]
pub mod fake;

#[cfg(feature = "client")]
pub use config::AriConfig;
#[cfg(feature = "client")]
pub use error::AriError;
pub use event::{Event, EventError, Meta};
pub use model::{
    Bridge, CallerId, Channel, DialplanLocation, Encapsulation, ExternalMedia, Playback, Variable,
};
#[cfg(feature = "client")]
pub use rest::{Client, DialplanTarget};
#[cfg(feature = "client")]
pub use stream::{Delivery, Events, Reconnect};
