//! Settings of the yahoo source, from `spec.source.yahoo`.

use std::collections::HashMap;
use std::time::Duration;

use quotestream_api::crd::YahooSource;

use quotestream_api::crd::Source as SourceSpec;
use quotestream_api::crd::SourceType;
use quotestream_api::source_hosts::HostAllowList;

use crate::sources::hosts::{allowed_hosts, check_host};
use crate::sources::{AnySource, ConfigError, Connector, SourceError};

/// Yahoo's quote API.
pub const DEFAULT_BASE_URL: &str = "https://query1.finance.yahoo.com";
/// The page that hands out Yahoo's session cookie (`A3`, scoped to `.yahoo.com`).
pub const DEFAULT_COOKIE_URL: &str = "https://fc.yahoo.com";
pub const DEFAULT_SYMBOLS_PER_REQUEST: usize = 50;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests of one cycle in flight at once: enough to hide latency, few enough not to look
/// like a burst to Yahoo's edge.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The field of the base URL, named in errors.
const BASE_URL: &str = "spec.source.yahoo.baseUrl";
/// The CRD's bound on `symbolsPerRequest`.
const MAX_SYMBOLS_PER_REQUEST: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct YahooConfig {
    /// Base URL of the quote API, without a trailing slash.
    pub base_url: String,
    /// Where the session cookie comes from.
    pub cookie_url: String,
    pub symbols_per_request: usize,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Requests in flight at once within a cycle.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Hosts the client may reach, redirects included (`QUOTESTREAM_SOURCE_HOSTS`).
    pub hosts: HostAllowList,
}

/// Jittered exponential backoff for 429, 5xx and timeouts within one cycle. After the last
/// retry the chunk is given up for this cycle (counted) and the next cycle tries again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retries: 3,
        }
    }
}

impl Default for YahooConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            cookie_url: DEFAULT_COOKIE_URL.to_owned(),
            symbols_per_request: DEFAULT_SYMBOLS_PER_REQUEST,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
            hosts: HostAllowList::default_for(SourceType::Yahoo),
        }
    }
}

impl Connector for YahooConfig {
    const NAME: &'static str = super::NAME;
    type Spec = YahooSource;

    fn spec(source: &SourceSpec) -> Option<&YahooSource> {
        source.yahoo.as_ref()
    }

    /// Reads `spec.source.yahoo` (absent: all defaults).
    ///
    /// When `baseUrl` points somewhere else (a proxy, a test server), the session cookie is
    /// fetched from that same server: cookies are scoped to a domain, so a cookie from
    /// fc.yahoo.com would never be sent to another host anyway.
    fn from_spec(
        spec: Option<&YahooSource>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self {
            hosts: allowed_hosts(SourceType::Yahoo, env)?,
            ..Self::default()
        };
        if let Some(spec) = spec {
            config.read(spec)?;
        }
        // Both URLs the client starts from; every redirect is checked too (client.rs).
        check_host(&config.hosts, BASE_URL, &config.base_url)?;
        check_host(&config.hosts, BASE_URL, &config.cookie_url)?;
        Ok(config)
    }

    fn build(self, _source: &SourceSpec) -> Result<AnySource, SourceError> {
        Ok(AnySource::Yahoo(super::YahooSource::new(self)?))
    }
}

impl YahooConfig {
    /// Applies the settings of `spec.source.yahoo`.
    fn read(&mut self, spec: &YahooSource) -> Result<(), ConfigError> {
        let config = self;
        if let Some(url) = &spec.base_url {
            let url = url.trim_end_matches('/');
            check_url(BASE_URL, url)?;
            if url != DEFAULT_BASE_URL {
                config.cookie_url = format!("{url}/");
            }
            config.base_url = url.to_owned();
        }
        if let Some(n) = spec.symbols_per_request {
            config.symbols_per_request = usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_SYMBOLS_PER_REQUEST).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    field: "spec.source.yahoo.symbolsPerRequest",
                    value: n.to_string(),
                    fix: format!(
                        "write a number from 1 to {MAX_SYMBOLS_PER_REQUEST} (Yahoo refuses much more than 100)"
                    ),
                })?;
        }
        if let Some(timeout) = &spec.timeout {
            config.timeout =
                crate::bounds::HTTP_TIMEOUT
                    .parse(timeout)
                    .map_err(|e| ConfigError::Invalid {
                        field: "spec.source.yahoo.timeout",
                        value: format!("{timeout:?}"),
                        fix: format!("{e} (e.g. 10s)"),
                    })?;
        }
        Ok(())
    }
}

