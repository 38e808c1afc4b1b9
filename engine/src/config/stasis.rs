//! `[ari]`: Stasis mode. hark connects to Asterisk's ARI, answers every
//! channel that enters its Stasis application, and brings the call's audio
//! to itself through an external media channel.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Listener, invalid, listener_index, port_range};
use crate::secret::Secret;

/// How the external media channel carries audio to hark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StasisMedia {
    /// AudioSocket over TCP to one of hark's listeners (slin, 8 kHz).
    AudioSocket,
    /// RTP over UDP, G.711 µ-law, to a port hark opens per call.
    Rtp,
}

/// The validated `[ari]` section.
#[derive(Debug, Clone)]
pub struct StasisConfig {
    /// The ARI root, e.g. `http://127.0.0.1:8088/ari`.
    pub url: String,
    /// The `ari.conf` user.
    pub username: String,
    /// Its password.
    pub password: Secret,
    /// The Stasis application (`Stasis(hark)` in the dialplan).
    pub app: String,
    /// Index into `Config::listeners`: the listener whose agent answers by
    /// default and, for AudioSocket, where Asterisk connects.
    pub listener: usize,
    /// How audio comes to hark.
    pub media: StasisMedia,
    /// `host:port` Asterisk sends AudioSocket to; `None`: the listener's
    /// bound address (set it when hark listens on 0.0.0.0 or behind NAT).
    pub media_host: Option<String>,
    /// The address hark's RTP sockets bind to and give to Asterisk.
    pub rtp_address: IpAddr,
    /// The RTP port range, inclusive.
    pub rtp_ports: (u16, u16),
    /// Where a handed-off caller goes on in the dialplan.
    pub handoff_context: String,
    /// Its extension (`s` unless set); `${HARK_HANDOFF_TARGET}` holds the
    /// agent's target.
    pub handoff_extension: String,
    /// Its priority.
    pub handoff_priority: i64,
    /// Instead of continuing in the dialplan, redirect the caller to this
    /// endpoint (`{target}` is replaced by the agent's hand-off target),
    /// e.g. `PJSIP/{target}`.
    pub handoff_redirect: Option<String>,
    /// The media leg must connect within this after the channel is
    /// answered, or the call is torn down.
    pub setup_timeout: Duration,
    /// ARI events waiting to be handled.
    pub events_queue: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStasis {
    /// Default http://127.0.0.1:8088/ari: Asterisk's HTTP server on the
    /// same host, as `http.conf` ships it.
    url: Option<String>,
    username: String,
    /// Inline, or from the environment or a file (one of the three).
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    /// Default "hark".
    app: Option<String>,
    /// Default: the first listener.
    listener: Option<String>,
    /// Default "audiosocket": TCP, no extra ports to open.
    media: Option<String>,
    media_host: Option<String>,
    /// Default 127.0.0.1.
    rtp_address: Option<String>,
    /// Default [40000, 40999].
    rtp_ports: Option<[u16; 2]>,
    /// Default "hark-handoff".
    handoff_context: Option<String>,
    /// Default "s".
    handoff_extension: Option<String>,
    /// Default 1.
    handoff_priority: Option<i64>,
    /// Default none: continue in the dialplan.
    handoff_redirect: Option<String>,
    /// Default 5000 ms: Asterisk connects its media leg in milliseconds;
    /// five seconds is a broken path, not a slow one.
    setup_timeout_ms: Option<u64>,
    /// Default 1024.
    events_queue: Option<usize>,
}

impl RawStasis {
    pub(super) fn validate(
        self,
        listeners: &[Listener],
        base: &Path,
    ) -> Result<StasisConfig, ConfigError> {
        let url = self
            .url
            .unwrap_or_else(|| "http://127.0.0.1:8088/ari".into());
        let app = self.app.unwrap_or_else(|| "hark".into());
        ari_client::AriConfig::new(&url, "", "", app.clone())
            .map_err(|e| invalid("ari.url", e.to_string()))?;
        if app.is_empty() || app.len() > 80 || app.contains([',', ' ', '/', '?', '&']) {
            return Err(invalid(
                "ari.app",
                format!(
                    "{app:?}: a Stasis application name is 1-80 characters without , / ? & or spaces"
                ),
            ));
        }
        let password = match (self.password, self.password_env, self.password_file) {
            (Some(p), None, None) => Secret::new(p),
            (None, Some(var), None) => Secret::new(std::env::var(&var).map_err(|_| {
                invalid(
                    "ari.password_env",
                    format!("the environment variable {var} is not set"),
                )
            })?),
            (None, None, Some(f)) => {
                let path = base.join(&f);
                Secret::new(
                    std::fs::read_to_string(&path)
                        .map_err(|e| {
                            invalid(
                                "ari.password_file",
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?
                        .trim()
                        .to_string(),
                )
            }
            (None, None, None) => {
                return Err(invalid(
                    "ari.password",
                    "give password, password_env or password_file",
                ));
            }
            _ => {
                return Err(invalid(
                    "ari.password",
                    "give only one of password, password_env, password_file",
                ));
            }
        };
        let listener = listener_index(
            listeners,
            self.listener.as_deref(),
            "ari.listener",
            "Stasis mode needs a [[listener]]: its agent answers, and AudioSocket media arrives there",
        )?;
        let media = match self.media.as_deref().unwrap_or("audiosocket") {
            "audiosocket" => StasisMedia::AudioSocket,
            "rtp" => StasisMedia::Rtp,
            other => {
                return Err(invalid(
                    "ari.media",
                    format!("{other:?}: use \"audiosocket\" or \"rtp\""),
                ));
            }
        };
        let l = &listeners[listener];
        let media_host = match self.media_host {
            Some(h) => {
                if h.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(invalid("ari.media_host", format!("{h:?} is not HOST:PORT")));
                }
                Some(h)
            }
            None if media == StasisMedia::AudioSocket && l.address.ip().is_unspecified() => {
                return Err(invalid(
                    "ari.media_host",
                    format!(
                        "listener {:?} listens on {}: say which address Asterisk reaches it at (HOST:PORT)",
                        l.name, l.address
                    ),
                ));
            }
            None => None,
        };
        let text = self.rtp_address.unwrap_or_else(|| "127.0.0.1".into());
        let rtp_address: IpAddr = text
            .parse()
            .map_err(|_| invalid("ari.rtp_address", format!("{text:?} is not an IP address")))?;
        let rtp_ports = port_range(self.rtp_ports, (40000, 40999), "ari.rtp_ports")?;
        if let Some(r) = &self.handoff_redirect
            && (r.trim().is_empty() || !r.contains('/'))
        {
            return Err(invalid(
                "ari.handoff_redirect",
                format!("{r:?} is not an endpoint such as \"PJSIP/{{target}}\""),
            ));
        }
        let setup = self.setup_timeout_ms.unwrap_or(5000);
        if !(100..=60_000).contains(&setup) {
            return Err(invalid("ari.setup_timeout_ms", "must be 100..=60000"));
        }
        let events_queue = self.events_queue.unwrap_or(1024);
        if !(16..=1_000_000).contains(&events_queue) {
            return Err(invalid("ari.events_queue", "must be 16..=1000000"));
        }
        Ok(StasisConfig {
            url,
            username: self.username,
            password,
            app,
            listener,
            media,
            media_host,
            rtp_address,
            rtp_ports,
            handoff_context: self
                .handoff_context
                .unwrap_or_else(|| "hark-handoff".into()),
            handoff_extension: self.handoff_extension.unwrap_or_else(|| "s".into()),
            handoff_priority: self.handoff_priority.unwrap_or(1),
            handoff_redirect: self.handoff_redirect,
            setup_timeout: Duration::from_millis(setup),
            events_queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::config::StasisMedia;

    const LISTENERS: &str = "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:9092\"\nagent = \"e\"\n\
        [[listener]]\nname = \"any\"\naddress = \"0.0.0.0:9093\"\nagent = \"e\"\n\
        [agent.e]\nkind = \"echo\"\n";

    fn parse(ari: &str) -> Result<Config, String> {
        Config::parse(&format!("{LISTENERS}[ari]\n{ari}")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_first_listener() {
        let c = parse("username = \"hark\"\npassword = \"pw\"\n").unwrap();
        let a = c.ari.unwrap();
        assert_eq!(a.url, "http://127.0.0.1:8088/ari");
        assert_eq!((a.app.as_str(), a.listener), ("hark", 0));
        assert_eq!(a.media, StasisMedia::AudioSocket);
        assert_eq!(a.media_host, None);
        assert_eq!(a.password.expose(), "pw");
        assert!(
            !format!("{a:?}").contains("pw\""),
            "password stays out of Debug"
        );
        assert_eq!(
            (
                a.handoff_context.as_str(),
                a.handoff_extension.as_str(),
                a.handoff_priority
            ),
            ("hark-handoff", "s", 1)
        );
        let r = parse(
            "username = \"u\"\npassword = \"p\"\nmedia = \"rtp\"\nrtp_ports = [50000, 50010]\n",
        )
        .unwrap();
        let r = r.ari.unwrap();
        assert_eq!((r.media, r.rtp_ports), (StasisMedia::Rtp, (50000, 50010)));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("username = \"u\"\n", "ari.password"),
            (
                "username = \"u\"\npassword = \"p\"\npassword_env = \"X\"\n",
                "ari.password",
            ),
            (
                "username = \"u\"\npassword_env = \"HARK_TEST_UNSET_VARIABLE\"\n",
                "ari.password_env",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nurl = \"ftp://x/ari\"\n",
                "ari.url",
            ),
            (
                "username = \"u\"\npassword = \"p\"\napp = \"a,b\"\n",
                "ari.app",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nlistener = \"nope\"\n",
                "ari.listener",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nmedia = \"websocket\"\n",
                "ari.media",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nlistener = \"any\"\n",
                "ari.media_host",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nmedia_host = \"nohost\"\n",
                "ari.media_host",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nrtp_ports = [2000, 1000]\n",
                "ari.rtp_ports",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nrtp_address = \"x\"\n",
                "ari.rtp_address",
            ),
            (
                "username = \"u\"\npassword = \"p\"\nsetup_timeout_ms = 1\n",
                "ari.setup_timeout_ms",
            ),
            ("username = \"u\"\npassword = \"p\"\ncolour = 1\n", "colour"),
            (
                "username = \"u\"\npassword = \"p\"\nhandoff_redirect = \"x\"\n",
                "ari.handoff_redirect",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(key), "{text:?}: {e}");
        }
        // A listener on 0.0.0.0 is fine with media_host, or with RTP.
        parse("username = \"u\"\npassword = \"p\"\nlistener = \"any\"\nmedia_host = \"10.0.0.5:9093\"\n").unwrap();
        parse("username = \"u\"\npassword = \"p\"\nlistener = \"any\"\nmedia = \"rtp\"\n").unwrap();
    }
}
