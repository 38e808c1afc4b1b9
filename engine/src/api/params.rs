//! Query strings and JSON bodies, parsed strictly: an unknown parameter,
//! a repeated one or a malformed value is a 400 that names it, never a
//! silently ignored filter.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A parsed query string.
#[derive(Debug, Default)]
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    /// Parses `query`, allowing only `known` names.
    pub(crate) fn parse(query: Option<&str>, known: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|_| ApiError::bad_request("the query string is malformed"))?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {k:?}; known: {}",
                    known.join(", ")
                )));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad_request(format!(
                    "parameter {k:?} is given twice"
                )));
            }
        }
        Ok(Params(map))
    }

    /// A text value, 1-200 characters.
    pub(crate) fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            // Characters, as the document's maxLength counts them.
            Some(v) if v.is_empty() || v.chars().count() > 200 => Err(ApiError::bad_request(
                format!("{name} must be 1-200 characters"),
            )),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// An integer in `range`.
    pub(crate) fn int(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be an integer in {}..={}",
                    range.start(),
                    range.end()
                ))),
            },
        }
    }

    /// One of `allowed`.
    pub(crate) fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::bad_request(format!(
                "{name} must be one of: {}",
                allowed.join(", ")
            ))),
        }
    }

    /// A time as milliseconds since the Unix epoch.
    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.int(name, 0..=253_402_300_799_999)
    }

    /// The page size: 1..=500, default 50.
    pub(crate) fn limit(&self) -> Result<u32, ApiError> {
        Ok(self.int("limit", 1..=500)?.unwrap_or(50) as u32)
    }
}

/// A JSON body, with errors as [`ApiError`] (axum's own are plain text).
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            // The media type itself, parameters (charset) aside:
            // "application/jsonfoo" is not JSON.
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        "the body is too large",
                    )
                } else {
                    ApiError::bad_request("cannot read the body")
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}