/// An http(s) URL the client can use, or an error naming the field.
pub(crate) fn check_url(field: &'static str, url: &str) -> Result<reqwest::Url, ConfigError> {
    let invalid = |fix: String| ConfigError::Invalid {
        field,
        value: format!("{url:?}"),
        fix,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(format!(
            "must be an http:// or https:// URL with a host, e.g. {DEFAULT_BASE_URL}"
        )));
    }
    // The client appends its paths (/v7/finance/quote…): a query or fragment in the base
    // would turn them into a parameter and send the request to the base's own path.
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(format!(
            "must not have a query (?…) or fragment (#…), e.g. {DEFAULT_BASE_URL}"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_the_block_is_absent() {
        let c = YahooConfig::from_spec(None, &HashMap::new()).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.cookie_url, DEFAULT_COOKIE_URL);
        assert_eq!(c.symbols_per_request, 50);
        assert_eq!(c.timeout, Duration::from_secs(10));
    }

    #[test]
    fn reads_the_spec() {
        let spec = YahooSource {
            base_url: Some("http://127.0.0.1:8080/".into()),
            symbols_per_request: Some(100),
            timeout: Some("1500ms".into()),
        };
        let c = YahooConfig::from_spec(Some(&spec), &HashMap::new()).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:8080");
        assert_eq!(c.cookie_url, "http://127.0.0.1:8080/");
        assert_eq!(c.symbols_per_request, 100);
        assert_eq!(c.timeout, Duration::from_millis(1500));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |spec: YahooSource| {
            YahooConfig::from_spec(Some(&spec), &HashMap::new())
                .unwrap_err()
                .to_string()
        };
        let e = bad(YahooSource {
            symbols_per_request: Some(0),
            ..Default::default()
        });
        assert!(e.contains("symbolsPerRequest is 0"), "{e}");
        let e = bad(YahooSource {
            timeout: Some("10".into()),
            ..Default::default()
        });
        assert!(e.contains("spec.source.yahoo.timeout"), "{e}");
        let e = bad(YahooSource {
            base_url: Some("ftp://example.com".into()),
            ..Default::default()
        });
        assert!(e.contains("spec.source.yahoo.baseUrl"), "{e}");
        let e = bad(YahooSource {
            base_url: Some("http://127.0.0.1:15000/config_dump?x=".into()),
            ..Default::default()
        });
        assert!(e.contains("query"), "{e}");
    }

    #[test]
    fn only_allowed_hosts_are_used() {
        let internal = YahooSource {
            base_url: Some("http://metadata.internal.example".into()),
            ..Default::default()
        };
        let e = YahooConfig::from_spec(Some(&internal), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.source.yahoo.baseUrl") && e.contains("metadata.internal.example"),
            "{e}"
        );
        // The admin's list replaces the default: without loopback, a local URL is refused, and
        // so is Yahoo itself when the list names only a proxy.
        let env = HashMap::from([(
            quotestream_api::contract::env::SOURCE_HOSTS.to_owned(),
            "proxy.corp.example".to_owned(),
        )]);
        let local = YahooSource {
            base_url: Some("http://127.0.0.1:8080".into()),
            ..Default::default()
        };
        assert!(YahooConfig::from_spec(Some(&local), &env).is_err());
        assert!(YahooConfig::from_spec(None, &env).is_err());
    }
}
