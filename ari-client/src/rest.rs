//! The REST half: channels, bridges, playbacks.
//!
//! Every method is one HTTP request with the configured timeout. Ids are
//! put in the path as escaped segments and every other value goes in the
//! query string, escaped: nothing a caller passes can change which resource
//! is addressed.

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use crate::model::{Bridge, Channel, ExternalMedia, Playback, Variable};
use crate::{AriConfig, AriError};

/// A REST client for one Asterisk. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    config: AriConfig,
}

/// Where to send a channel with [`Client::continue_in_dialplan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialplanTarget {
    /// The context (empty: the channel's current one).
    pub context: String,
    /// The extension (empty: the current one).
    pub extension: String,
    /// The priority (`None`: the next one).
    pub priority: Option<i64>,
    /// A label instead of a priority.
    pub label: Option<String>,
}

impl Client {
    /// A client for `config`. Installs ring as the process's rustls crypto
    /// provider if none is installed yet (reqwest is built without one).
    pub fn new(config: AriConfig) -> Result<Client, AriError> {
        // Err: a provider is installed already, which is all that is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| AriError::Url {
                url: config.base.to_string(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Client { http, config })
    }

    /// The settings.
    pub fn config(&self) -> &AriConfig {
        &self.config
    }

    // --- channels ---

    /// `GET /channels/{id}`.
    pub async fn channel(&self, id: &str) -> Result<Channel, AriError> {
        self.json(Method::GET, &["channels", id], &[]).await
    }

    /// `POST /channels/{id}/answer`.
    pub async fn answer(&self, id: &str) -> Result<(), AriError> {
        self.empty(Method::POST, &["channels", id, "answer"], &[])
            .await
    }

    /// `DELETE /channels/{id}?reason=...` (`normal`, `busy`, `congestion` ...).
    pub async fn hangup(&self, id: &str, reason: &str) -> Result<(), AriError> {
        self.empty(Method::DELETE, &["channels", id], &[("reason", reason)])
            .await
    }

    /// `POST /channels/{id}/continue`: leaves Stasis and goes on in the
    /// dialplan at `target`.
    pub async fn continue_in_dialplan(
        &self,
        id: &str,
        target: &DialplanTarget,
    ) -> Result<(), AriError> {
        let priority = target.priority.map(|p| p.to_string());
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !target.context.is_empty() {
            query.push(("context", &target.context));
        }
        if !target.extension.is_empty() {
            query.push(("extension", &target.extension));
        }
        if let Some(p) = &priority {
            query.push(("priority", p));
        }
        if let Some(l) = &target.label {
            query.push(("label", l));
        }
        self.empty(Method::POST, &["channels", id, "continue"], &query)
            .await
    }

    /// `POST /channels/{id}/redirect?endpoint=...`: sends the channel to
    /// another endpoint (e.g. `PJSIP/agent-7`).
    pub async fn redirect(&self, id: &str, endpoint: &str) -> Result<(), AriError> {
        self.empty(
            Method::POST,
            &["channels", id, "redirect"],
            &[("endpoint", endpoint)],
        )
        .await
    }

