//! The POST /quotes/batch contract (seed 001, INV-001..007), defined once: the worker's storage
//! sink produces it, `quotestream-store` receives it and enforces it server side. The worker
//! serialises its own quotes (they are valid by construction); this module holds the limits,
//! the accepted sources, the wire form as received, and the server-side check, whose errors
//! name the invariant and the offending quote index.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::ticker::{Ticker, TickerError};

/// The request path.
pub const PATH: &str = "/quotes/batch";
/// Largest batch the contract accepts (INV-001, INV-006).
pub const MAX_BATCH_QUOTES: usize = 1000;
/// `source` values the contract knows (INV-005), extended with quotestream's other sources
/// (docs/contracts.md).
pub const SOURCES: [&str; 7] = [
    "yfinance",
    "fmp",
    "manual",
    "alpaca",
    "polygon",
    "synthetic",
    "replay",
];
/// Header carrying a key of the batch's bytes: a retried batch has the same key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Quotes older than this are a unit bug (epoch milliseconds read as seconds land in 1970).
pub const EARLIEST: Timestamp = Timestamp::constant(631_152_000, 0); // 1990-01-01T00:00:00Z
/// Allowed clock skew into the future (seconds read as milliseconds land in the far future).
pub const MAX_FUTURE_SKEW: SignedDuration = SignedDuration::from_hours(1);

/// The contract's invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// A non-empty `quotes` array.
    Inv001,
    /// Ticker matches `^[A-Z]{1,5}$`.
    Inv002,
    /// Timestamp ISO 8601 UTC.
    Inv003,
    /// `close` a positive price.
    Inv004,
    /// `source` one of [`SOURCES`].
    Inv005,
    /// At most [`MAX_BATCH_QUOTES`] quotes.
    Inv006,
    /// `Content-Type: application/json`.
    Inv007,
}

impl Invariant {
    /// `INV-001` … `INV-007`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Inv001 => "INV-001",
            Self::Inv002 => "INV-002",
            Self::Inv003 => "INV-003",
            Self::Inv004 => "INV-004",
            Self::Inv005 => "INV-005",
            Self::Inv006 => "INV-006",
            Self::Inv007 => "INV-007",
        }
    }

    /// Every invariant, in order (metric labels are pre-created from this).
    pub const ALL: [Invariant; 7] = [
        Self::Inv001,
        Self::Inv002,
        Self::Inv003,
        Self::Inv004,
        Self::Inv005,
        Self::Inv006,
        Self::Inv007,
    ];
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Which rule a rejected batch broke: one of the contract's invariants, or a rule of the data
/// itself that the contract leaves implicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Invariant(Invariant),
    /// volume a whole number ≥ 0 that fits a bigint.
    Volume,
    /// open/high/low finite and > 0 when present, high ≥ low.
    Range,
    /// The same (ticker, timestamp) twice in one batch.
    Duplicate,
}

impl Rule {
    /// The label in metrics and the `rule` field of a rejection.
    pub fn label(self) -> &'static str {
        match self {
            Self::Invariant(i) => i.code(),
            Self::Volume => "volume",
            Self::Range => "range",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Why a batch is refused: the rule, the index of the first offending quote (none for rules of
/// the whole batch) and what is wrong, in words that say the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {message}", rule.label(), index.map(|i| format!(" (quotes[{i}])")).unwrap_or_default())]
pub struct Violation {
    pub rule: Rule,
    pub index: Option<usize>,
    pub message: String,
}

impl Violation {
    fn at(rule: Rule, index: usize, message: String) -> Self {
        Self {
            rule,
            index: Some(index),
            message,
        }
    }
}

/// A batch body as received. Strings borrow from the request body unless they carry escapes.
/// Unknown fields are ignored (the contract allows additions).
#[derive(Debug, Deserialize)]
pub struct BatchBody<'a> {
    #[serde(borrow)]
    pub quotes: Vec<BatchQuote<'a>>,
}

/// One quote as received.
#[derive(Debug, Deserialize)]
pub struct BatchQuote<'a> {
    #[serde(borrow)]
    pub ticker: Cow<'a, str>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    /// INV-004: the last trade price.
    pub close: f64,
    #[serde(default)]
    pub open: Option<f64>,
    #[serde(default)]
    pub high: Option<f64>,
    #[serde(default)]
    pub low: Option<f64>,
    /// Cumulative volume of the trading day; integers, or floats with no fraction.
    pub volume: f64,
    #[serde(borrow)]
    pub source: Cow<'a, str>,
}

/// A quote that passed every rule, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedQuote<'a> {
    pub ticker: &'a str,
    /// UTC, truncated to the millisecond (the idempotency key is (ticker, epoch ms)).
    pub timestamp: Timestamp,
    pub close: f64,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub volume: i64,
    pub source: &'static str,
}

