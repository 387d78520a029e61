//! `spec.source.yahooStream`.

use quotestream_api::crd::YahooStreamSource;

use crate::sources::SourceError;

/// Yahoo's public live stream; no account, no key.
pub const DEFAULT_URL: &str = "wss://streamer.finance.yahoo.com/?version=2";

#[derive(Debug, Clone, PartialEq)]
pub struct YahooStreamConfig {
    pub url: String,
}

impl YahooStreamConfig {
    pub fn from_spec(spec: Option<&YahooStreamSource>) -> Result<Self, SourceError> {
        let url = spec
            .and_then(|s| s.url.clone())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        if !(url.starts_with("wss://") || url.starts_with("ws://")) {
            return Err(SourceError::Config(format!(
                "source.yahooStream.url {url:?} is not a WebSocket URL: use wss://host/path (default {DEFAULT_URL})"
            )));
        }
        Ok(Self { url })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_yahoo_and_rejects_non_websocket_urls() {
        assert_eq!(YahooStreamConfig::from_spec(None).unwrap().url, DEFAULT_URL);
        let bad = YahooStreamSource {
            url: Some("https://streamer.finance.yahoo.com".into()),
        };
        let e = YahooStreamConfig::from_spec(Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.yahooStream.url"), "{e}");
    }
}