    /// `GET /channels/{id}/variable?variable=...`. An unset variable is
    /// `Ok(None)` (Asterisk answers 404 for it, as for a missing channel;
    /// the channel's own existence is the caller's to check).
    pub async fn variable(&self, id: &str, name: &str) -> Result<Option<String>, AriError> {
        match self
            .json::<Variable>(
                Method::GET,
                &["channels", id, "variable"],
                &[("variable", name)],
            )
            .await
        {
            Ok(v) => Ok(Some(v.value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /channels/{id}/variable?variable=...&value=...`.
    pub async fn set_variable(&self, id: &str, name: &str, value: &str) -> Result<(), AriError> {
        self.empty(
            Method::POST,
            &["channels", id, "variable"],
            &[("variable", name), ("value", value)],
        )
        .await
    }

    /// `POST /channels/externalMedia`: a channel whose media goes to an
    /// external host (AudioSocket over TCP, or RTP over UDP).
    pub async fn external_media(&self, m: &ExternalMedia) -> Result<Channel, AriError> {
        let mut query: Vec<(&str, &str)> = vec![
            ("app", &m.app),
            ("external_host", &m.external_host),
            ("encapsulation", m.encapsulation.as_str()),
            ("transport", m.encapsulation.transport()),
            ("connection_type", "client"),
            ("format", &m.format),
            ("direction", "both"),
        ];
        if let Some(id) = &m.channel_id {
            query.push(("channelId", id));
        }
        if let Some(d) = &m.data {
            query.push(("data", d));
        }
        let body =
            (!m.variables.is_empty()).then(|| serde_json::json!({ "variables": m.variables }));
        let (status, text) = self
            .send(
                Method::POST,
                &["channels", "externalMedia"],
                &query,
                body.as_ref(),
            )
            .await?;
        decode(Method::POST, "channels/externalMedia", status, &text)
    }

    // --- bridges ---

    /// `POST /bridges?type=mixing&bridgeId=...&name=...`.
    pub async fn create_bridge(&self, id: &str, name: &str) -> Result<Bridge, AriError> {
        self.json(
            Method::POST,
            &["bridges"],
            &[("type", "mixing"), ("bridgeId", id), ("name", name)],
        )
        .await
    }

    /// `GET /bridges/{id}`.
    pub async fn bridge(&self, id: &str) -> Result<Bridge, AriError> {
        self.json(Method::GET, &["bridges", id], &[]).await
    }

    /// `POST /bridges/{id}/addChannel?channel=a,b`.
    pub async fn add_channels(&self, bridge: &str, channels: &[&str]) -> Result<(), AriError> {
        let list = channels.join(",");
        self.empty(
            Method::POST,
            &["bridges", bridge, "addChannel"],
            &[("channel", &list)],
        )
        .await
    }

    /// `POST /bridges/{id}/removeChannel?channel=...`.
    pub async fn remove_channel(&self, bridge: &str, channel: &str) -> Result<(), AriError> {
        self.empty(
            Method::POST,
            &["bridges", bridge, "removeChannel"],
            &[("channel", channel)],
        )
        .await
    }

    /// `DELETE /bridges/{id}`.
    pub async fn destroy_bridge(&self, id: &str) -> Result<(), AriError> {
        self.empty(Method::DELETE, &["bridges", id], &[]).await
    }

    /// `POST /bridges/{id}/play?media=...`: e.g. `sound:hello-world`.
    pub async fn play_on_bridge(&self, bridge: &str, media: &str) -> Result<Playback, AriError> {
        self.json(
            Method::POST,
            &["bridges", bridge, "play"],
            &[("media", media)],
        )
        .await
    }

    // --- playbacks ---

    /// `GET /playbacks/{id}`.
    pub async fn playback(&self, id: &str) -> Result<Playback, AriError> {
        self.json(Method::GET, &["playbacks", id], &[]).await
    }

    /// `DELETE /playbacks/{id}`: stops it.
    pub async fn stop_playback(&self, id: &str) -> Result<(), AriError> {
        self.empty(Method::DELETE, &["playbacks", id], &[]).await
    }

    // --- plumbing ---

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.config.base.clone();
        {
            // The base is an http(s) URL with a host (checked when the
            // config was made), so it can always have path segments.
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty();
                path.extend(segments);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String), AriError> {
        let url = self.url(segments, query);
        let name = method_name(&method);
        let path = segments.join("/");
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", self.config.authorization());
        if let Some(b) = body {
            req = req.json(b);
        }
        let transport = |source| AriError::Transport {
            method: name,
            path: path.clone(),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(AriError::Status {
                method: name,
                path,
                status,
                message: message_of(&text),
            });
        }
        Ok((status, text))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, AriError> {
        let name = method.clone();
        let (status, text) = self.send(method, segments, query, None).await?;
        decode(name, &segments.join("/"), status, &text)
    }

    async fn empty(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<(), AriError> {
        self.send(method, segments, query, None).await.map(|_| ())
    }
}

fn decode<T: DeserializeOwned>(
    method: Method,
    path: &str,
    _status: u16,
    text: &str,
) -> Result<T, AriError> {
    serde_json::from_str(text).map_err(|e| AriError::Decode {
        method: method_name(&method),
        path: path.to_string(),
        reason: e.to_string(),
    })
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

/// Asterisk's errors are `{"message": "..."}`; anything else is shown
/// shortened.
fn message_of(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct M {
        message: String,
    }
    match serde_json::from_str::<M>(body) {
        Ok(m) => m.message,
        Err(_) => body.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_path_segments() {
        let c = Client::new(AriConfig::new("http://h:8088/ari", "u", "p", "a").expect("valid"))
            .expect("client");
        let url = c.url(&["channels", "../bridges/x?y", "answer"], &[("v", "a&b")]);
        assert_eq!(
            url.as_str(),
            "http://h:8088/ari/channels/..%2Fbridges%2Fx%3Fy/answer?v=a%26b"
        );
    }

    #[test]
    fn asterisk_error_messages_are_read() {
        assert_eq!(
            message_of(r#"{"message":"Channel not found"}"#),
            "Channel not found"
        );
        assert_eq!(message_of("oops"), "oops");
    }
}
