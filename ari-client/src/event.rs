//! Events from the `/ari/events` websocket, as Asterisk 22's `events.json`
//! describes them.
//!
//! Each message is a JSON object with a `type`. The types an application
//! like hark acts on are parsed into their own variants; every other type
//! becomes [`Event::Other`] with its raw JSON, so a new Asterisk event is
//! carried, not fatal. Text that is not a JSON object with a string `type`,
//! or a known type whose required fields are missing or of the wrong kind,
//! is an [`EventError`].

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::model::{Bridge, Channel, Playback};

/// One event from Asterisk.
// Variants carry whole resources as Asterisk sends them; the stream boxes
// each event, so the size difference costs nothing on the queue.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A channel entered the application.
    StasisStart {
        /// The common fields.
        meta: Meta,
        /// The arguments given to `Stasis(app,arg1,arg2...)`.
        args: Vec<String>,
        /// The channel.
        channel: Channel,
        /// The channel it replaces (after a masquerade), if any.
        replace_channel: Option<Channel>,
    },
    /// A channel left the application.
    StasisEnd {
        /// The common fields.
        meta: Meta,
        /// The channel.
        channel: Channel,
    },
    /// A DTMF digit was received.
    ChannelDtmfReceived {
        /// The common fields.
        meta: Meta,
        /// The digit: `0`-`9`, `A`-`E`, `#`, `*`.
        digit: String,
        /// How long it was pressed.
        duration_ms: i64,
        /// The channel.
        channel: Channel,
    },
    /// Someone asked for the channel to be hung up.
    ChannelHangupRequest {
        /// The common fields.
        meta: Meta,
        /// The Q.850 cause, if given.
        cause: Option<i64>,
        /// A soft hangup.
        soft: Option<bool>,
        /// The channel.
        channel: Channel,
    },
    /// The channel is gone.
    ChannelDestroyed {
        /// The common fields.
        meta: Meta,
        /// The Q.850 cause.
        cause: i64,
        /// The cause in words.
        cause_txt: String,
        /// The channel as it was.
        channel: Channel,
    },
    /// The channel's state changed (e.g. to `Up` after answer).
    ChannelStateChange {
        /// The common fields.
        meta: Meta,
        /// The channel.
        channel: Channel,
    },
    /// A channel variable was set.
    ChannelVarset {
        /// The common fields.
        meta: Meta,
        /// The variable.
        variable: String,
        /// Its new value.
        value: String,
        /// The channel; absent for a global variable.
        channel: Option<Channel>,
    },
    /// A channel entered a bridge.
    ChannelEnteredBridge {
        /// The common fields.
        meta: Meta,
        /// The bridge.
        bridge: Bridge,
        /// The channel.
        channel: Option<Channel>,
    },
    /// A channel left a bridge.
    ChannelLeftBridge {
        /// The common fields.
        meta: Meta,
        /// The bridge.
        bridge: Bridge,
        /// The channel.
        channel: Channel,
    },
    /// A bridge was destroyed.
    BridgeDestroyed {
        /// The common fields.
        meta: Meta,
        /// The bridge as it was.
        bridge: Bridge,
    },
    /// A playback started.
    PlaybackStarted {
        /// The common fields.
        meta: Meta,
        /// The playback.
        playback: Playback,
    },
    /// A playback finished (state `done` or `failed`).
    PlaybackFinished {
        /// The common fields.
        meta: Meta,
        /// The playback.
        playback: Playback,
    },
    /// Any other event type, kept whole.
    Other {
        /// The common fields.
        meta: Meta,
        /// The `type`.
        kind: String,
        /// The whole message.
        raw: serde_json::Value,
    },
}

/// The fields every event has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Meta {
    /// The application it is for.
    #[serde(default)]
    pub application: String,
    /// When it happened (ISO 8601 text).
    #[serde(default)]
    pub timestamp: String,
    /// Which Asterisk sent it (in a cluster).
    #[serde(default)]
    pub asterisk_id: Option<String>,
}

