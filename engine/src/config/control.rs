//! `[store]`, `[api]` and `[leads]`: the control plane's settings.
//!
//! Without `[store]` nothing is recorded (records are only logged); without
//! `[api]` no HTTP listener opens. The shipped `hark.toml` turns both on with
//! a SQLite file, the embedded default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Where and how call records are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `mysql://USER:PASS@HOST:PORT/DB`.
    pub url: String,
    /// The append-only file events wait in while the database is away.
    pub spool: PathBuf,
    /// Apply pending migrations at start-up (`hark migrate` does it by hand).
    pub migrate: bool,
    /// The tenant of calls nobody pre-registered.
    pub tenant: String,
    /// Events waiting for the writer; when full, a call keeps its own
    /// records until there is room (the media path never waits).
    pub queue: usize,
    /// Most events written in one transaction.
    pub batch: usize,
    /// Pause between attempts to reach the database while spooling.
    pub retry: Duration,
}

/// The admin REST API's listener and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Where it listens; loopback unless configured otherwise.
    pub address: SocketAddr,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Requests per second per token, sustained.
    pub rate_per_sec: f64,
    /// Requests per token in a burst.
    pub burst: f64,
}

/// How a lead is scored: points added per finding, clamped to 0..=100.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadRules {
    /// Points every lead starts with.
    pub base: i64,
    /// The caller gave a name.
    pub name: i64,
    /// The caller gave a phone number (the caller ID does not count).
    pub phone: i64,
    /// The caller gave an e-mail address.
    pub email: i64,
    /// The caller stated an intent.
    pub intent: i64,
    /// Words in the intent or notes that add (or, negative, take away) points.
    pub keywords: Vec<(String, i64)>,
    /// Slot names whose answers count as the lead's fields.
    pub name_slots: Vec<String>,
}

