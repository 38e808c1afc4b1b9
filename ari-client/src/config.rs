//! Where Asterisk's ARI is and how to log in.

use std::time::Duration;

use reqwest::Url;

use crate::AriError;

/// Connection settings for one Asterisk.
#[derive(Clone)]
pub struct AriConfig {
    /// The ARI root, e.g. `http://127.0.0.1:8088/ari` (the path is kept,
    /// so a proxy prefix works).
    pub(crate) base: Url,
    /// The `ari.conf` user.
    pub(crate) username: String,
    /// Its password.
    pub(crate) password: String,
    /// The Stasis application to receive events for.
    pub(crate) app: String,
    /// Per-request timeout of the REST client.
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for AriConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("AriConfig")
            .field("base", &self.base.as_str())
            .field("username", &self.username)
            .field("app", &self.app)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AriConfig {
    /// Settings for the ARI at `url` (`http://host:8088/ari`, or `https://`),
    /// logging in as `username`, for application `app`. The REST timeout
    /// defaults to 5 s: a request Asterisk has not answered by then is one
    /// it will not answer in time for a call.
    pub fn new(
        url: &str,
        username: impl Into<String>,
        password: impl Into<String>,
        app: impl Into<String>,
    ) -> Result<AriConfig, AriError> {
        let bad = |reason: &str| AriError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let mut base = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if base.host_str().is_none() {
            return Err(bad("no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("no query or fragment, please"));
        }
        // A trailing slash makes joining keep the last segment.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let app = app.into();
        if app.is_empty() {
            return Err(bad("the application name is empty"));
        }
        Ok(AriConfig {
            base,
            username: username.into(),
            password: password.into(),
            app,
            timeout: Duration::from_secs(5),
        })
    }

    /// Sets the REST request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> AriConfig {
        self.timeout = timeout;
        self
    }

    /// The application name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The events websocket URL: `ws(s)://host/…/events?app=APP`.
    pub fn events_url(&self) -> Url {
        let mut url = self.base.clone();
        // Only http(s) bases get here (checked in `new`), and both map to a
        // websocket scheme, so these cannot fail.
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let _ = url.set_scheme(scheme);
        let path = format!("{}events", url.path());
        url.set_path(&path);
        url.query_pairs_mut()
            .append_pair("app", &self.app)
            .append_pair("subscribeAll", "false");
        url
    }

    /// The `Authorization` header value (HTTP Basic).
    pub(crate) fn authorization(&self) -> String {
        use base64::Engine;
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_url_follows_the_base() {
        let c = AriConfig::new("http://127.0.0.1:8088/ari", "u", "p", "hark").expect("valid");
        assert_eq!(
            c.events_url().as_str(),
            "ws://127.0.0.1:8088/ari/events?app=hark&subscribeAll=false"
        );
        let c = AriConfig::new("https://pbx.example/x/ari/", "u", "p", "a b").expect("valid");
        assert_eq!(
            c.events_url().as_str(),
            "wss://pbx.example/x/ari/events?app=a+b&subscribeAll=false"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["", "ftp://x/ari", "http://h/ari?x=1", "nonsense"] {
            assert!(AriConfig::new(url, "u", "p", "a").is_err(), "{url}");
        }
        assert!(AriConfig::new("http://h/ari", "u", "p", "").is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let c = AriConfig::new("http://h/ari", "u", "s3cret", "a").expect("valid");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
