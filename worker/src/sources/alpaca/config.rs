//! `spec.source.alpaca` and the credentials the operator puts in the pod's environment.

use std::collections::HashMap;
use std::fmt;

use quotestream_api::contract::{self, env::ALPACA_KEY_ID, env::ALPACA_SECRET_KEY};
use quotestream_api::crd::{AlpacaFeed, AlpacaSource};

use quotestream_api::crd::Source as SourceSpec;
use quotestream_api::crd::SourceType;

use crate::sources::hosts::{allowed_hosts, check_host};
use crate::sources::websocket::check_url;
use crate::sources::websocket::{WebsocketSettings, WebsocketSource};
use crate::sources::{AnySource, ConfigError, Connector, SourceError};

/// The spec field naming the credentials' Secret.
const CREDENTIALS: &str = "spec.source.alpaca.credentialsSecretRef";

/// Where the feeds live; the feed's name is the last path segment.
pub const DEFAULT_BASE_URL: &str = "wss://stream.data.alpaca.markets/v2";

#[derive(Clone, PartialEq)]
pub struct AlpacaConfig {
    pub url: String,
    pub feed: AlpacaFeed,
    pub key_id: String,
    pub secret_key: String,
    /// Where the credentials come from, for error messages that say what to fix.
    pub secret: SecretNames,
}

/// The Secret and its keys, as `spec.source.alpaca.credentialsSecretRef` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretNames {
    pub name: String,
    pub key_id_key: String,
    pub secret_key_key: String,
}

impl SecretNames {
    /// "Secret alpaca (keys APCA_API_KEY_ID, APCA_API_SECRET_KEY)".
    pub fn describe(&self) -> String {
        format!(
            "Secret {} (keys {}, {}; spec.source.alpaca.credentialsSecretRef)",
            self.name, self.key_id_key, self.secret_key_key
        )
    }
}

// The secret key never reaches a log line.
impl fmt::Debug for AlpacaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlpacaConfig")
            .field("url", &self.url)
            .field("feed", &self.feed)
            .field("key_id", &self.key_id)
            .field("secret_key", &"<redacted>")
            .field("secret", &self.secret)
            .finish()
    }
}

/// The feed's name on the wire and in `spec.source.alpaca.feed`.
pub fn feed_name(feed: AlpacaFeed) -> &'static str {
    match feed {
        AlpacaFeed::Iex => "iex",
        AlpacaFeed::Sip => "sip",
        AlpacaFeed::Test => "test",
    }
}

impl Connector for AlpacaConfig {
    const NAME: &'static str = super::NAME;
    type Spec = AlpacaSource;

    fn spec(source: &SourceSpec) -> Option<&AlpacaSource> {
        source.alpaca.as_ref()
    }

