//! The HTTP side: one v7 quote request for a chunk of symbols, with the session, the request
//! budget, and retries (jittered exponential backoff) on 429, 5xx and network errors.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{StatusCode, Url};

use super::config::{YahooConfig, check_url};
use super::crumb::{Endpoints, Session, Sessions};
use super::wire::{self, DecodeError, Decoded};
use crate::sources::{SourceContext, SourceError};

/// Yahoo refuses clients that do not look like a browser (getcrumb answers 429).
pub const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// Why a request gave no quotes. [`FetchError::is_transient`] ones are retried.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} answered HTTP 429 Too Many Requests")]
    RateLimited(&'static str),
    #[error("{what} answered HTTP {status}: {excerpt}")]
    Unavailable {
        what: &'static str,
        status: u16,
        excerpt: String,
    },
    #[error("{0}: {1}")]
    Transport(&'static str, #[source] reqwest::Error),
    #[error("the quote API answered HTTP 401 Invalid Crumb even with a new cookie and crumb")]
    InvalidCrumb,
    #[error("the quote API answered HTTP {status}: {excerpt}")]
    Rejected { status: u16, excerpt: String },
    #[error("no Yahoo session: {0}")]
    Crumb(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(
        "{what} sent a body larger than {limit} bytes; it was refused unread (a proxy or a broken answer: Yahoo's are well below that)"
    )]
    Oversized { what: &'static str, limit: usize },
}

impl FetchError {
    /// Worth another try after a pause. A malformed body is not: the same request would most
    /// likely get the same answer, and the next cycle asks again anyway.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited(_) | Self::Unavailable { .. } | Self::Transport(..)
        )
    }

    /// The `streamer_errors_total{type}` label of a chunk given up for this error.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            _ => "fetch",
        }
    }
}

/// Reads a response body of at most [`crate::bounds::MAX_HTTP_BODY_BYTES`], chunk by chunk:
/// a larger one (announced by Content-Length or not) is refused once the limit is passed,
/// never buffered whole.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    what: &'static str,
) -> Result<bytes::Bytes, FetchError> {
    let limit = crate::bounds::MAX_HTTP_BODY_BYTES;
    let oversized = FetchError::Oversized { what, limit };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(oversized);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Transport(what, e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(oversized);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[derive(Debug)]
pub struct YahooClient {
    http: reqwest::Client,
    cookie_url: Url,
    crumb_url: Url,
    quote_url: Url,
    retry: ExponentialBuilder,
    sessions: Sessions,
}

impl YahooClient {
    pub fn new(config: &YahooConfig) -> Result<Self, SourceError> {
        // reqwest builds its rustls configuration even for plain-http clients and panics
        // without a process-wide crypto provider (`rustls-no-provider`).
        quotestream_runtime::install_crypto_provider();
        let base = config.base_url.trim_end_matches('/');
        check_url("yahoo base URL", base)?;
        let cookie_url = check_url("yahoo cookie URL", &config.cookie_url)?;
        let endpoint = |path: &str| check_url("yahoo base URL", &format!("{base}{path}"));
        // A redirect is followed only to an allowed host (Yahoo's cookie page may redirect
        // through its consent pages; an allowed server must not bounce the client elsewhere).
        let redirects = crate::sources::hosts::redirect_policy(config.hosts.clone());
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(redirects)
            .cookie_store(true)
            .timeout(config.timeout)
            .build()
            .map_err(|e| SourceError::Config(format!("yahoo HTTP client: {e}")))?;
        let retry = crate::retry::backoff(config.retry.min_delay, config.retry.max_delay)
            .with_max_times(config.retry.max_retries);
        Ok(Self {
            http,
            cookie_url,
            crumb_url: endpoint("/v1/test/getcrumb")?,
            quote_url: endpoint("/v7/finance/quote")?,
            retry,
            sessions: Sessions::default(),
        })
    }

    /// Quotes of `symbols` (Yahoo spellings), retrying transient failures.
    pub async fn fetch(
        &self,
        symbols: &[String],
        ctx: &SourceContext,
    ) -> Result<Decoded, FetchError> {
        (|| self.attempt(symbols, ctx))
            .retry(self.retry)
            .when(FetchError::is_transient)
            .notify(|e: &FetchError, pause: Duration| {
                tracing::warn!(error = %e, retry_in = ?pause, symbols = symbols.len(), "yahoo: request failed; backing off");
            })
            .await
    }

    /// One request; on 401 Invalid Crumb, one more with a new session.
    async fn attempt(
        &self,
        symbols: &[String],
        ctx: &SourceContext,
    ) -> Result<Decoded, FetchError> {
        let endpoints = Endpoints {
            http: &self.http,
            cookie_url: &self.cookie_url,
            crumb_url: &self.crumb_url,
        };
        let session = self.sessions.current(&endpoints, ctx).await?;
        match self.request(symbols, &session, ctx).await {
            Err(FetchError::InvalidCrumb) => {
                let session = self.sessions.renew(&session, &endpoints, ctx).await?;
                self.request(symbols, &session, ctx).await
            }
            other => other,
        }
    }

    async fn request(
        &self,
        symbols: &[String],
        session: &Session,
        ctx: &SourceContext,
    ) -> Result<Decoded, FetchError> {
        ctx.rate_limit.acquire(&ctx.metrics).await;
        let mut url = self.quote_url.clone();
        url.query_pairs_mut()
            .append_pair("symbols", &symbols.join(","))
            .append_pair("crumb", &session.crumb)
            .append_pair("formatted", "false")
            .append_pair("fields", wire::FIELDS);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Transport("the quote API", e))?;
        let status = response.status();
        let body = read_body(response, "the quote API").await?;
        match status {
            StatusCode::OK => Ok(wire::decode(&body)?),
            StatusCode::UNAUTHORIZED => Err(FetchError::InvalidCrumb),
            StatusCode::TOO_MANY_REQUESTS => {
                ctx.metrics.rate_limit_hits.inc();
                Err(FetchError::RateLimited("the quote API"))
            }
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                Err(FetchError::Unavailable {
                    what: "the quote API",
                    status: s.as_u16(),
                    excerpt: excerpt(&body),
                })
            }
            s => Err(FetchError::Rejected {
                status: s.as_u16(),
                excerpt: excerpt(&body),
            }),
        }
    }
}

