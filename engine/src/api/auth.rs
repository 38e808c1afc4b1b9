//! Bearer-token authentication, roles and the per-token rate limit.
//! Reads (GET) need any token; changes need an `admin` token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::store::Role;

/// A token bucket per API token.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl Limiter {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Limiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `token`'s bucket; `Err` with the seconds to
    /// wait when it is empty.
    fn take(&self, token: i64, now: Instant) -> Result<(), u64> {
        // Held for a few arithmetic operations; a panic cannot happen inside.
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (level, at) = b.entry(token).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *level) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The `/v1` middleware: who is calling, may they, and not too often.
pub(crate) async fn authenticate(
    State(st): State<Arc<ApiState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return unauthorized("send Authorization: Bearer <token>");
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty() && t.len() <= 128);
    let Some(token) = token else {
        return unauthorized("send Authorization: Bearer <token>");
    };
    let principal = match st.store.authenticate(token).await {
        Ok(Some(p)) => p,
        Ok(None) => return unauthorized("the token is not valid"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reads && principal.role != Role::Admin {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs an admin token",
        )
        .into_response();
    }
    if let Err(wait) = st.limiter.take(principal.token_id, Instant::now()) {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {wait} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let l = Limiter::new(10.0, 3.0);
        let t0 = Instant::now();
        assert!(l.take(1, t0).is_ok());
        assert!(l.take(1, t0).is_ok());
        assert!(l.take(1, t0).is_ok());
        assert_eq!(l.take(1, t0), Err(1));
        // Another token has its own bucket.
        assert!(l.take(2, t0).is_ok());
        // 100 ms at 10/s refills one.
        assert!(l.take(1, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.take(1, t0 + Duration::from_millis(100)).is_err());
    }
}