impl Default for LeadRules {
    fn default() -> Self {
        LeadRules {
            base: 10,
            name: 20,
            phone: 25,
            email: 15,
            intent: 20,
            keywords: vec![],
            name_slots: vec!["name".into()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    url: String,
    /// Default: `hark.spool` beside the configuration file.
    spool: Option<PathBuf>,
    /// Default true: a fresh machine works with no extra step.
    migrate: Option<bool>,
    /// Default "default".
    tenant: Option<String>,
    /// Default 8192 events: minutes of records for hundreds of calls.
    queue: Option<usize>,
    /// Default 256: one fsync or commit per batch keeps the rate high.
    batch: Option<usize>,
    /// Default 1000 ms.
    retry_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    /// Default 127.0.0.1:8089: loopback unless asked.
    address: Option<String>,
    /// Default 64 KiB: every request body is a small JSON object.
    max_body_bytes: Option<usize>,
    /// Default 50 per second per token.
    rate_per_sec: Option<f64>,
    /// Default 100.
    burst: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeads {
    base: Option<i64>,
    name: Option<i64>,
    phone: Option<i64>,
    email: Option<i64>,
    intent: Option<i64>,
    #[serde(default)]
    keywords: std::collections::BTreeMap<String, i64>,
    name_slots: Option<Vec<String>>,
}

impl RawStore {
    pub(super) fn validate(self, base: &Path) -> Result<StoreConfig, ConfigError> {
        let url = self.url.trim().to_string();
        if !(url.starts_with("sqlite:")
            || url.starts_with("mysql://")
            || url.starts_with("mariadb://"))
        {
            return Err(invalid(
                "store.url",
                format!("{url:?} is neither sqlite://FILE nor mysql://USER@HOST/DB"),
            ));
        }
        let url = match url.strip_prefix("sqlite://") {
            // A relative SQLite file is beside the configuration file.
            Some(file) if !file.starts_with('/') && !file.starts_with(':') => {
                format!("sqlite://{}", base.join(file).display())
            }
            _ => url.replacen("mariadb://", "mysql://", 1),
        };
        let spool = base.join(self.spool.unwrap_or_else(|| PathBuf::from("hark.spool")));
        let tenant = self.tenant.unwrap_or_else(|| "default".into());
        check_tenant("store.tenant", &tenant)?;
        let queue = self.queue.unwrap_or(8192);
        if !(16..=1_000_000).contains(&queue) {
            return Err(invalid("store.queue", "must be 16..=1000000 events"));
        }
        let batch = self.batch.unwrap_or(256);
        if !(1..=10_000).contains(&batch) {
            return Err(invalid("store.batch", "must be 1..=10000 events"));
        }
        let retry_ms = self.retry_ms.unwrap_or(1000);
        if !(10..=60_000).contains(&retry_ms) {
            return Err(invalid("store.retry_ms", "must be 10..=60000"));
        }
        Ok(StoreConfig {
            url,
            spool,
            migrate: self.migrate.unwrap_or(true),
            tenant,
            queue,
            batch,
            retry: Duration::from_millis(retry_ms),
        })
    }
}

/// Tenant ids are short and plain: they appear in URLs, logs and tokens.
pub(crate) fn check_tenant(key: &str, tenant: &str) -> Result<(), ConfigError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{tenant:?}: use 1-64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

impl RawApi {
    pub(super) fn validate(self) -> Result<ApiConfig, ConfigError> {
        let text = self.address.unwrap_or_else(|| "127.0.0.1:8089".into());
        let address = text
            .parse()
            .map_err(|_| invalid("api.address", format!("{text:?} is not IP:PORT")))?;
        let max_body_bytes = self.max_body_bytes.unwrap_or(64 * 1024);
        if !(256..=16 << 20).contains(&max_body_bytes) {
            return Err(invalid("api.max_body_bytes", "must be 256..=16777216"));
        }
        let rate_per_sec = self.rate_per_sec.unwrap_or(50.0);
        let burst = self.burst.unwrap_or(100.0);
        if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
            return Err(invalid("api.rate_per_sec", "must be above 0"));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(invalid("api.burst", "must be at least 1"));
        }
        Ok(ApiConfig {
            address,
            max_body_bytes,
            rate_per_sec,
            burst,
        })
    }
}

impl RawLeads {
    pub(super) fn validate(self) -> Result<LeadRules, ConfigError> {
        let d = LeadRules::default();
        let points = |key: &str, v: Option<i64>, default: i64| match v {
            Some(p) if !(-100..=100).contains(&p) => {
                Err(invalid(format!("leads.{key}"), "points must be -100..=100"))
            }
            Some(p) => Ok(p),
            None => Ok(default),
        };
        let mut keywords = Vec::with_capacity(self.keywords.len());
        for (word, p) in self.keywords {
            if word.trim().is_empty() {
                return Err(invalid("leads.keywords", "a keyword is empty"));
            }
            keywords.push((word.to_lowercase(), points("keywords", Some(p), 0)?));
        }
        Ok(LeadRules {
            base: points("base", self.base, d.base)?,
            name: points("name", self.name, d.name)?,
            phone: points("phone", self.phone, d.phone)?,
            email: points("email", self.email, d.email)?,
            intent: points("intent", self.intent, d.intent)?,
            keywords,
            name_slots: self.name_slots.unwrap_or(d.name_slots),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn err(text: &str) -> String {
        match Config::parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn store_api_and_leads_parse_with_defaults() {
        let c = Config::parse(
            "[store]\nurl = \"sqlite://x.db\"\n[api]\n[leads]\nkeywords = { \"Buy\" = 30 }\n",
        )
        .unwrap();
        let s = c.store.unwrap();
        assert_eq!(s.url, "sqlite://./x.db");
        assert!(s.migrate);
        assert_eq!(s.tenant, "default");
        assert_eq!(s.spool, std::path::PathBuf::from("./hark.spool"));
        let a = c.api.unwrap();
        assert_eq!(a.address.to_string(), "127.0.0.1:8089");
        assert_eq!(c.leads.keywords, vec![("buy".to_string(), 30)]);
        let m = Config::parse("[store]\nurl = \"mariadb://u@h:3306/d\"\n").unwrap();
        assert_eq!(m.store.unwrap().url, "mysql://u@h:3306/d");
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(err("[store]\nurl = \"postgres://x\"\n").contains("store.url"));
        assert!(err("[store]\nurl = \"sqlite://x\"\ntenant = \"a b\"\n").contains("store.tenant"));
        assert!(err("[store]\nurl = \"sqlite://x\"\nqueue = 1\n").contains("store.queue"));
        assert!(err("[store]\nurl = \"sqlite://x\"\ncolour = 1\n").contains("colour"));
        let store = "[store]\nurl = \"sqlite://x\"\n";
        assert!(err(&format!("{store}[api]\naddress = \"nowhere\"\n")).contains("api.address"));
        assert!(err(&format!("{store}[api]\nrate_per_sec = 0\n")).contains("api.rate_per_sec"));
        assert!(err("[api]\n").contains("add [store]"));
        assert!(err("[leads]\nphone = 500\n").contains("leads.phone"));
        assert!(err("[leads]\nkeywords = { \" \" = 5 }\n").contains("leads.keywords"));
    }
}
