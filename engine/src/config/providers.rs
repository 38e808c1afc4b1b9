//! `[provider.NAME]`: the LLM providers agents route between, with their
//! keys (from the environment or a file, never from hark.toml itself).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::raw::RawConfig;
use super::{ConfigError, invalid};
use crate::llm::Price;

/// An LLM provider from `[provider.NAME]`.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `openai` (any OpenAI-compatible server), `anthropic` or `gemini`.
    pub kind: ProviderKind,
    /// Base URL (`.../v1` for OpenAI-compatible).
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// The API key, read from the environment or a file. Never logged.
    pub api_key: Option<crate::secret::Secret>,
    /// Price per 1k tokens.
    pub price: Price,
}

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini.
    Gemini,
}

impl RawConfig {
    pub(super) fn providers(
        &self,
        base: &Path,
    ) -> Result<BTreeMap<String, ProviderConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, p) in &self.provider {
            let key = format!("provider.{name}");
            let kind = match p.kind.as_str() {
                "openai" => ProviderKind::OpenAi,
                "anthropic" => ProviderKind::Anthropic,
                "gemini" => ProviderKind::Gemini,
                other => {
                    return Err(invalid(
                        format!("{key}.kind"),
                        format!(
                            "{other:?} is not a provider kind: use \"openai\" (any OpenAI-compatible server), \"anthropic\" or \"gemini\""
                        ),
                    ));
                }
            };
            let base_url = match (&p.base_url, kind) {
                (Some(u), _) => u.clone(),
                (None, ProviderKind::OpenAi) => "https://api.openai.com/v1".into(),
                (None, ProviderKind::Anthropic) => "https://api.anthropic.com".into(),
                (None, ProviderKind::Gemini) => "https://generativelanguage.googleapis.com".into(),
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(invalid(
                    format!("{key}.base_url"),
                    format!("{base_url:?} is not an http(s) URL"),
                ));
            }
            if p.model.trim().is_empty() {
                return Err(invalid(format!("{key}.model"), "must not be empty"));
            }
            let api_key = read_key(&key, &p.api_key_env, &p.api_key_file, base)?;
            if kind != ProviderKind::OpenAi && api_key.is_none() {
                return Err(invalid(
                    format!("{key}.api_key_env"),
                    format!(
                        "{} needs an API key: set api_key_env or api_key_file",
                        p.kind
                    ),
                ));
            }
            for (field, v) in [
                ("price_in_per_1k", p.price_in_per_1k),
                ("price_out_per_1k", p.price_out_per_1k),
            ] {
                if !(0.0..=1_000.0).contains(&v) {
                    return Err(invalid(
                        format!("{key}.{field}"),
                        format!("{v} is out of range: use 0 to 1000"),
                    ));
                }
            }
            out.insert(
                name.clone(),
                ProviderConfig {
                    kind,
                    base_url,
                    model: p.model.clone(),
                    api_key,
                    price: Price {
                        input_per_1k: p.price_in_per_1k,
                        output_per_1k: p.price_out_per_1k,
                    },
                },
            );
        }
        Ok(out)
    }
}

/// An API key from `{prefix}.api_key_env` (a variable name) or
/// `{prefix}.api_key_file` (a path, relative to hark.toml), never both.
pub(super) fn read_key(
    prefix: &str,
    env: &Option<String>,
    file: &Option<String>,
    base: &Path,
) -> Result<Option<crate::secret::Secret>, ConfigError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{prefix}.api_key_file"),
            "give api_key_env or api_key_file, not both",
        )),
        (Some(var), None) => std::env::var(var)
            .map(|k| Some(crate::secret::Secret::from(k)))
            .map_err(|_| {
                invalid(
                    format!("{prefix}.api_key_env"),
                    format!("the environment variable {var} is not set"),
                )
            }),
        (None, Some(f)) => {
            let path = if Path::new(f).is_absolute() {
                PathBuf::from(f)
            } else {
                base.join(f)
            };
            std::fs::read_to_string(&path)
                .map(|k| Some(crate::secret::Secret::from(k.trim().to_string())))
                .map_err(|e| {
                    invalid(
                        format!("{prefix}.api_key_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })
        }
        (None, None) => Ok(None),
    }
}