    /// Reads `spec.source.alpaca` and the credentials from `env` (the worker's environment).
    fn from_spec(
        spec: Option<&AlpacaSource>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let spec = spec.ok_or(ConfigError::Missing {
            source_type: super::NAME,
            field: CREDENTIALS,
            fix: "name the Secret with the API key id and secret key",
        })?;
        let feed = spec.feed.unwrap_or(AlpacaFeed::Iex);
        let url = spec
            .url
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_BASE_URL}/{}", feed_name(feed)));
        check_url(
            "spec.source.alpaca.url",
            &url,
            &format!(
                "use wss://host/v2/<feed> or leave it unset (default {DEFAULT_BASE_URL}/<feed>)"
            ),
        )?;
        // Before the credentials are even read: the key pair goes to this host in the login.
        let hosts = allowed_hosts(SourceType::Alpaca, env)?;
        check_host(&hosts, "spec.source.alpaca.url", &url)?;
        let creds = &spec.credentials_secret_ref;
        let secret = SecretNames {
            name: creds.name.clone(),
            key_id_key: creds
                .key_id_key
                .clone()
                .unwrap_or_else(|| ALPACA_KEY_ID.to_owned()),
            secret_key_key: creds
                .secret_key_key
                .clone()
                .unwrap_or_else(|| ALPACA_SECRET_KEY.to_owned()),
        };
        let read = |var: &'static str, key: &str| {
            contract::env_value(env, var)
                .map(str::to_owned)
                .ok_or_else(|| ConfigError::Credential {
                    var,
                    field: CREDENTIALS,
                    fix: format!(
                        "the worker reads it from key {key} of Secret {} ({CREDENTIALS}); put the Alpaca credential under that key",
                        secret.name
                    ),
                })
        };
        let key_id = read(ALPACA_KEY_ID, &secret.key_id_key)?;
        let secret_key = read(ALPACA_SECRET_KEY, &secret.secret_key_key)?;
        Ok(Self {
            url,
            feed,
            key_id,
            secret_key,
            secret,
        })
    }

    fn build(self, source: &SourceSpec) -> Result<AnySource, SourceError> {
        Ok(AnySource::Alpaca(WebsocketSource::new(
            super::Alpaca::new(self),
            WebsocketSettings::from_spec(source)?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use quotestream_api::crd::AlpacaCredentials;

    use super::*;

    fn spec() -> AlpacaSource {
        AlpacaSource {
            credentials_secret_ref: AlpacaCredentials {
                name: "alpaca".into(),
                key_id_key: None,
                secret_key_key: Some("secret".into()),
            },
            feed: None,
            url: None,
            max_connections: None,
        }
    }

    fn env() -> HashMap<String, String> {
        HashMap::from([
            (ALPACA_KEY_ID.to_owned(), "PKTEST".to_owned()),
            (ALPACA_SECRET_KEY.to_owned(), "s3cr3t".to_owned()),
        ])
    }

    #[test]
    fn the_feed_picks_the_url_and_the_url_overrides_it() {
        let c = AlpacaConfig::from_spec(Some(&spec()), &env()).unwrap();
        assert_eq!(c.url, "wss://stream.data.alpaca.markets/v2/iex");
        assert_eq!(
            (c.key_id.as_str(), c.secret_key.as_str()),
            ("PKTEST", "s3cr3t")
        );
        let mut s = spec();
        s.feed = Some(AlpacaFeed::Sip);
        assert_eq!(
            AlpacaConfig::from_spec(Some(&s), &env()).unwrap().url,
            "wss://stream.data.alpaca.markets/v2/sip"
        );
        s.url = Some("ws://127.0.0.1:9000/v2/test".into());
        let c = AlpacaConfig::from_spec(Some(&s), &env()).unwrap();
        assert_eq!(c.url, "ws://127.0.0.1:9000/v2/test");
        assert_eq!(
            c.feed,
            AlpacaFeed::Sip,
            "the feed still names the plan in messages"
        );
    }

    #[test]
    fn a_missing_credential_names_the_secret_and_its_key() {
        let mut env = env();
        env.remove(ALPACA_SECRET_KEY);
        let e = AlpacaConfig::from_spec(Some(&spec()), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("APCA_API_SECRET_KEY is not set")
                && e.contains("key secret of Secret alpaca"),
            "{e}"
        );
        env.insert(ALPACA_SECRET_KEY.into(), "x".into());
        env.insert(ALPACA_KEY_ID.into(), "  ".into());
        let e = AlpacaConfig::from_spec(Some(&spec()), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key APCA_API_KEY_ID of Secret alpaca"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = AlpacaConfig::from_spec(None, &env())
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.alpaca.credentialsSecretRef"), "{e}");
        let mut s = spec();
        s.url = Some("https://stream.data.alpaca.markets/v2/iex".into());
        let e = AlpacaConfig::from_spec(Some(&s), &env())
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.alpaca.url"), "{e}");
    }

    #[test]
    fn the_secret_key_is_never_printed() {
        let c = AlpacaConfig::from_spec(Some(&spec()), &env()).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
