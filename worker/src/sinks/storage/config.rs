//! Settings of the storage sink: the QuoteStream's `spec.sinks.storage` plus the timings the
//! spec does not expose (defaults chosen for a storage API in the same cluster).

use std::collections::HashMap;
use std::time::Duration;

use quotestream_api::contract::{self, Origin, env::STORAGE_URL};
use quotestream_api::crd::StorageSink as StorageSpec;
use reqwest::Url;

use crate::quote::wire::MAX_STORAGE_BATCH;

/// Path of the batch endpoint under the base URL (contract 001).
pub const BATCH_PATH: &str = "quotes/batch";

/// How the storage sink batches, posts and retries.
///
/// There is deliberately no "maximum retries": storage is a durable sink, so while the worker
/// runs a batch that failed for a retryable reason (408, 429, 5xx, timeout, connection error)
/// is retried until it is accepted. Retries are paced in two layers: jittered exponential
/// backoff between `retry_min_delay` and `retry_max_delay` while the breaker is closed, then,
/// after `breaker_failures` consecutive failures, one trial request per `breaker_open_for`
/// while storage stays down. Meanwhile the batch stays in hand, the sink's queue fills and
/// back-pressure holds the source. Only the shutdown drain deadline ends the retries.
#[derive(Clone, PartialEq)]
pub struct StorageConfig {
    /// Base URL of the storage API; batches go to `{url}/quotes/batch`.
    pub url: Url,
    /// Quotes per request, 1..=1000 (contract INV-001/006).
    pub batch_size: usize,
    /// How long quotes may wait for a batch to fill before a smaller batch is sent.
    pub linger: Duration,
    /// Whole-request timeout (connect, send, answer).
    pub request_timeout: Duration,
    /// Consecutive failed requests that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial request is let through.
    pub breaker_open_for: Duration,
    /// First retry delay while the breaker is closed (doubles per failure, plus jitter).
    pub retry_min_delay: Duration,
    /// Longest backoff delay; a 429's Retry-After is honoured up to
    /// `max(retry_max_delay, breaker_open_for)`.
    pub retry_max_delay: Duration,
}

/// A storage setting the sink cannot work with. Messages name the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageConfigError {
    #[error(
        "{field} {value:?} is not a valid URL ({reason}); write the storage API's base URL, e.g. http://opa-quotes-storage:8000"
    )]
    Url {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("{field} {value:?} must use http or https, not {scheme:?}")]
    Scheme {
        field: &'static str,
        value: String,
        scheme: String,
    },
    #[error(
        "{field} {value:?} has a query or fragment; give only the base URL (the sink appends /quotes/batch)"
    )]
    QueryOrFragment { field: &'static str, value: String },
    #[error(
        "spec.sinks.storage.batchSize is {0}; set it between 1 and {MAX_STORAGE_BATCH} (the storage contract's batch limit)"
    )]
    BatchSize(i64),
    #[error("storage {field} must be greater than zero (got {value:?})")]
    Zero { field: &'static str, value: String },
    #[error(
        "storage retry_min_delay {min:?} is above retry_max_delay {max:?}; make the minimum the smaller one"
    )]
    RetryDelays { min: Duration, max: Duration },
}

/// The URL may carry credentials (`STORAGE_URL` from a Secret): `Debug` shows it redacted.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &quotestream_runtime::redact_url(self.url.as_str()))
            .field("batch_size", &self.batch_size)
            .field("linger", &self.linger)
            .field("request_timeout", &self.request_timeout)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_open_for", &self.breaker_open_for)
            .field("retry_min_delay", &self.retry_min_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .finish()
    }
}

impl StorageConfig {
    pub const DEFAULT_LINGER: Duration = Duration::from_millis(250);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
    pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(60);
    pub const DEFAULT_RETRY_MIN_DELAY: Duration = Duration::from_millis(200);
    pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

