//! `spec.source.yahooStream`.

use quotestream_api::crd::YahooStreamSource;

use std::collections::HashMap;

use quotestream_api::crd::Source as SourceSpec;
use quotestream_api::crd::SourceType;

use crate::sources::hosts::{allowed_hosts, check_host};
use crate::sources::websocket::check_url;
use crate::sources::websocket::{WebsocketSettings, WebsocketSource};
use crate::sources::{AnySource, ConfigError, Connector, SourceError};

/// Yahoo's public live stream; no account, no key.
pub const DEFAULT_URL: &str = "wss://streamer.finance.yahoo.com/?version=2";

#[derive(Debug, Clone, PartialEq)]
pub struct YahooStreamConfig {
    pub url: String,
}

impl Connector for YahooStreamConfig {
    const NAME: &'static str = super::NAME;
    type Spec = YahooStreamSource;

    fn spec(source: &SourceSpec) -> Option<&YahooStreamSource> {
        source.yahoo_stream.as_ref()
    }

    /// Reads `spec.source.yahooStream` (absent: Yahoo's stream); Yahoo needs no credentials.
    fn from_spec(
        spec: Option<&YahooStreamSource>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let url = spec
            .and_then(|s| s.url.clone())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        check_url(
            "spec.source.yahooStream.url",
            &url,
            &format!("use wss://host/path (default {DEFAULT_URL})"),
        )?;
        check_host(
            &allowed_hosts(SourceType::YahooStream, env)?,
            "spec.source.yahooStream.url",
            &url,
        )?;
        Ok(Self { url })
    }

    fn build(self, source: &SourceSpec) -> Result<AnySource, SourceError> {
        Ok(AnySource::YahooStream(WebsocketSource::new(
            super::YahooStream::new(self),
            WebsocketSettings::from_spec(source)?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_yahoo_and_rejects_non_websocket_urls() {
        assert_eq!(
            YahooStreamConfig::from_spec(None, &HashMap::new())
                .unwrap()
                .url,
            DEFAULT_URL
        );
        let bad = YahooStreamSource {
            url: Some("https://streamer.finance.yahoo.com".into()),
        };
        let e = YahooStreamConfig::from_spec(Some(&bad), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.yahooStream.url"), "{e}");
    }
}
