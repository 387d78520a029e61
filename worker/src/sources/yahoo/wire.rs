//! Yahoo's v7 quote answer (`formatted=false`) and its mapping to [`RawQuote`].
//!
//! `{"quoteResponse":{"result":[{...}, ...],"error":null}}`; only the fields quotestream uses
//! are read, every one but `symbol` may be absent. Each result is decoded on its own, so one odd
//! entry costs one quote, not the batch.

use std::fmt;

use jiff::Timestamp;
use quotestream_api::crd::SourceType;
use quotestream_api::ticker::TickerError;
use serde::Deserialize;

use crate::quote::RawQuote;

/// The fields to ask for with `fields=`: what [`YahooQuote`] reads. Yahoo adds a few of its
/// own (symbol, quoteType, exchange, ...) and leaves the other ~70 out.
pub const FIELDS: &str = "symbol,quoteType,regularMarketPrice,regularMarketVolume,regularMarketTime,bid,ask,regularMarketOpen,regularMarketDayHigh,regularMarketDayLow";

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "quoteResponse")]
    quote_response: Body,
}

#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default)]
    result: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One result entry: the fields quotestream uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct YahooQuote {
    /// Yahoo's spelling (`BRK-B`).
    pub symbol: String,
    /// EQUITY, ETF, ..., or NONE for a delisted symbol.
    pub quote_type: Option<String>,
    pub regular_market_price: Option<f64>,
    pub regular_market_volume: Option<f64>,
    /// Epoch seconds.
    pub regular_market_time: Option<i64>,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub regular_market_open: Option<f64>,
    pub regular_market_day_high: Option<f64>,
    pub regular_market_day_low: Option<f64>,
}

/// A decoded answer: the entries that decoded, and the (symbol, error) of those that did not.
#[derive(Debug, Default)]
pub struct Decoded {
    pub quotes: Vec<YahooQuote>,
    pub bad_entries: Vec<(String, String)>,
}

/// Why a body is not a quote answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not a v7 quote answer ({0}); it starts with {1:?}")]
    Malformed(serde_json::Error, String),
    #[error("Yahoo answered with an error: {0}")]
    Api(String),
}

/// Decodes a v7 quote body.
pub fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| DecodeError::Malformed(e, super::client::excerpt(body)))?;
    let Body { result, error } = envelope.quote_response;
    let result = result.unwrap_or_default();
    if result.is_empty()
        && let Some(error) = error.filter(|e| !e.is_null())
    {
        return Err(DecodeError::Api(error.to_string()));
    }
    let mut decoded = Decoded::default();
    for entry in result {
        let symbol = entry
            .get("symbol")
            .and_then(|s| s.as_str())
            .unwrap_or("?")
            .to_owned();
        match serde_json::from_value::<YahooQuote>(entry) {
            Ok(q) => decoded.quotes.push(q),
            Err(e) => decoded.bad_entries.push((symbol, e.to_string())),
        }
    }
    Ok(decoded)
}

/// Why a result gives no quote. Not a validation error: Yahoo has nothing to say about the
/// symbol right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    /// `quoteType: "NONE"`: delisted, or a symbol Yahoo only half knows.
    NoneType,
    NoPrice,
    NoTime,
    TimeOutOfRange(i64),
    Symbol(TickerError),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoneType => f.write_str("quoteType is NONE (delisted?); check the ticker list"),
            Self::NoPrice => f.write_str("the result has no regularMarketPrice"),
            Self::NoTime => f.write_str("the result has no regularMarketTime"),
            Self::TimeOutOfRange(t) => {
                write!(f, "regularMarketTime {t} is not a time in epoch seconds")
            }
            Self::Symbol(e) => write!(f, "the symbol does not map to a ticker: {e}"),
        }
    }
}

