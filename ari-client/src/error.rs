//! Errors of the REST client.

/// Why a REST request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AriError {
    /// The base URL is not an `http://` or `https://` URL.
    #[error("invalid ARI url {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Asterisk answered with an error status.
    #[error("ARI {method} {path}: {status} {message}")]
    Status {
        /// The method.
        method: &'static str,
        /// The path under the base URL.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Asterisk's `message`, or the body.
        message: String,
    },
    /// Asterisk could not be reached, or the request timed out.
    #[error("ARI {method} {path}: {source}")]
    Transport {
        /// The method.
        method: &'static str,
        /// The path under the base URL.
        path: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The answer was not the JSON expected.
    #[error("ARI {method} {path}: unexpected answer: {reason}")]
    Decode {
        /// The method.
        method: &'static str,
        /// The path under the base URL.
        path: String,
        /// serde's reason.
        reason: String,
    },
}

impl AriError {
    /// The HTTP status, if Asterisk answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            AriError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the resource is gone (404): a channel that hung up, a bridge
    /// already destroyed. Cleanup treats that as done.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when trying again may succeed: Asterisk unreachable, a timeout,
    /// or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            AriError::Transport { .. } => true,
            AriError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
