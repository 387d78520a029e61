//! Optional bearer-token authentication of the read API: with `--api-token` /
//! `QUOTESTREAM_STORE_API_TOKEN` set (in a cluster from a Secret, see the chart's
//! `store.api.tokenSecret`), every /v1 request needs `Authorization: Bearer <token>`; without
//! it (the default, as in `make run`) the API is open. Ingest, probes, metrics, the page and
//! the OpenAPI document never need it.

use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::QueryApi;
use super::error::QueryError;

/// Shortest token accepted at startup: a guessable token is worse than none, since it looks
/// like protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured token (its Debug never shows it).
#[derive(Clone)]
pub struct ApiToken(String);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// The token from the flag or variable, or why it cannot be used.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "--api-token (QUOTESTREAM_STORE_API_TOKEN) must be at least {MIN_TOKEN_LEN} visible ASCII characters \
                 (e.g. `openssl rand -hex 32`); leave it unset for an open read API"
            ));
        }
        Ok(Self(token.to_owned()))
    }

    fn accepts(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

/// Proof that a request may read: the extractor every /v1 handler takes first.
#[derive(Debug, Clone, Copy)]
pub struct Authorized;

impl<S> FromRequestParts<S> for Authorized
where
    S: Send + Sync,
    Arc<QueryApi>: FromRef<S>,
{
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let api = Arc::<QueryApi>::from_ref(state);
        let Some(token) = &api.token else {
            return Ok(Self);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        match given {
            Some(g) if token.accepts(g.trim()) => Ok(Self),
            Some(_) => Err(QueryError::unauthorized(
                "the bearer token is wrong; send the store's token as Authorization: Bearer <token>",
            )),
            None => Err(QueryError::unauthorized(
                "this store's read API needs a token: send Authorization: Bearer <token>",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_or_blank_tokens_are_refused_and_debug_redacts() {
        assert!(ApiToken::new("").is_err());
        assert!(ApiToken::new("short").is_err());
        assert!(ApiToken::new("has a space in it ok").is_err());
        let t = ApiToken::new("0123456789abcdef").unwrap();
        assert!(t.accepts("0123456789abcdef"));
        assert!(!t.accepts("0123456789abcdeF"));
        assert!(!t.accepts("0123456789abcdef0"));
        assert!(!format!("{t:?}").contains("0123"));
    }
}