impl YahooQuote {
    /// The quote, or why there is none. Yahoo writes 0 for a missing bid, ask, open, high or
    /// low (outside the session); those become `None` rather than failing validation. A missing
    /// volume (funds, `fields=` answers) is 0: nothing traded that Yahoo reports.
    pub fn to_raw(&self) -> Result<RawQuote, Unusable> {
        if self.quote_type.as_deref() == Some("NONE") {
            return Err(Unusable::NoneType);
        }
        let price = self.regular_market_price.ok_or(Unusable::NoPrice)?;
        let seconds = self.regular_market_time.ok_or(Unusable::NoTime)?;
        let timestamp =
            Timestamp::from_second(seconds).map_err(|_| Unusable::TimeOutOfRange(seconds))?;
        let ticker = super::symbol::from_yahoo(&self.symbol).map_err(Unusable::Symbol)?;
        let present = |v: Option<f64>| v.filter(|v| *v != 0.0);
        Ok(RawQuote {
            ticker: ticker.as_str().to_owned(),
            timestamp,
            price,
            volume: self.regular_market_volume.unwrap_or(0.0),
            bid: present(self.bid),
            ask: present(self.ask),
            open: present(self.regular_market_open),
            high: present(self.regular_market_day_high),
            low: present(self.regular_market_day_low),
            source: SourceType::Yahoo.wire_name(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::validate;

    /// The recorded body of a capture in worker/tests/fixtures/yahoo/.
    fn capture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/yahoo/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        serde_json::to_vec(&v["response"]["bodyJson"]).unwrap()
    }

    fn now() -> Timestamp {
        "2025-02-17T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn decodes_the_recorded_batch_answer() {
        let decoded = decode(&capture("quote-AAPL-BABA.json")).unwrap();
        assert!(decoded.bad_entries.is_empty());
        let raws: Vec<RawQuote> = decoded.quotes.iter().map(|q| q.to_raw().unwrap()).collect();
        assert_eq!(raws.len(), 2);
        let aapl = &raws[0];
        assert_eq!(aapl.ticker, "AAPL");
        assert_eq!(aapl.price, 244.6);
        assert_eq!(aapl.volume, 40_896_227.0);
        assert_eq!(
            aapl.timestamp,
            Timestamp::from_second(1_739_566_800).unwrap()
        );
        assert_eq!(aapl.timestamp.to_string(), "2025-02-14T21:00:00Z");
        assert_eq!((aapl.bid, aapl.ask), (Some(244.44), Some(253.37)));
        assert_eq!(
            (aapl.open, aapl.high, aapl.low),
            (Some(241.07), Some(245.41), Some(241.0))
        );
        assert_eq!(aapl.source, "yfinance");
        assert_eq!(raws[1].ticker, "BABA");
        for raw in raws {
            validate(raw, now()).unwrap();
        }
    }

    #[test]
    fn a_trimmed_answer_without_volume_or_book_is_still_a_quote() {
        let decoded = decode(&capture("quote-MSFT-fields-beta.json")).unwrap();
        let msft = decoded.quotes[0].to_raw().unwrap();
        assert_eq!(msft.ticker, "MSFT");
        assert_eq!(msft.price, 408.43);
        assert_eq!(msft.volume, 0.0);
        assert_eq!((msft.bid, msft.ask, msft.open), (None, None, None));
        validate(msft, now()).unwrap();
    }

    fn quote(json: serde_json::Value) -> YahooQuote {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn share_classes_come_back_dotted_and_zero_book_is_none() {
        let q = quote(serde_json::json!({
            "symbol": "BRK-B", "quoteType": "EQUITY", "regularMarketPrice": 478.1,
            "regularMarketVolume": 3_000_000, "regularMarketTime": 1_739_566_800,
            "bid": 0, "ask": 0, "regularMarketOpen": 0,
        }));
        let raw = q.to_raw().unwrap();
        assert_eq!(raw.ticker, "BRK.B");
        assert_eq!((raw.bid, raw.ask, raw.open), (None, None, None));
        validate(raw, now()).unwrap();
    }

    #[test]
    fn unusable_results_say_why() {
        let delisted = quote(serde_json::json!({"symbol": "SIVB", "quoteType": "NONE"}));
        assert_eq!(delisted.to_raw().unwrap_err(), Unusable::NoneType);
        let no_price = quote(serde_json::json!({"symbol": "X", "regularMarketTime": 1}));
        assert_eq!(no_price.to_raw().unwrap_err(), Unusable::NoPrice);
        let no_time = quote(serde_json::json!({"symbol": "X", "regularMarketPrice": 1.0}));
        assert_eq!(no_time.to_raw().unwrap_err(), Unusable::NoTime);
        let far = quote(serde_json::json!({
            "symbol": "X", "regularMarketPrice": 1.0, "regularMarketTime": i64::MAX,
        }));
        assert!(matches!(far.to_raw(), Err(Unusable::TimeOutOfRange(_))));
    }

    #[test]
    fn one_bad_entry_costs_one_quote() {
        let body = br#"{"quoteResponse":{"result":[
            {"symbol":"AAPL","regularMarketPrice":"n/a","regularMarketTime":1739566800},
            {"symbol":"MSFT","regularMarketPrice":408.43,"regularMarketTime":1739566800}
        ],"error":null}}"#;
        let decoded = decode(body).unwrap();
        assert_eq!(decoded.quotes.len(), 1);
        assert_eq!(decoded.bad_entries.len(), 1);
        assert_eq!(decoded.bad_entries[0].0, "AAPL");
    }

    #[test]
    fn malformed_bodies_and_api_errors_are_errors() {
        let e = decode(b"<html>Will be right back</html>").unwrap_err();
        assert!(e.to_string().contains("Will be right back"), "{e}");
        assert!(decode(br#"{"quoteResponse":{"result":[{"symbol":"AA"#).is_err());
        let e = decode(
            br#"{"quoteResponse":{"result":null,"error":{"code":"Bad Request","description":"Missing required query parameter=symbols"}}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, DecodeError::Api(_)), "{e}");
        let empty = decode(br#"{"quoteResponse":{"result":[],"error":null}}"#).unwrap();
        assert!(empty.quotes.is_empty());
    }
}