    /// The settings of `spec.sinks.storage` with default timings. The URL is `STORAGE_URL`
    /// when set and not blank (set it through `spec.worker.env`, e.g. from a Secret, when the
    /// URL carries credentials), else `spec.url` ([`contract::env_or_spec`]).
    pub fn from_spec(
        spec: &StorageSpec,
        env: &HashMap<String, String>,
    ) -> Result<Self, StorageConfigError> {
        let (field, raw) = match contract::env_or_spec(env, STORAGE_URL, Some(&spec.url)) {
            Some((url, Origin::Env(var))) => (var, url),
            Some((url, Origin::Spec)) => ("spec.sinks.storage.url", url),
            None => ("spec.sinks.storage.url", ""),
        };
        let url = parse_base_url(field, raw)?;
        let batch_size = usize::try_from(spec.batch_size)
            .ok()
            .filter(|n| (1..=MAX_STORAGE_BATCH).contains(n))
            .ok_or(StorageConfigError::BatchSize(spec.batch_size.into()))?;
        let config = Self {
            url,
            batch_size,
            linger: Self::DEFAULT_LINGER,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            breaker_failures: Self::DEFAULT_BREAKER_FAILURES,
            breaker_open_for: Self::DEFAULT_BREAKER_OPEN_FOR,
            retry_min_delay: Self::DEFAULT_RETRY_MIN_DELAY,
            retry_max_delay: Self::DEFAULT_RETRY_MAX_DELAY,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks settings changed after construction (tests shorten the timings).
    pub fn validate(&self) -> Result<(), StorageConfigError> {
        if !(1..=MAX_STORAGE_BATCH).contains(&self.batch_size) {
            return Err(StorageConfigError::BatchSize(
                i64::try_from(self.batch_size).unwrap_or(i64::MAX),
            ));
        }
        check_url("url", &self.url)?;
        let zero = |field: &'static str, value: String| StorageConfigError::Zero { field, value };
        if self.request_timeout.is_zero() {
            return Err(zero(
                "request_timeout",
                format!("{:?}", self.request_timeout),
            ));
        }
        if self.breaker_failures == 0 {
            return Err(zero("breaker_failures", "0".into()));
        }
        if self.breaker_open_for.is_zero() {
            return Err(zero(
                "breaker_open_for",
                format!("{:?}", self.breaker_open_for),
            ));
        }
        if self.retry_min_delay.is_zero() {
            return Err(zero(
                "retry_min_delay",
                format!("{:?}", self.retry_min_delay),
            ));
        }
        if self.retry_min_delay > self.retry_max_delay {
            return Err(StorageConfigError::RetryDelays {
                min: self.retry_min_delay,
                max: self.retry_max_delay,
            });
        }
        Ok(())
    }

    /// `{url}/quotes/batch`, whether or not the base URL ends with a slash.
    pub fn endpoint(&self) -> Url {
        let mut endpoint = self.url.clone();
        let path = format!("{}/{BATCH_PATH}", self.url.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        endpoint
    }

    /// The longest a Retry-After is honoured: a server asking for more is retried after this.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_max_delay.max(self.breaker_open_for)
    }
}

fn parse_base_url(field: &'static str, raw: &str) -> Result<Url, StorageConfigError> {
    let url = Url::parse(raw).map_err(|e| StorageConfigError::Url {
        field,
        value: quotestream_runtime::redact_url(raw),
        reason: e.to_string(),
    })?;
    check_url(field, &url)?;
    Ok(url)
}

fn check_url(field: &'static str, url: &Url) -> Result<(), StorageConfigError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StorageConfigError::Scheme {
            field,
            value: quotestream_runtime::redact_url(url.as_str()),
            scheme: url.scheme().to_owned(),
        });
    }
    if !url.has_host() {
        return Err(StorageConfigError::Url {
            field,
            value: quotestream_runtime::redact_url(url.as_str()),
            reason: "it has no host".into(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(StorageConfigError::QueryOrFragment {
            field,
            value: quotestream_runtime::redact_url(url.as_str()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(url: &str) -> HashMap<String, String> {
        HashMap::from([(STORAGE_URL.to_owned(), url.to_owned())])
    }

    fn spec(url: &str, batch_size: i32) -> StorageSpec {
        StorageSpec {
            url: url.into(),
            batch_size,
            buffer: None,
        }
    }

    #[test]
    fn credentials_never_show() {
        let c = StorageConfig::from_spec(
            &spec("http://s:8000", 10),
            &env("http://user:pw-s3cr3t@storage:8000/base"),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
        for bad in [
            "pw-s3cr3t",
            "ftp://u:pw-s3cr3t@h/",
            "http://u:pw-s3cr3t@h/?q=1",
        ] {
            let e = StorageConfig::from_spec(&spec("http://s:8000", 10), &env(bad)).unwrap_err();
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn defaults_and_endpoint() {
        let c =
            StorageConfig::from_spec(&spec("http://storage:8000", 500), &HashMap::new()).unwrap();
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.linger, Duration::from_millis(250));
        assert_eq!(c.breaker_failures, 5);
        assert_eq!(c.breaker_open_for, Duration::from_secs(60));
        assert_eq!(c.endpoint().as_str(), "http://storage:8000/quotes/batch");
        let c =
            StorageConfig::from_spec(&spec("https://storage/api/v1/", 1), &HashMap::new()).unwrap();
        assert_eq!(c.endpoint().as_str(), "https://storage/api/v1/quotes/batch");
    }

    #[test]
    fn storage_url_env_overrides_the_spec_when_non_empty() {
        let s = spec("http://from-spec:8000", 10);
        let c = StorageConfig::from_spec(&s, &env("http://user:pw@from-env:9000")).unwrap();
        assert_eq!(c.url.host_str(), Some("from-env"));
        let c = StorageConfig::from_spec(&s, &env("  ")).unwrap();
        assert_eq!(c.url.host_str(), Some("from-spec"));
        let err = StorageConfig::from_spec(&s, &env("not a url")).unwrap_err();
        assert!(err.to_string().starts_with("STORAGE_URL"), "{err}");
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let err = StorageConfig::from_spec(&spec("http://s", 0), &HashMap::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.sinks.storage.batchSize is 0")
                && err.to_string().contains("between 1 and 1000"),
            "{err}"
        );
        assert!(StorageConfig::from_spec(&spec("http://s", 1001), &HashMap::new()).is_err());
        let err = StorageConfig::from_spec(&spec("storage:8000", 10), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("http or https"), "{err}");
        let err = StorageConfig::from_spec(&spec("ftp://s", 10), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("spec.sinks.storage.url"), "{err}");
        let err =
            StorageConfig::from_spec(&spec("http://s/?x=1", 10), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("base URL"), "{err}");
        let mut c = StorageConfig::from_spec(&spec("http://s", 10), &HashMap::new()).unwrap();
        c.breaker_failures = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("breaker_failures")
        );
        c.breaker_failures = 1;
        c.retry_min_delay = Duration::from_secs(20);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("retry_min_delay")
        );
    }
}
