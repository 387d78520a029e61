//! `alpaca`: Alpaca market data v2, stocks (`wss://stream.data.alpaca.markets/v2/{feed}`).
//!
//! The server greets with `[{"T":"success","msg":"connected"}]`; the client logs in with
//! `{"action":"auth","key":..,"secret":..}` and, once `authenticated`, subscribes trades, quotes
//! and daily bars of the shard's tickers. Trades, NBBO quotes and daily bars arrive as separate
//! messages; the shared book (`websocket/book.rs`, with [`BOOK`]'s rules) combines them into the quote model. Error codes map to actions in
//! `status.rs` (the vendor control messages, as in every streaming vendor).

mod config;
mod decode;
mod status;

use quotestream_api::Ticker;
use serde::Serialize;

pub use config::{AlpacaConfig, SecretNames};
pub use decode::Decoder;
pub use status::ErrorContext;

use super::websocket::book::{BookLife, DayFigures, Overflow, Rules, UnusableSide};
use super::websocket::{Decoded, Frame, Protocol};

/// How `spec.source.type` names this source.
pub const NAME: &str = "alpaca";

/// How Alpaca's trades, quotes and daily bars make quotes (docs/streaming.md, "How quotes are
/// made").
pub const BOOK: Rules = Rules {
    source: "alpaca",
    // A shard streams at most a few thousand tickers.
    max_tickers: 50_000,
    overflow: Overflow::Refuse,
    day_figures: DayFigures::DailyBars,
    book_life: BookLife::Connection,
    unusable_side: UnusableSide::Empty,
};

/// Symbols per subscribe frame: keeps frames small for large shards (the acknowledgement
/// carries the whole current set, so several frames add up to the same subscription).
pub const SYMBOLS_PER_FRAME: usize = 500;

#[derive(Debug)]
pub struct Alpaca {
    config: AlpacaConfig,
    decoder: Decoder,
}

impl Alpaca {
    pub fn new(config: AlpacaConfig) -> Self {
        let context = ErrorContext {
            feed: config.feed,
            secret: config.secret.clone(),
        };
        let decoder = Decoder::new(context);
        Self { config, decoder }
    }
}

/// `{"action":"subscribe","trades":[..],"quotes":[..],"dailyBars":[..]}`, in this order.
#[derive(Serialize)]
struct Subscription<'a> {
    action: &'a str,
    trades: &'a [&'a str],
    quotes: &'a [&'a str],
    #[serde(rename = "dailyBars")]
    daily_bars: &'a [&'a str],
}

#[derive(Serialize)]
struct Auth<'a> {
    action: &'a str,
    key: &'a str,
    secret: &'a str,
}

fn subscription_frames(action: &str, tickers: &[Ticker]) -> Vec<String> {
    tickers
        .chunks(SYMBOLS_PER_FRAME)
        .filter_map(|chunk| {
            // Alpaca spells share classes like the contract does (BRK.B).
            let symbols: Vec<&str> = chunk.iter().map(Ticker::as_str).collect();
            serde_json::to_string(&Subscription {
                action,
                trades: &symbols,
                quotes: &symbols,
                daily_bars: &symbols,
            })
            .ok()
        })
        .collect()
}

impl Protocol for Alpaca {
    fn vendor(&self) -> &'static str {
        NAME
    }

    fn url(&self) -> &str {
        &self.config.url
    }

    fn login(&self) -> Option<Vec<String>> {
        let auth = Auth {
            action: "auth",
            key: &self.config.key_id,
            secret: &self.config.secret_key,
        };
        Some(serde_json::to_string(&auth).into_iter().collect())
    }

    fn subscribe(&self, tickers: &[Ticker]) -> Vec<String> {
        subscription_frames("subscribe", tickers)
    }

    fn unsubscribe(&self, tickers: &[Ticker]) -> Vec<String> {
        subscription_frames("unsubscribe", tickers)
    }

    fn decode(&mut self, frame: Frame<'_>, out: &mut Decoded) {
        self.decoder.decode(frame, out);
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use quotestream_api::crd::{AlpacaCredentials, AlpacaSource};

    use super::*;
    use crate::sources::Connector;

    fn alpaca() -> Alpaca {
        let spec = AlpacaSource {
            credentials_secret_ref: AlpacaCredentials {
                name: "alpaca".into(),
                key_id_key: None,
                secret_key_key: None,
            },
            feed: None,
            url: None,
            max_connections: None,
        };
        let env = HashMap::from([
            (
                quotestream_api::contract::env::ALPACA_KEY_ID.to_owned(),
                "PK\"TEST".to_owned(),
            ),
            (
                quotestream_api::contract::env::ALPACA_SECRET_KEY.to_owned(),
                "s3cr3t".to_owned(),
            ),
        ]);
        Alpaca::new(AlpacaConfig::from_spec(Some(&spec), &env).unwrap())
    }

    #[test]
    fn logs_in_with_the_key_and_subscribes_three_channels() {
        let p = alpaca();
        assert_eq!(
            p.login().unwrap(),
            vec![r#"{"action":"auth","key":"PK\"TEST","secret":"s3cr3t"}"#]
        );
        let tickers = [
            Ticker::parse("AAPL").unwrap(),
            Ticker::parse("BRK.B").unwrap(),
        ];
        assert_eq!(
            p.subscribe(&tickers),
            vec![
                r#"{"action":"subscribe","trades":["AAPL","BRK.B"],"quotes":["AAPL","BRK.B"],"dailyBars":["AAPL","BRK.B"]}"#
            ]
        );
        assert_eq!(
            p.unsubscribe(&tickers[..1]),
            vec![
                r#"{"action":"unsubscribe","trades":["AAPL"],"quotes":["AAPL"],"dailyBars":["AAPL"]}"#
            ]
        );
        assert!(p.subscribe(&[]).is_empty());
    }

    #[test]
    fn large_shards_are_subscribed_in_several_frames() {
        let tickers: Vec<Ticker> = (0..1200)
            .map(|i| {
                let name: String = format!("{i:04}")
                    .bytes()
                    .map(|b| char::from(b'A' + (b - b'0')))
                    .collect();
                Ticker::parse(&name).unwrap()
            })
            .collect();
        let frames = alpaca().subscribe(&tickers);
        assert_eq!(frames.len(), 3);
        let total: usize = frames
            .iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(f).unwrap();
                v["trades"].as_array().unwrap().len()
            })
            .sum();
        assert_eq!(total, 1200);
    }
}
