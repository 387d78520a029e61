//! The wire forms of a quote: contract 004 on Redis (plain JSON or a CloudEvents 1.0 envelope)
//! and the POST /quotes/batch body of contract 001 (INV-001..007).

use std::fmt;

use jiff::Timestamp;
use serde::{Serialize, Serializer};

use super::Quote;

/// Largest batch the storage contract accepts (INV-001, INV-006); defined with the contract in
/// `quotestream_api::batch`.
pub use quotestream_api::batch::MAX_BATCH_QUOTES as MAX_STORAGE_BATCH;
/// `source` values the storage contract knows (INV-005), extended with quotestream's other
/// sources; see docs/contracts.md.
pub use quotestream_api::batch::SOURCES as STORAGE_SOURCES;
/// CloudEvents `type` of a quote.
pub const CLOUDEVENT_TYPE: &str = "io.opa.quotes.realtime.v1";

/// A UTC timestamp on the wire: ISO 8601 with milliseconds and `Z`
/// (`2026-01-20T14:30:15.123Z`), written without allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireTime(pub Timestamp);

impl WireTime {
    /// The 24 bytes of the wire form for years 0000-9999, digit by digit: every quote is
    /// encoded once per sink, and `strftime` (which interprets its format each time) was 12% of
    /// the Redis sink's CPU (docs/performance.md). Other years: `None`.
    fn digits(&self) -> Option<[u8; 24]> {
        let t = jiff::tz::Offset::UTC.to_datetime(self.0);
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let fields: [(usize, usize, u32); 7] = [
            (0, 4, year),
            (5, 2, t.month().unsigned_abs().into()),
            (8, 2, t.day().unsigned_abs().into()),
            (11, 2, t.hour().unsigned_abs().into()),
            (14, 2, t.minute().unsigned_abs().into()),
            (17, 2, t.second().unsigned_abs().into()),
            (20, 3, t.subsec_nanosecond().unsigned_abs() / 1_000_000),
        ];
        for (at, width, mut value) in fields {
            for d in out[at..at + width].iter_mut().rev() {
                *d = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        Some(out)
    }
}

impl fmt::Display for WireTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.digits() {
            Some(d) => f.write_str(std::str::from_utf8(&d).map_err(|_| fmt::Error)?),
            None => write!(f, "{}", self.0.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")),
        }
    }
}

impl Serialize for WireTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.digits() {
            Some(d) => s.serialize_str(std::str::from_utf8(&d).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

/// Contract 004 `quotes.realtime` message: exactly the contract's fields.
#[derive(Debug, Serialize)]
pub struct RedisQuote<'a> {
    pub ticker: &'a str,
    pub timestamp: WireTime,
    pub price: f64,
    pub volume: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ask: Option<f64>,
    pub source: &'a str,
}

impl<'a> From<&'a Quote> for RedisQuote<'a> {
    fn from(q: &'a Quote) -> Self {
        Self {
            ticker: q.ticker.as_str(),
            timestamp: WireTime(q.timestamp),
            price: q.price,
            volume: q.volume,
            bid: q.bid,
            ask: q.ask,
            source: q.source,
        }
    }
}

/// A CloudEvents 1.0 (structured JSON mode) envelope around the contract message.
#[derive(Debug, Serialize)]
pub struct CloudEvent<'a> {
    pub specversion: &'static str,
    /// `<ticker>@<epoch ms>`: the same quote always has the same id, so consumers can dedupe.
    pub id: String,
    /// URI reference of the producer, e.g. `/quotestream/markets/sp500/shard-2`.
    pub source: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub subject: &'a str,
    pub time: WireTime,
    pub datacontenttype: &'static str,
    pub data: RedisQuote<'a>,
}

impl<'a> CloudEvent<'a> {
    pub fn new(quote: &'a Quote, producer: &'a str) -> Self {
        Self {
            specversion: "1.0",
            id: format!("{}@{}", quote.ticker, quote.timestamp.as_millisecond()),
            source: producer,
            kind: CLOUDEVENT_TYPE,
            subject: quote.ticker.as_str(),
            time: WireTime(quote.timestamp),
            datacontenttype: "application/json",
            data: RedisQuote::from(quote),
        }
    }
}

/// A contract 004 message as read back (replay recordings, `quotestream-worker check`).
/// Unknown fields are ignored, as the contract allows additions.
#[derive(Debug, serde::Deserialize)]
struct ContractMessage {
    ticker: String,
    timestamp: String,
    price: f64,
    volume: f64,
    #[serde(default)]
    bid: Option<f64>,
    #[serde(default)]
    ask: Option<f64>,
    #[serde(default)]
    open: Option<f64>,
    #[serde(default)]
    high: Option<f64>,
    #[serde(default)]
    low: Option<f64>,
    source: String,
}