/// Why a message could not be read as an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The text is not JSON.
    #[error("event is not JSON: {0}")]
    Json(serde_json::Error),
    /// The JSON is not an object with a string `type`.
    #[error("event has no string \"type\"")]
    NoType,
    /// A known event type lacks a required field or has one of the wrong kind.
    #[error("{kind} event is malformed: {source}")]
    Fields {
        /// The event type.
        kind: String,
        /// serde's reason, naming the field.
        source: serde_json::Error,
    },
}

impl Event {
    /// Parses one websocket text message.
    pub fn parse(text: &str) -> Result<Event, EventError> {
        let raw: serde_json::Value = serde_json::from_str(text).map_err(EventError::Json)?;
        let kind = raw
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or(EventError::NoType)?
            .to_string();
        let meta: Meta = fields(&kind, &raw)?;
        let event = match kind.as_str() {
            "StasisStart" => {
                #[derive(Deserialize)]
                struct F {
                    #[serde(default)]
                    args: Vec<String>,
                    channel: Channel,
                    #[serde(default)]
                    replace_channel: Option<Channel>,
                }
                let f: F = fields(&kind, &raw)?;
                Event::StasisStart {
                    meta,
                    args: f.args,
                    channel: f.channel,
                    replace_channel: f.replace_channel,
                }
            }
            "StasisEnd" => {
                let f: ChannelOnly = fields(&kind, &raw)?;
                Event::StasisEnd {
                    meta,
                    channel: f.channel,
                }
            }
            "ChannelStateChange" => {
                let f: ChannelOnly = fields(&kind, &raw)?;
                Event::ChannelStateChange {
                    meta,
                    channel: f.channel,
                }
            }
            "ChannelDtmfReceived" => {
                #[derive(Deserialize)]
                struct F {
                    digit: String,
                    #[serde(default)]
                    duration_ms: i64,
                    channel: Channel,
                }
                let f: F = fields(&kind, &raw)?;
                Event::ChannelDtmfReceived {
                    meta,
                    digit: f.digit,
                    duration_ms: f.duration_ms,
                    channel: f.channel,
                }
            }
            "ChannelHangupRequest" => {
                #[derive(Deserialize)]
                struct F {
                    #[serde(default)]
                    cause: Option<i64>,
                    #[serde(default)]
                    soft: Option<bool>,
                    channel: Channel,
                }
                let f: F = fields(&kind, &raw)?;
                Event::ChannelHangupRequest {
                    meta,
                    cause: f.cause,
                    soft: f.soft,
                    channel: f.channel,
                }
            }
            "ChannelDestroyed" => {
                #[derive(Deserialize)]
                struct F {
                    #[serde(default)]
                    cause: i64,
                    #[serde(default)]
                    cause_txt: String,
                    channel: Channel,
                }
                let f: F = fields(&kind, &raw)?;
                Event::ChannelDestroyed {
                    meta,
                    cause: f.cause,
                    cause_txt: f.cause_txt,
                    channel: f.channel,
                }
            }
            "ChannelVarset" => {
                #[derive(Deserialize)]
                struct F {
                    variable: String,
                    #[serde(default)]
                    value: String,
                    #[serde(default)]
                    channel: Option<Channel>,
                }
                let f: F = fields(&kind, &raw)?;
                Event::ChannelVarset {
                    meta,
                    variable: f.variable,
                    value: f.value,
                    channel: f.channel,
                }
            }
            "ChannelEnteredBridge" => {
                #[derive(Deserialize)]
                struct F {
                    bridge: Bridge,
                    #[serde(default)]
                    channel: Option<Channel>,
                }
                let f: F = fields(&kind, &raw)?;
                Event::ChannelEnteredBridge {
                    meta,
                    bridge: f.bridge,
                    channel: f.channel,
                }
            }
            "ChannelLeftBridge" => {
                #[derive(Deserialize)]
                struct F {
                    bridge: Bridge,
                    channel: Channel,
                }
                let f: F = fields(&kind, &raw)?;
                Event::ChannelLeftBridge {
                    meta,
                    bridge: f.bridge,
                    channel: f.channel,
                }
            }
            "BridgeDestroyed" => {
                #[derive(Deserialize)]
                struct F {
                    bridge: Bridge,
                }
                let f: F = fields(&kind, &raw)?;
                Event::BridgeDestroyed {
                    meta,
                    bridge: f.bridge,
                }
            }
            "PlaybackStarted" | "PlaybackFinished" => {
                #[derive(Deserialize)]
                struct F {
                    playback: Playback,
                }
                let f: F = fields(&kind, &raw)?;
                if kind == "PlaybackStarted" {
                    Event::PlaybackStarted {
                        meta,
                        playback: f.playback,
                    }
                } else {
                    Event::PlaybackFinished {
                        meta,
                        playback: f.playback,
                    }
                }
            }
            _ => Event::Other { meta, kind, raw },
        };
        Ok(event)
    }

