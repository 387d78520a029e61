//! One POST /quotes/batch and what its answer means for the batch.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::config::StorageConfig;

/// Header carrying a key derived from the body: a retried batch has the same key, so storage
/// can recognise a batch it already stored when only the answer was lost.
pub use quotestream_api::batch::IDEMPOTENCY_KEY;
/// How much of a rejection's body goes into the log.
const EXCERPT_CHARS: usize = 512;

/// What to do with a batch after one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: storage has the batch. Also 409 Conflict: storage already has these quotes (a
    /// duplicate key), which is what a retry wanted.
    Accepted,
    /// 408, 5xx, timeout or connection failure, and 401/403/404/407 (a proxy or gateway in
    /// front of storage refusing for now, or a wrong URL: either way not the batch's fault):
    /// send the same batch again later, after `retry_after` when the server said so.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    /// 429: storage is up and asks for a pause of `retry_after` (back-pressure, not a failure:
    /// it does not count towards the circuit breaker).
    SlowDown {
        why: String,
        retry_after: Option<Duration>,
    },
    /// Any other answer (400, 413, 422, ...): storage refuses these bytes. Sending them again
    /// cannot succeed; smaller parts of the batch may.
    Rejected { why: String },
}

/// The HTTP side of the sink.
#[derive(Debug, Clone)]
pub struct StorageClient {
    http: reqwest::Client,
    endpoint: Url,
}

impl StorageClient {
    pub fn new(config: &StorageConfig) -> Result<Self, reqwest::Error> {
        // reqwest builds its rustls configuration even for plain-http clients and panics
        // without a process-wide crypto provider (`rustls-no-provider`).
        quotestream_runtime::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            // A followed 301/302 would turn the POST into a bodiless GET; a redirect is
            // reported as a configuration problem instead (see `classify`).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("quotestream-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            endpoint: config.endpoint(),
        })
    }

    /// The endpoint as logs and errors may show it (no credentials).
    pub fn endpoint_redacted(&self) -> String {
        quotestream_runtime::redact_url(self.endpoint.as_str())
    }

    /// Posts one batch body (already JSON) and classifies the outcome.
    pub async fn post(&self, body: Bytes, key: &str) -> Answer {
        let sent = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, key)
            .body(body)
            .send()
            .await;
        // A reqwest error names the URL, which may carry credentials: never show it (the
        // endpoint is logged once, redacted, when the sink starts).
        let response = match sent.map_err(reqwest::Error::without_url) {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Answer::Rejected {
                    why: format!(
                        "request to {} could not be built: {e}",
                        quotestream_runtime::redact_url(self.endpoint.as_str())
                    ),
                };
            }
            Err(e) => {
                return Answer::Retry {
                    why: describe_transport_error(&e),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), jiff::Timestamp::now());
        match classify(status) {
            Class::Accepted => Answer::Accepted,
            Class::Retry => Answer::Retry {
                why: format!("storage answered {status}"),
                retry_after,
            },
            Class::SlowDown => Answer::SlowDown {
                why: format!("storage answered {status}"),
                retry_after,
            },
            Class::NotTheBatch => Answer::Retry {
                why: format!(
                    "storage answered {status}: not about the batch (a proxy, credentials or the URL: check spec.sinks.storage.url / STORAGE_URL if it lasts); the batch is kept"
                ),
                retry_after,
            },
            Class::Rejected => {
                let body = response.text().await.unwrap_or_default();
                Answer::Rejected {
                    why: format!("storage answered {status}: {}", excerpt(&body)),
                }
            }
            Class::Redirect => {
                let to = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_owned();
                Answer::Rejected {
                    why: format!(
                        "storage answered {status} redirecting to {to}; set spec.sinks.storage.url (or STORAGE_URL) to the final address"
                    ),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Accepted,
    Retry,
    SlowDown,
    NotTheBatch,
    Rejected,
    Redirect,
}

/// 2xx and 409 (duplicate key: already stored) accepted; 429 back-pressure; 408 and 5xx
/// retried (the server may succeed later); 401, 403, 404 and 407 retried too (whoever answered
/// did not look at the batch); 3xx a misconfigured URL; everything else (other 4xx, stray 1xx)
/// rejected, as resending the same bytes cannot change the answer.
fn classify(status: StatusCode) -> Class {
    if status.is_success() || status == StatusCode::CONFLICT {
        Class::Accepted
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Class::SlowDown
    } else if matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
            | StatusCode::PROXY_AUTHENTICATION_REQUIRED
    ) {
        Class::NotTheBatch
    } else if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
        Class::Retry
    } else if status.is_redirection() {
        Class::Redirect
    } else {
        Class::Rejected
    }
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // The source chain holds the useful part (connection refused, DNS, TLS).
    let mut why = format!("request {kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why.push_str(": ");
        why.push_str(&s.to_string());
        source = s.source();
    }
    why
}

/// The Retry-After header: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the
/// past means "now".
fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// The start of a response body for a log line, cut at a character boundary.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None if body.is_empty() => "(empty body)".to_owned(),
        None => body.to_owned(),
    }
}

/// The Idempotency-Key of a batch body: xxh64 of the exact bytes, 16 hex digits. The body is
/// built deterministically from the quotes, so the same batch always has the same key.
pub fn idempotency_key(body: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh64::xxh64(body, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_are_classified_like_the_contract_needs() {
        for (code, class) in [
            (200, Class::Accepted),
            (201, Class::Accepted),
            (204, Class::Accepted),
            (409, Class::Accepted),
            (408, Class::Retry),
            (429, Class::SlowDown),
            (500, Class::Retry),
            (502, Class::Retry),
            (503, Class::Retry),
            (401, Class::NotTheBatch),
            (403, Class::NotTheBatch),
            (404, Class::NotTheBatch),
            (407, Class::NotTheBatch),
            (400, Class::Rejected),
            (413, Class::Rejected),
            (422, Class::Rejected),
            (301, Class::Redirect),
            (307, Class::Redirect),
        ] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap()),
                class,
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: jiff::Timestamp = "2026-01-20T14:30:00Z".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Tue, 20 Jan 2026 14:30:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Tue, 20 Jan 2026 14:00:00 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt(""), "(empty body)");
        assert_eq!(excerpt(" bad ticker "), "bad ticker");
        let long = "é".repeat(2000);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn the_key_depends_only_on_the_bytes() {
        let a = idempotency_key(br#"{"quotes":[]}"#);
        assert_eq!(a, idempotency_key(br#"{"quotes":[]}"#));
        assert_eq!(a.len(), 16);
        assert_ne!(a, idempotency_key(br#"{"quotes":[1]}"#));
    }
}
