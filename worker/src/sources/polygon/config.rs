//! `spec.source.polygon` and the API key from the environment.

use std::collections::HashMap;

use quotestream_api::contract::{self, env::POLYGON_API_KEY};
use quotestream_api::crd::PolygonSource;

use quotestream_api::crd::Source as SourceSpec;
use quotestream_api::crd::SourceType;

use crate::sources::hosts::{allowed_hosts, check_host};
use crate::sources::websocket::check_url;
use crate::sources::websocket::{WebsocketSettings, WebsocketSource};
use crate::sources::{AnySource, ConfigError, Connector, SourceError};

/// The spec field naming the API key's Secret.
const API_KEY: &str = "spec.source.polygon.apiKeySecretRef";

/// Massive's real-time stocks cluster (the host was `socket.polygon.io` before the rename).
pub const DEFAULT_URL: &str = "wss://socket.massive.com/stocks";

#[derive(Clone, PartialEq)]
pub struct PolygonConfig {
    pub url: String,
    pub api_key: String,
    /// Where the key comes from, for messages that tell the user which Secret to fix.
    pub key_source: String,
}

// The API key never reaches a log line.
impl std::fmt::Debug for PolygonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolygonConfig")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("key_source", &self.key_source)
            .finish()
    }
}

impl Connector for PolygonConfig {
    const NAME: &'static str = super::NAME;
    type Spec = PolygonSource;

    fn spec(source: &SourceSpec) -> Option<&PolygonSource> {
        source.polygon.as_ref()
    }

    /// `spec` is the worker configuration's `source.polygon`; the API key is `POLYGON_API_KEY`
    /// in `env`.
    fn from_spec(
        spec: Option<&PolygonSource>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let spec = spec.ok_or(ConfigError::Missing {
            source_type: super::NAME,
            field: API_KEY,
            fix: "name the Secret key holding the API key",
        })?;
        let secret = &spec.api_key_secret_ref;
        let key_source = format!(
            "key {:?} of Secret {:?} ({API_KEY})",
            secret.key, secret.name
        );
        let api_key = contract::env_value(env, POLYGON_API_KEY)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::Credential {
                var: POLYGON_API_KEY,
                field: API_KEY,
                fix: format!(
                    "the operator fills it from the {key_source}; put the Massive/Polygon API key there"
                ),
            })?;
        let url = spec.url.clone().unwrap_or_else(|| DEFAULT_URL.to_owned());
        check_url(
            "spec.source.polygon.url",
            &url,
            &format!("use wss://host/stocks (default {DEFAULT_URL})"),
        )?;
        // The API key goes to this host in the auth frame.
        check_host(
            &allowed_hosts(SourceType::Polygon, env)?,
            "spec.source.polygon.url",
            &url,
        )?;
        Ok(Self {
            url,
            api_key,
            key_source,
        })
    }

    fn build(self, source: &SourceSpec) -> Result<AnySource, SourceError> {
        Ok(AnySource::Polygon(WebsocketSource::new(
            super::Polygon::new(self),
            WebsocketSettings::from_spec(source)?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use quotestream_api::crd::SecretKeyRef;

    use super::*;

    fn key(key: &str) -> HashMap<String, String> {
        HashMap::from([(POLYGON_API_KEY.to_owned(), key.to_owned())])
    }

    fn spec(url: Option<&str>) -> PolygonSource {
        PolygonSource {
            api_key_secret_ref: SecretKeyRef {
                name: "massive".into(),
                key: "apiKey".into(),
            },
            url: url.map(str::to_owned),
            max_connections: None,
        }
    }

    #[test]
    fn defaults_to_massive_and_takes_the_url_override() {
        let c = PolygonConfig::from_spec(Some(&spec(None)), &key("k3y\n")).unwrap();
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(
            c.api_key, "k3y",
            "a trailing newline from the Secret is dropped"
        );
        let delayed = spec(Some("wss://delayed.massive.com/stocks"));
        let c = PolygonConfig::from_spec(Some(&delayed), &key("k")).unwrap();
        assert_eq!(c.url, "wss://delayed.massive.com/stocks");
    }

    #[test]
    fn a_missing_key_names_the_secret_reference() {
        for env in [HashMap::new(), key(""), key("  ")] {
            let e = PolygonConfig::from_spec(Some(&spec(None)), &env)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("POLYGON_API_KEY")
                    && e.contains("spec.source.polygon.apiKeySecretRef")
                    && e.contains("\"massive\""),
                "{e}"
            );
        }
        let e = PolygonConfig::from_spec(None, &key("k"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.source.polygon.apiKeySecretRef"), "{e}");
    }

    #[test]
    fn rejects_non_websocket_urls_and_never_prints_the_key() {
        let e =
            PolygonConfig::from_spec(Some(&spec(Some("https://socket.massive.com"))), &key("k"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("spec.source.polygon.url"), "{e}");
        let c = PolygonConfig::from_spec(Some(&spec(None)), &key("s3cret")).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