    /// The event's `type`.
    pub fn kind(&self) -> &str {
        match self {
            Event::StasisStart { .. } => "StasisStart",
            Event::StasisEnd { .. } => "StasisEnd",
            Event::ChannelDtmfReceived { .. } => "ChannelDtmfReceived",
            Event::ChannelHangupRequest { .. } => "ChannelHangupRequest",
            Event::ChannelDestroyed { .. } => "ChannelDestroyed",
            Event::ChannelStateChange { .. } => "ChannelStateChange",
            Event::ChannelVarset { .. } => "ChannelVarset",
            Event::ChannelEnteredBridge { .. } => "ChannelEnteredBridge",
            Event::ChannelLeftBridge { .. } => "ChannelLeftBridge",
            Event::BridgeDestroyed { .. } => "BridgeDestroyed",
            Event::PlaybackStarted { .. } => "PlaybackStarted",
            Event::PlaybackFinished { .. } => "PlaybackFinished",
            Event::Other { kind, .. } => kind,
        }
    }

    /// The id of the channel the event is about, if it is about one.
    pub fn channel_id(&self) -> Option<&str> {
        match self {
            Event::StasisStart { channel, .. }
            | Event::StasisEnd { channel, .. }
            | Event::ChannelDtmfReceived { channel, .. }
            | Event::ChannelHangupRequest { channel, .. }
            | Event::ChannelDestroyed { channel, .. }
            | Event::ChannelStateChange { channel, .. }
            | Event::ChannelLeftBridge { channel, .. } => Some(&channel.id),
            Event::ChannelVarset { channel, .. } | Event::ChannelEnteredBridge { channel, .. } => {
                channel.as_ref().map(|c| c.id.as_str())
            }
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ChannelOnly {
    channel: Channel,
}

fn fields<T: DeserializeOwned>(kind: &str, raw: &serde_json::Value) -> Result<T, EventError> {
    T::deserialize(raw).map_err(|source| EventError::Fields {
        kind: kind.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_type_is_carried_whole() {
        let e = Event::parse(r#"{"type":"Dial","application":"hark","dialstatus":"ANSWER"}"#)
            .expect("parses");
        assert_eq!(e.kind(), "Dial");
        match e {
            Event::Other { raw, meta, .. } => {
                assert_eq!(raw["dialstatus"], "ANSWER");
                assert_eq!(meta.application, "hark");
            }
            other => panic!("expected Other, got {other:?}"),
        }
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for text in [
            "",
            "not json",
            "[]",
            "{\"type\":7}",
            "{}",
            "{\"type\":\"StasisStart\"}",
            "{\"type\":\"StasisStart\",\"channel\":{\"id\":5}}",
            "{\"type\":\"ChannelDtmfReceived\",\"channel\":{\"id\":\"1\"}}",
            "{\"type\":\"StasisStart\",\"channel\":{\"id\":\"1\"},\"args\":\"x\"}",
        ] {
            assert!(Event::parse(text).is_err(), "{text:?} should be an error");
        }
    }
}