/// Why a line is not a contract message.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a contract quote: {0}")]
    Json(#[from] serde_json::Error),
    #[error("timestamp {0:?} is not ISO 8601 UTC (e.g. 2026-01-20T14:30:15.123Z): {1}")]
    Timestamp(String, jiff::Error),
    #[error("timestamp {0:?} has an offset other than UTC; write it in UTC with a Z suffix")]
    NotUtc(String),
    #[error("source {0:?} is unknown; use one of {STORAGE_SOURCES:?}")]
    Source(String),
}

/// Parses one contract 004 JSON message into a quote ready for validation.
pub fn parse_contract_json(line: &str) -> Result<super::RawQuote, ParseError> {
    let m: ContractMessage = serde_json::from_str(line)?;
    let utc = m.timestamp.ends_with('Z') || m.timestamp.ends_with("+00:00");
    if !utc {
        return Err(ParseError::NotUtc(m.timestamp));
    }
    let timestamp: Timestamp = m
        .timestamp
        .parse()
        .map_err(|e| ParseError::Timestamp(m.timestamp.clone(), e))?;
    let source = quotestream_api::batch::check_source(&m.source)
        .map_err(|_| ParseError::Source(m.source.clone()))?;
    Ok(super::RawQuote {
        ticker: m.ticker,
        timestamp,
        price: m.price,
        volume: m.volume,
        bid: m.bid,
        ask: m.ask,
        open: m.open,
        high: m.high,
        low: m.low,
        source,
    })
}

/// A quote the storage contract cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractViolation {
    #[error(
        "INV-002: ticker {0} (a share class, an index or a crypto pair) does not match ^[A-Z]{{1,5}}$; the storage API cannot take it (the PostgreSQL sink still stores it)"
    )]
    ShareClassTicker(String),
    #[error("INV-005: source {0:?} is not one the storage API accepts ({STORAGE_SOURCES:?})")]
    Source(String),
}

/// One quote of a POST /quotes/batch body.
#[derive(Debug, Serialize)]
pub struct StorageQuote<'a> {
    pub ticker: &'a str,
    pub timestamp: WireTime,
    /// INV-004: the close field carries the last trade price.
    pub close: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    pub volume: u64,
    pub source: &'a str,
}

impl<'a> TryFrom<&'a Quote> for StorageQuote<'a> {
    type Error = ContractViolation;

    /// INV-002..005 per quote (the price was already checked positive and finite by
    /// validation, the timestamp is UTC by type).
    fn try_from(q: &'a Quote) -> Result<Self, Self::Error> {
        if !q.ticker.is_contract_symbol() {
            return Err(ContractViolation::ShareClassTicker(q.ticker.to_string()));
        }
        if !STORAGE_SOURCES.contains(&q.source) {
            return Err(ContractViolation::Source(q.source.to_owned()));
        }
        Ok(Self {
            ticker: q.ticker.as_str(),
            timestamp: WireTime(q.timestamp),
            close: q.price,
            open: q.open,
            high: q.high,
            low: q.low,
            volume: q.volume,
            source: q.source,
        })
    }
}

/// A POST /quotes/batch body: 1..=1000 quotes (INV-001, INV-006).
#[derive(Debug, Serialize)]
pub struct StorageBatch<'a> {
    quotes: Vec<StorageQuote<'a>>,
}

impl<'a> StorageBatch<'a> {
    /// Splits quotes into contract batches of at most `batch_size` (capped at 1000), dropping
    /// none: quotes the contract cannot carry are returned beside the batches with the reason.
    pub fn split(
        quotes: &'a [Quote],
        batch_size: usize,
    ) -> (Vec<StorageBatch<'a>>, Vec<ContractViolation>) {
        let size = batch_size.clamp(1, MAX_STORAGE_BATCH);
        let mut rejected = Vec::new();
        let mut batches: Vec<StorageBatch<'a>> = Vec::new();
        for q in quotes {
            match StorageQuote::try_from(q) {
                Ok(sq) => match batches.last_mut() {
                    Some(b) if b.quotes.len() < size => b.quotes.push(sq),
                    _ => batches.push(StorageBatch { quotes: vec![sq] }),
                },
                Err(e) => rejected.push(e),
            }
        }
        (batches, rejected)
    }

    pub fn len(&self) -> usize {
        self.quotes.len()
    }

    /// The first and the second half (bisecting a batch storage refused, to find the quotes it
    /// refuses and deliver the others).
    pub fn halves(mut self) -> (Self, Self) {
        let back = self.quotes.split_off(self.quotes.len() / 2);
        (self, Self { quotes: back })
    }

    pub fn is_empty(&self) -> bool {
        self.quotes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RawQuote, validate};
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn quote(ticker: &str, ms: i64) -> Quote {
        validate(
            RawQuote {
                ticker: ticker.into(),
                timestamp: Timestamp::from_millisecond(ms).unwrap(),
                price: 185.5,
                volume: 45_000_000.0,
                bid: Some(185.48),
                ask: Some(185.52),
                open: Some(184.0),
                high: None,
                low: None,
                source: "yfinance",
            },
            "2030-01-01T00:00:00Z".parse().unwrap(),
        )
        .unwrap()
    }

