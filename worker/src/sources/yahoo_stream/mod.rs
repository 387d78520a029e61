//! `yahoo-stream`: Yahoo Finance's live WebSocket. No login: the client sends
//! `{"subscribe":[symbols]}` and receives one base64 protobuf `PricingData` per tick
//! (proto/yahoo_pricing.proto). Yahoo forgets subscriptions it is not reminded of, so the
//! whole set is resent every 15 s. Symbols are asked for in Yahoo's spelling (`BRK-B`) and
//! come back canonical (`BRK.B`).

mod config;
mod decode;

use std::time::Duration;

use quotestream_api::Ticker;
use serde_json::json;

pub use config::{DEFAULT_URL, YahooStreamConfig};
pub use decode::decode;

use super::websocket::{Decoded, Frame, Protocol};

/// How `spec.source.type` names this source.
pub const NAME: &str = "yahoo-stream";

/// The generated `PricingData` message.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/quotestream.yahoo.rs"));
}

/// How often the subscription is resent (what Yahoo's own clients do).
pub const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct YahooStream {
    config: YahooStreamConfig,
}

impl YahooStream {
    pub fn new(config: YahooStreamConfig) -> Self {
        Self { config }
    }
}

fn symbols_frame(verb: &str, tickers: &[Ticker]) -> Vec<String> {
    if tickers.is_empty() {
        return Vec::new();
    }
    let symbols: Vec<String> = tickers
        .iter()
        .map(crate::sources::yahoo::symbol::to_yahoo)
        .collect();
    vec![json!({ verb: symbols }).to_string()]
}

impl Protocol for YahooStream {
    fn vendor(&self) -> &'static str {
        NAME
    }

    fn url(&self) -> &str {
        &self.config.url
    }

    fn login(&self) -> Option<Vec<String>> {
        None
    }

    fn subscribe(&self, tickers: &[Ticker]) -> Vec<String> {
        symbols_frame("subscribe", tickers)
    }

    fn unsubscribe(&self, tickers: &[Ticker]) -> Vec<String> {
        symbols_frame("unsubscribe", tickers)
    }

    fn resubscribe_every(&self) -> Option<Duration> {
        Some(RESUBSCRIBE_EVERY)
    }

    fn decode(&mut self, frame: Frame<'_>, out: &mut Decoded) {
        decode::decode(frame, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Connector;

    #[test]
    fn subscriptions_use_yahoo_spelling() {
        let p = YahooStream::new(YahooStreamConfig::from_spec(None, &Default::default()).unwrap());
        let tickers = [
            Ticker::parse("AAPL").unwrap(),
            Ticker::parse("BRK.B").unwrap(),
        ];
        assert_eq!(
            p.subscribe(&tickers),
            vec![r#"{"subscribe":["AAPL","BRK-B"]}"#]
        );
        assert_eq!(
            p.unsubscribe(&tickers[..1]),
            vec![r#"{"unsubscribe":["AAPL"]}"#]
        );
        assert!(p.subscribe(&[]).is_empty());
    }
}
