//! The ARI resources hark uses, as Asterisk 22's REST definitions
//! (`rest-api/api-docs/*.json`, models `Channel`, `Bridge`, `Playback`,
//! `Variable`) describe them.
//!
//! Every field Asterisk may leave out is `Option` or defaulted, and unknown
//! fields are ignored: a newer Asterisk that adds fields does not break the
//! client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A channel: one leg of a call in Asterisk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Channel {
    /// Unique id, e.g. `1700000000.42`.
    pub id: String,
    /// Name, e.g. `PJSIP/alice-00000001`.
    #[serde(default)]
    pub name: String,
    /// State: `Down`, `Ring`, `Ringing`, `Up`, `Busy` ... (kept as text:
    /// Asterisk adds states over releases).
    #[serde(default)]
    pub state: String,
    /// The protocol's id for the call (the SIP Call-ID), if any.
    #[serde(default)]
    pub protocol_id: Option<String>,
    /// Who is calling.
    #[serde(default)]
    pub caller: CallerId,
    /// Who the channel is connected to.
    #[serde(default)]
    pub connected: CallerId,
    /// The account code.
    #[serde(default)]
    pub accountcode: String,
    /// Where the channel is in the dialplan (the extension dialled, for an
    /// inbound call).
    #[serde(default)]
    pub dialplan: Option<DialplanLocation>,
    /// When the channel was created (ISO 8601 text, as Asterisk sends it).
    #[serde(default)]
    pub creationtime: String,
    /// The channel's language.
    #[serde(default)]
    pub language: String,
    /// Variables listed in `ari.conf`'s `channelvars`, when configured.
    #[serde(default)]
    pub channelvars: Option<BTreeMap<String, String>>,
    /// The tenant id Asterisk 22 carries on channels, if set.
    #[serde(default)]
    pub tenantid: Option<String>,
}

/// A caller id: name and number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CallerId {
    /// The name (may be empty).
    #[serde(default)]
    pub name: String,
    /// The number (may be empty).
    #[serde(default)]
    pub number: String,
}

/// A dialplan location: context, extension, priority.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DialplanLocation {
    /// The context.
    #[serde(default)]
    pub context: String,
    /// The extension.
    #[serde(default)]
    pub exten: String,
    /// The priority.
    #[serde(default)]
    pub priority: i64,
    /// The application running (e.g. `Stasis`).
    #[serde(default)]
    pub app_name: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub app_data: Option<String>,
}

/// A bridge: channels whose media Asterisk mixes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Bridge {
    /// Unique id.
    pub id: String,
    /// The bridging technology (e.g. `simple_bridge`, `softmix`).
    #[serde(default)]
    pub technology: String,
    /// `mixing` or `holding`.
    #[serde(default)]
    pub bridge_type: String,
    /// Who created it: `stasis` for ARI bridges.
    #[serde(default)]
    pub bridge_class: String,
    /// The creating application.
    #[serde(default)]
    pub creator: String,
    /// The name given at creation.
    #[serde(default)]
    pub name: String,
    /// Ids of the channels in the bridge.
    #[serde(default)]
    pub channels: Vec<String>,
    /// When it was created.
    #[serde(default)]
    pub creationtime: Option<String>,
    /// Video mode (`none`, `talker`, `single`, `sfu`).
    #[serde(default)]
    pub video_mode: Option<String>,
}

/// A playback of media to a channel or a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Playback {
    /// Unique id.
    pub id: String,
    /// What is playing, e.g. `sound:hello-world`.
    #[serde(default)]
    pub media_uri: String,
    /// The next media in a list, if any.
    #[serde(default)]
    pub next_media_uri: Option<String>,
    /// Where it plays, e.g. `bridge:ID` or `channel:ID`.
    #[serde(default)]
    pub target_uri: String,
    /// The language of the sounds.
    #[serde(default)]
    pub language: String,
    /// `queued`, `playing`, `continuing`, `done` or `failed`.
    #[serde(default)]
    pub state: String,
}

/// A channel variable's value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Variable {
    /// The value (empty when unset).
    #[serde(default)]
    pub value: String,
}

/// How Asterisk wraps the media of an external media channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encapsulation {
    /// AudioSocket over TCP: Asterisk connects to the host and sends the
    /// UUID given as `data`.
    AudioSocket,
    /// RTP over UDP to the host.
    Rtp,
}

impl Encapsulation {
    /// The value of the `encapsulation` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Encapsulation::AudioSocket => "audiosocket",
            Encapsulation::Rtp => "rtp",
        }
    }

    /// The transport Asterisk uses for it.
    pub fn transport(self) -> &'static str {
        match self {
            Encapsulation::AudioSocket => "tcp",
            Encapsulation::Rtp => "udp",
        }
    }
}

/// The parameters of `POST /channels/externalMedia`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMedia {
    /// The Stasis application the new channel enters.
    pub app: String,
    /// `host:port` Asterisk sends the media to.
    pub external_host: String,
    /// The wrapping.
    pub encapsulation: Encapsulation,
    /// The audio format, e.g. `slin` or `ulaw`.
    pub format: String,
    /// The id to give the channel (Asterisk makes one up otherwise).
    pub channel_id: Option<String>,
    /// For AudioSocket, the UUID Asterisk sends first.
    pub data: Option<String>,
    /// Channel variables to set on the new channel.
    pub variables: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_with_only_an_id_parses_and_extra_fields_are_ignored() {
        let c: Channel =
            serde_json::from_str(r#"{"id":"1.2","future_field":{"x":1}}"#).expect("parses");
        assert_eq!(c.id, "1.2");
        assert_eq!(c.caller, CallerId::default());
        assert!(c.dialplan.is_none());
    }

    #[test]
    fn encapsulations_name_their_transport() {
        assert_eq!(Encapsulation::AudioSocket.as_str(), "audiosocket");
        assert_eq!(Encapsulation::AudioSocket.transport(), "tcp");
        assert_eq!(Encapsulation::Rtp.transport(), "udp");
    }
}