/// INV-002: the strict contract pattern `^[A-Z]{1,5}$` (share classes such as `BRK.B` are
/// valid tickers but outside this contract).
pub fn check_ticker(ticker: &str) -> Result<(), String> {
    // The common case, checked without building a `Ticker` (an allocation per quote of every
    // batch); anything else goes through the parser for the message that says the fix.
    if (1..=5).contains(&ticker.len()) && ticker.bytes().all(|b| b.is_ascii_uppercase()) {
        return Ok(());
    }
    match Ticker::parse(ticker) {
        Ok(t) if t.is_contract_symbol() => Ok(()),
        Ok(t) => Err(format!(
            "ticker {t} has a share class and does not match ^[A-Z]{{1,5}}$; the storage contract cannot carry it"
        )),
        Err(TickerError::LowerCase(given, fixed)) if !fixed.contains('.') => Err(format!(
            "ticker {given:?} has lower-case letters; tickers are upper case (write {fixed:?})"
        )),
        Err(_) => Err(format!(
            "ticker {ticker:?} does not match ^[A-Z]{{1,5}}$ (1-5 letters A-Z, e.g. AAPL)"
        )),
    }
}

/// INV-005: the source, as the static string the contract lists.
pub fn check_source(source: &str) -> Result<&'static str, String> {
    SOURCES
        .iter()
        .find(|s| **s == source)
        .copied()
        .ok_or_else(|| format!("source {source:?} is not one of {SOURCES:?}"))
}

/// INV-003: ISO 8601 with a UTC designator (`Z` or `+00:00`), between 1990 and `now` + 1 h.
pub fn check_timestamp(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let utc = text.ends_with('Z') || text.ends_with("+00:00");
    if !utc {
        return Err(format!(
            "timestamp {text:?} is not UTC; write it in UTC with a Z suffix (e.g. 2026-01-20T14:30:15.123Z)"
        ));
    }
    let t: Timestamp = text.parse().map_err(|e| {
        format!("timestamp {text:?} is not ISO 8601 UTC (e.g. 2026-01-20T14:30:15.123Z): {e}")
    })?;
    if t < EARLIEST {
        return Err(format!(
            "timestamp {text} is before 1990 (epoch milliseconds read as seconds?)"
        ));
    }
    if t > now.saturating_add(MAX_FUTURE_SKEW).unwrap_or(now) {
        return Err(format!(
            "timestamp {text} is more than 1h in the future (epoch seconds read as milliseconds?)"
        ));
    }
    Ok(Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t))
}

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Checks one quote (INV-002..005 and the data rules) as of `now`.
pub fn check_quote<'a>(
    index: usize,
    q: &'a BatchQuote<'a>,
    now: Timestamp,
) -> Result<CheckedQuote<'a>, Violation> {
    let ticker: &str = &q.ticker;
    check_ticker(ticker)
        .map_err(|m| Violation::at(Rule::Invariant(Invariant::Inv002), index, m))?;
    let timestamp = check_timestamp(&q.timestamp, now)
        .map_err(|m| Violation::at(Rule::Invariant(Invariant::Inv003), index, m))?;
    if !positive(q.close) {
        return Err(Violation::at(
            Rule::Invariant(Invariant::Inv004),
            index,
            format!("{ticker}: close {} must be a finite price > 0", q.close),
        ));
    }
    let source = check_source(&q.source)
        .map_err(|m| Violation::at(Rule::Invariant(Invariant::Inv005), index, m))?;
    let v = q.volume;
    // i64::MAX as f64 rounds up to 2^63, which does not fit: hence `<`.
    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < i64::MAX as f64) {
        return Err(Violation::at(
            Rule::Volume,
            index,
            format!("{ticker}: volume {v} must be a whole number >= 0 below 2^63"),
        ));
    }
    for (field, value) in [("open", q.open), ("high", q.high), ("low", q.low)] {
        if let Some(x) = value.filter(|x| !positive(*x)) {
            return Err(Violation::at(
                Rule::Range,
                index,
                format!("{ticker}: {field} {x} must be a finite number > 0 when present"),
            ));
        }
    }
    if let (Some(high), Some(low)) = (q.high, q.low)
        && high < low
    {
        return Err(Violation::at(
            Rule::Range,
            index,
            format!("{ticker}: high {high} is below low {low}"),
        ));
    }
    Ok(CheckedQuote {
        ticker,
        timestamp,
        close: q.close,
        open: q.open,
        high: q.high,
        low: q.low,
        volume: v as i64,
        source,
    })
}