    const EXAMPLE_MS: i64 = 1_768_919_415_123; // 2026-01-20T14:30:15.123Z

    #[test]
    fn redis_plain_is_the_contract_example() {
        let q = quote("AAPL", EXAMPLE_MS);
        let v: Value = serde_json::to_value(RedisQuote::from(&q)).unwrap();
        assert_eq!(
            v,
            json!({"ticker": "AAPL", "timestamp": "2026-01-20T14:30:15.123Z", "price": 185.50,
                   "volume": 45000000, "bid": 185.48, "ask": 185.52, "source": "yfinance"})
        );
    }

    #[test]
    fn timestamps_always_carry_milliseconds() {
        let q = quote("AAPL", 1_768_919_415_000);
        let s = serde_json::to_string(&RedisQuote::from(&q)).unwrap();
        assert!(
            s.contains(r#""timestamp":"2026-01-20T14:30:15.000Z""#),
            "{s}"
        );
    }

    #[test]
    fn cloudevent_envelope_has_the_required_attributes() {
        let q = quote("AAPL", EXAMPLE_MS);
        let v =
            serde_json::to_value(CloudEvent::new(&q, "/quotestream/default/demo/shard-0")).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "AAPL@1768919415123");
        assert_eq!(v["type"], CLOUDEVENT_TYPE);
        assert_eq!(v["source"], "/quotestream/default/demo/shard-0");
        assert_eq!(v["time"], "2026-01-20T14:30:15.123Z");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["price"], 185.5);
    }

    #[test]
    fn storage_quote_carries_close_and_no_bid_ask() {
        let q = quote("MSFT", EXAMPLE_MS);
        let v = serde_json::to_value(StorageQuote::try_from(&q).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"ticker": "MSFT", "timestamp": "2026-01-20T14:30:15.123Z", "close": 185.5,
                   "open": 184.0, "volume": 45000000, "source": "yfinance"})
        );
    }

    #[test]
    fn share_classes_are_kept_out_of_storage_batches_with_a_reason() {
        let quotes = vec![quote("BRK.B", EXAMPLE_MS), quote("AAPL", EXAMPLE_MS)];
        let (batches, rejected) = StorageBatch::split(&quotes, 500);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].len(), 1);
        assert_eq!(
            rejected,
            [ContractViolation::ShareClassTicker("BRK.B".into())]
        );
    }

    #[test]
    fn contract_json_round_trips() {
        let q = quote("AAPL", EXAMPLE_MS);
        let line = serde_json::to_string(&RedisQuote::from(&q)).unwrap();
        let raw = parse_contract_json(&line).unwrap();
        let back = validate(raw, "2030-01-01T00:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(back.timestamp, q.timestamp);
        assert_eq!(
            (back.price, back.volume, back.bid),
            (q.price, q.volume, q.bid)
        );
    }

    #[test]
    fn contract_json_errors_explain_the_fix() {
        let line = r#"{"ticker":"AAPL","timestamp":"2026-01-20T14:30:15+02:00","price":1,"volume":1,"source":"yfinance"}"#;
        assert!(
            parse_contract_json(line)
                .unwrap_err()
                .to_string()
                .contains("UTC")
        );
        let line = r#"{"ticker":"AAPL","timestamp":"2026-01-20T14:30:15Z","price":1,"volume":1,"source":"bloomberg"}"#;
        assert!(matches!(
            parse_contract_json(line),
            Err(ParseError::Source(_))
        ));
        assert!(matches!(parse_contract_json("{"), Err(ParseError::Json(_))));
    }

    proptest! {
        #[test]
        fn wire_time_is_strftime_for_every_timestamp(
            ms in Timestamp::MIN.as_millisecond()..=Timestamp::MAX.as_millisecond(),
            sub_ms_nanos in 0i32..1_000_000,
        ) {
            let t = Timestamp::from_millisecond(ms).unwrap();
            // Nanoseconds below the millisecond are cut, never rounded up.
            let t = t.checked_add(jiff::SignedDuration::from_nanos(sub_ms_nanos.into())).unwrap_or(t);
            let reference = t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            prop_assert_eq!(WireTime(t).to_string(), reference.clone());
            prop_assert_eq!(serde_json::to_string(&WireTime(t)).unwrap(), format!("\"{reference}\""));
        }

        #[test]
        fn batches_respect_inv_001_and_inv_006(count in 0usize..2600, size in 0usize..1500) {
            let quotes: Vec<Quote> = (0..count).map(|i| quote("AAPL", EXAMPLE_MS + i as i64)).collect();
            let (batches, rejected) = StorageBatch::split(&quotes, size);
            prop_assert!(rejected.is_empty());
            let cap = size.clamp(1, MAX_STORAGE_BATCH);
            prop_assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= cap));
            prop_assert_eq!(batches.iter().map(StorageBatch::len).sum::<usize>(), count);
            prop_assert_eq!(batches.len(), count.div_ceil(cap));
        }
    }
}