/// What logs and errors say about a reply body: Yahoo's own error text when the body has the
/// shape of a Yahoo error, its outage page by name, otherwise only the size — never the body
/// itself. A `baseUrl` pointed at some internal service (even an allowed host: loopback is the
/// pod's own sidecars) must not get that service's pages copied into the logs.
pub(crate) fn excerpt(body: &[u8]) -> String {
    if let Some(said) = yahoo_error(body) {
        let flat: String = said.split_whitespace().collect::<Vec<_>>().join(" ");
        return match flat.char_indices().nth(120) {
            Some((cut, _)) => format!("Yahoo says {:?}…", &flat[..cut]),
            None => format!("Yahoo says {flat:?}"),
        };
    }
    if String::from_utf8_lossy(body).contains("Will be right back") {
        return "Yahoo's \"Will be right back\" page (Yahoo is down)".to_owned();
    }
    format!("a {}-byte body (not shown)", body.len())
}

/// The description of a Yahoo error body: `{"finance":{"error":{"description":…}}}` (getcrumb,
/// auth) or `{"quoteResponse":{"error":{"description":…}}}`, or one of the bare texts Yahoo's
/// edge answers with.
fn yahoo_error(body: &[u8]) -> Option<String> {
    const BARE: [&str; 5] = [
        "Too Many Requests",
        "Invalid Crumb",
        "Unauthorized",
        "Forbidden",
        "Not Found",
    ];
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return ["finance", "quoteResponse", "chart"]
            .iter()
            .find_map(|root| {
                let e = &v[root]["error"];
                e["description"]
                    .as_str()
                    .or(e["code"].as_str())
                    .map(str::to_owned)
            });
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    BARE.iter()
        .find(|known| known.eq_ignore_ascii_case(text))
        .map(|known| (*known).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_for_yahoo_over_https() {
        // Installs the rustls provider reqwest needs; a second client must not trip over it.
        YahooClient::new(&YahooConfig::default()).unwrap();
        YahooClient::new(&YahooConfig::default()).unwrap();
    }

    #[test]
    fn excerpts_name_yahoo_errors_and_never_show_other_bodies() {
        assert_eq!(
            excerpt(b"Too Many Requests"),
            "Yahoo says \"Too Many Requests\""
        );
        let crumb = br#"{"finance":{"result":null,"error":{"code":"Unauthorized","description":"Invalid Crumb"}}}"#;
        assert_eq!(excerpt(crumb), "Yahoo says \"Invalid Crumb\"");
        assert!(excerpt(b"<html><p>Will be right back...</p></html>").contains("Yahoo is down"));
        for internal in [
            &b"<html><title>Envoy admin</title>cluster secrets here</html>"[..],
            br#"{"AccessKeyId":"ASIA-internal","SecretAccessKey":"internal"}"#,
            b"internal-token-0123456789",
        ] {
            let shown = excerpt(internal);
            assert_eq!(
                shown,
                format!("a {}-byte body (not shown)", internal.len()),
                "{shown}"
            );
        }
        assert!(excerpt(&[b'x'; 500]).contains("500-byte"));
    }
}