/// Checks a whole batch: INV-001 and INV-006 on its size, every quote, and no (ticker,
/// timestamp) twice. The first violation is returned; nothing of a refused batch is stored.
pub fn check_batch<'a>(
    body: &'a BatchBody<'a>,
    now: Timestamp,
) -> Result<Vec<CheckedQuote<'a>>, Violation> {
    let n = body.quotes.len();
    if n == 0 {
        return Err(Violation {
            rule: Rule::Invariant(Invariant::Inv001),
            index: None,
            message: "the quotes array is empty; send 1 to 1000 quotes".into(),
        });
    }
    if n > MAX_BATCH_QUOTES {
        return Err(Violation {
            rule: Rule::Invariant(Invariant::Inv006),
            index: None,
            message: format!(
                "{n} quotes in one batch; the limit is {MAX_BATCH_QUOTES}: split it into batches of at most {MAX_BATCH_QUOTES}"
            ),
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut seen: HashMap<(&str, i64), usize> = HashMap::with_capacity(n);
    for (i, q) in body.quotes.iter().enumerate() {
        let c = check_quote(i, q, now)?;
        if let Some(first) = seen.insert((c.ticker, c.timestamp.as_millisecond()), i) {
            return Err(Violation::at(
                Rule::Duplicate,
                i,
                format!(
                    "{} at {} is also quotes[{first}]; a ticker has at most one quote per millisecond",
                    c.ticker, q.timestamp
                ),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_tickers_fast_path_accepts_exactly_what_the_parser_accepts() {
        for t in [
            "A", "AAPL", "ABCDE", "ABCDEF", "", "aapl", "AaPL", "BRK.B", "BRK-B", "^GSPC",
            "BTC-USD", "A1", "ÄBC", "AAPL ",
        ] {
            let parser = Ticker::parse(t).is_ok_and(|t| t.is_contract_symbol());
            assert_eq!(check_ticker(t).is_ok(), parser, "{t:?}");
        }
    }

    fn now() -> Timestamp {
        "2026-01-20T15:00:00Z".parse().unwrap()
    }

    fn body(quotes: &str) -> String {
        format!(r#"{{"quotes":[{quotes}]}}"#)
    }

    const OK: &str = r#"{"ticker":"AAPL","timestamp":"2026-01-20T14:30:15.123Z","close":185.5,"open":184.0,"volume":45000000,"source":"yfinance"}"#;

    fn check(text: &str) -> Result<usize, Violation> {
        let b: BatchBody = serde_json::from_str(text).unwrap();
        check_batch(&b, now()).map(|v| v.len())
    }

    fn rule_of(text: &str) -> (String, Option<usize>) {
        let e = check(text).unwrap_err();
        (e.rule.label().to_owned(), e.index)
    }

    #[test]
    fn the_seed_example_passes() {
        let text = body(OK);
        let b: BatchBody = serde_json::from_str(&text).unwrap();
        let c = check_batch(&b, now()).unwrap();
        assert_eq!(c[0].ticker, "AAPL");
        assert_eq!(c[0].timestamp.as_millisecond(), 1_768_919_415_123);
        assert_eq!(c[0].volume, 45_000_000);
        assert_eq!(c[0].source, "yfinance");
    }

    #[test]
    fn each_rule_is_named_with_the_quote_index() {
        let with = |field: &str, value: &str| {
            let v: serde_json::Value = serde_json::from_str(OK).unwrap();
            let mut v = v.as_object().unwrap().clone();
            v.insert(field.into(), serde_json::from_str(value).unwrap());
            body(&format!("{OK},{}", serde_json::Value::Object(v)))
        };
        let cases = [
            (body(""), "INV-001", None),
            (with("ticker", r#""aapl""#), "INV-002", Some(1)),
            (with("ticker", r#""BRK.B""#), "INV-002", Some(1)),
            (with("ticker", r#""TOOLONG""#), "INV-002", Some(1)),
            (
                with("timestamp", r#""2026-01-20T14:30:15+02:00""#),
                "INV-003",
                Some(1),
            ),
            (with("timestamp", r#""yesterday""#), "INV-003", Some(1)),
            (
                with("timestamp", r#""2026-01-20T17:00:00Z""#),
                "INV-003",
                Some(1),
            ),
            (
                with("timestamp", r#""1970-01-21T00:00:00Z""#),
                "INV-003",
                Some(1),
            ),
            (with("close", "0"), "INV-004", Some(1)),
            (with("close", "-3"), "INV-004", Some(1)),
            (with("source", r#""bloomberg""#), "INV-005", Some(1)),
            (with("volume", "1.5"), "volume", Some(1)),
            (with("volume", "-1"), "volume", Some(1)),
            (with("open", "0"), "range", Some(1)),
            (
                body(OK).replace(r#""open":184.0"#, r#""high":1,"low":2"#),
                "range",
                Some(0),
            ),
            (body(&format!("{OK},{OK}")), "duplicate", Some(1)),
        ];
        for (text, rule, index) in cases {
            let (r, i) = rule_of(&text);
            assert_eq!((r.as_str(), i), (rule, index), "{text}");
        }
        let many = vec![OK; 1001].join(",");
        assert_eq!(rule_of(&body(&many)), ("INV-006".into(), None));
    }

    #[test]
    fn messages_say_the_fix() {
        let e = check(&body(&OK.replace("AAPL", "aapl"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"INV-002 (quotes[0]): ticker "aapl" has lower-case letters; tickers are upper case (write "AAPL")"#
        );
    }

    #[test]
    fn escaped_strings_are_accepted() {
        let text = body(&OK.replace("\"AAPL\"", "\"\\u0041APL\""));
        assert_eq!(check(&text).unwrap(), 1);
    }
}
