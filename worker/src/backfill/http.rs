//! Requests of the history sources: the live sources' token bucket
//! ([`crate::rate_limit::RateLimiter`]) for the request budget, the worker's jittered backoff
//! ([`crate::retry::backoff`]) between attempts, and Retry-After honoured. A 429 with
//! Retry-After pauses *every* request of the run until then, not only the one that got it: the
//! budget is the vendor's, shared by all of them.

use std::sync::Mutex;
use std::time::Duration;

use backon::BackoffBuilder;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use quotestream_api::source_hosts::HostAllowList;

use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::sources::yahoo::{USER_AGENT, excerpt, read_body};

/// Longest Retry-After taken as given; a longer one fails the window (its message says how
/// long the vendor asked for) rather than stalling the run for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Why a request gave no answer. [`FetchError::is_transient`] ones are retried.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{what} answered HTTP 429 Too Many Requests{}", .retry_after.map(|d| format!(" (Retry-After {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        what: &'static str,
        retry_after: Option<Duration>,
    },
    #[error("{what} answered HTTP {status}: {excerpt}")]
    Unavailable {
        what: &'static str,
        status: u16,
        excerpt: String,
    },
    #[error("{what}: {source}")]
    Transport {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} answered HTTP {status}: {message}")]
    Rejected {
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error("{1} sent an answer that is not its protocol: {0}")]
    Decode(String, &'static str),
    #[error("{0}")]
    Body(#[from] crate::sources::yahoo::FetchError),
}

impl FetchError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { retry_after, .. } => {
                retry_after.is_none_or(|d| d <= MAX_RETRY_AFTER)
            }
            Self::Unavailable { .. } | Self::Transport { .. } => true,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Retries of one request.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retries: 6,
        }
    }
}

/// The HTTP client of a run, its budget and its retries.
#[derive(Debug)]
pub struct HistoryHttp {
    client: reqwest::Client,
    limiter: RateLimiter,
    metrics: Metrics,
    retry: RetryPolicy,
    /// No request leaves before this instant (set by a Retry-After).
    paused_until: Mutex<Option<tokio::time::Instant>>,
}

impl HistoryHttp {
    /// `requests_per_hour` with a burst of `burst` requests (the live polling source's rule);
    /// redirects followed only to `hosts` (the run's base URL is checked against them before).
    pub fn new(
        requests_per_hour: f64,
        burst: u32,
        retry: RetryPolicy,
        timeout: Duration,
        hosts: HostAllowList,
    ) -> Result<Self, String> {
        quotestream_runtime::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(crate::sources::hosts::redirect_policy(hosts))
            .timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let metrics = Metrics::new("backfill", 0).map_err(|e| format!("metrics: {e}"))?;
        Ok(Self {
            client,
            limiter: RateLimiter::new(requests_per_hour, burst),
            metrics,
            retry,
            paused_until: Mutex::new(None),
        })
    }

    /// Times a request had to wait for the budget.
    pub fn rate_limit_waits(&self) -> u64 {
        self.metrics.rate_limit_hits.get()
    }

    /// GET `url` with `headers` until it succeeds, fails for good or the retries run out;
    /// `what` names the endpoint in errors. Returns the body of a 200.
    pub async fn get(
        &self,
        url: &Url,
        headers: &HeaderMap,
        what: &'static str,
    ) -> Result<bytes::Bytes, FetchError> {
        let mut delays = crate::retry::backoff(self.retry.min_delay, self.retry.max_delay)
            .with_max_times(self.retry.max_retries)
            .build();
        loop {
            let error = match self.attempt(url, headers, what).await {
                Ok(body) => return Ok(body),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            let Some(backoff) = delays.next() else {
                return Err(error);
            };
            let pause = match error.retry_after() {
                Some(after) => {
                    self.pause_all(after);
                    after
                }
                None => backoff,
            };
            tracing::warn!(error = %error, retry_in = ?pause, "backfill: request failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    fn pause_all(&self, after: Duration) {
        let until = tokio::time::Instant::now() + after;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    async fn attempt(
        &self,
        url: &Url,
        headers: &HeaderMap,
        what: &'static str,
    ) -> Result<bytes::Bytes, FetchError> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused {
            tokio::time::sleep_until(until).await;
        }
        self.limiter.acquire(&self.metrics).await;
        let response = self
            .client
            .get(url.clone())
            .headers(headers.clone())
            .send()
            .await
            .map_err(|source| FetchError::Transport { what, source })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = read_body(response, what).await?;
        match status {
            StatusCode::OK => Ok(body),
            StatusCode::TOO_MANY_REQUESTS => Err(FetchError::RateLimited { what, retry_after }),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                Err(FetchError::Unavailable {
                    what,
                    status: s.as_u16(),
                    excerpt: excerpt(&body),
                })
            }
            s => Err(FetchError::Rejected {
                what,
                status: s.as_u16(),
                message: vendor_message(&body),
            }),
        }
    }
}

/// Retry-After in seconds (the HTTP-date form is not used by these vendors).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What a vendor said in an error body: Yahoo's `chart.error.description`, Alpaca's
/// `message`, Polygon's `error`/`message`; otherwise only the size (never a foreign body).
fn vendor_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for said in [&v["message"], &v["error"]] {
            if let Some(text) = said.as_str() {
                return format!("{:?}", text.chars().take(200).collect::<String>());
            }
        }
    }
    excerpt(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn vendor_messages_are_named_and_foreign_bodies_are_not_shown() {
        assert_eq!(
            vendor_message(br#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#),
            "Yahoo says \"No data found, symbol may be delisted\""
        );
        assert_eq!(
            vendor_message(br#"{"message":"forbidden."}"#),
            "\"forbidden.\""
        );
        assert!(vendor_message(b"<html>secret</html>").contains("not shown"));
        let too_long = FetchError::RateLimited {
            what: "x",
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert!(
            !too_long.is_transient(),
            "an hour's Retry-After fails the window"
        );
    }
}
