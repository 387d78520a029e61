//! `polygon`: Massive's (formerly Polygon.io) stocks WebSocket. The server greets with
//! `[{"ev":"status","status":"connected"}]`, the client logs in with
//! `{"action":"auth","params":"KEY"}` and, once `auth_success` arrives, subscribes trades,
//! quotes and minute aggregates of each ticker: `{"action":"subscribe","params":
//! "T.AAPL,Q.AAPL,AM.AAPL"}`. Events arrive batched in JSON arrays; a per-ticker book joins them
//! into complete quotes (the shared `websocket/book.rs`, with [`BOOK`]'s rules). One connection per cluster and API key: the operator runs
//! at most `spec.source.polygon.maxConnections` shards (default 1).

mod config;
mod decode;
mod status;

use quotestream_api::Ticker;
use serde_json::json;

pub use config::PolygonConfig;
pub use decode::Decoder;

use super::websocket::book::{BookLife, DayFigures, Overflow, Rules, UnusableSide};
use super::websocket::{Decoded, Frame, Protocol};

/// How `spec.source.type` names this source.
pub const NAME: &str = "polygon";

/// How Massive's trades, quotes and minute aggregates make quotes (docs/streaming.md, polygon's
/// "Quotes").
pub const BOOK: Rules = Rules {
    source: "polygon",
    // Twice the most a shard can be assigned (10 000 inline).
    max_tickers: 20_000,
    overflow: Overflow::Untracked,
    day_figures: DayFigures::MinuteAggregates,
    book_life: BookLife::TradingDay,
    unusable_side: UnusableSide::IgnoreUpdate,
};

/// The channels subscribed per ticker: trades (the price), quotes (bid/ask) and minute
/// aggregates (day volume and open).
pub const CHANNELS: [&str; 3] = ["T", "Q", "AM"];

#[derive(Debug)]
pub struct Polygon {
    config: PolygonConfig,
    decoder: Decoder,
}

impl Polygon {
    pub fn new(config: PolygonConfig) -> Self {
        let decoder = Decoder::new(config.key_source.clone());
        Self { config, decoder }
    }
}

/// `{"action":..,"params":"T.AAPL,Q.AAPL,AM.AAPL,T.MSFT,.."}`; none for no tickers.
fn action(verb: &str, tickers: &[Ticker]) -> Vec<String> {
    if tickers.is_empty() {
        return Vec::new();
    }
    let params = tickers
        .iter()
        .flat_map(|t| CHANNELS.map(|c| format!("{c}.{t}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![json!({ "action": verb, "params": params }).to_string()]
}

impl Protocol for Polygon {
    fn vendor(&self) -> &'static str {
        NAME
    }

    fn url(&self) -> &str {
        &self.config.url
    }

    fn login(&self) -> Option<Vec<String>> {
        Some(vec![
            json!({ "action": "auth", "params": self.config.api_key }).to_string(),
        ])
    }

    fn subscribe(&self, tickers: &[Ticker]) -> Vec<String> {
        action("subscribe", tickers)
    }

    fn unsubscribe(&self, tickers: &[Ticker]) -> Vec<String> {
        action("unsubscribe", tickers)
    }

    fn decode(&mut self, frame: Frame<'_>, out: &mut Decoded) {
        self.decoder.decode(frame, out);
    }
}

#[cfg(test)]
mod tests {
    use super::config::DEFAULT_URL;
    use super::*;

    fn polygon() -> Polygon {
        Polygon::new(PolygonConfig {
            url: DEFAULT_URL.into(),
            api_key: "k\"ey".into(),
            key_source: "key".into(),
        })
    }

    #[test]
    fn logs_in_with_the_key_and_subscribes_three_channels_per_ticker() {
        let p = polygon();
        assert_eq!(
            p.login(),
            Some(vec![r#"{"action":"auth","params":"k\"ey"}"#.to_owned()])
        );
        let tickers = [
            Ticker::parse("AAPL").unwrap(),
            Ticker::parse("BRK.B").unwrap(),
        ];
        assert_eq!(
            p.subscribe(&tickers),
            [r#"{"action":"subscribe","params":"T.AAPL,Q.AAPL,AM.AAPL,T.BRK.B,Q.BRK.B,AM.BRK.B"}"#]
        );
        assert_eq!(
            p.unsubscribe(&tickers[..1]),
            [r#"{"action":"unsubscribe","params":"T.AAPL,Q.AAPL,AM.AAPL"}"#]
        );
        assert!(p.subscribe(&[]).is_empty());
        assert_eq!(p.resubscribe_every(), None);
    }
}
