//! What the read API answers, in the shape Alpaca's v2 market-data API uses (bars
//! `{t,o,h,l,c,v,n}`, multi-symbol results keyed by symbol, `next_page_token` null on the last
//! page). Times are RFC 3339 in UTC; volumes are whole numbers.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

/// One OHLCV bar.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Bar {
    /// Start of the bar (UTC; buckets are aligned to UTC midnight).
    #[schema(value_type = String, format = DateTime, example = "2026-01-20T14:30:00Z")]
    pub t: Timestamp,
    /// Price of the bar's earliest quote.
    pub o: f64,
    /// Highest price.
    pub h: f64,
    /// Lowest price.
    pub l: f64,
    /// Price of the bar's latest quote.
    pub c: f64,
    /// Volume traded during the bar: the change of the cumulative day volume since the
    /// previous bar of the same UTC day (daily bars: the day's volume); never negative.
    pub v: i64,
    /// Number of quotes in the bar.
    pub n: i64,
}

/// `GET /v1/bars/{symbol}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BarsPage {
    pub symbol: String,
    #[schema(example = "1Min")]
    pub timeframe: String,
    pub bars: Vec<Bar>,
    /// Present (not null) while more bars exist: pass it as `page_token`.
    pub next_page_token: Option<String>,
}

/// `GET /v1/bars?symbols=…`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MultiBarsPage {
    #[schema(example = "1Min")]
    pub timeframe: String,
    /// Bars by symbol; a symbol without bars in this page is absent.
    pub bars: BTreeMap<String, Vec<Bar>>,
    /// Present (not null) while more bars exist: pass it as `page_token`.
    pub next_page_token: Option<String>,
}

/// One stored quote.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Quote {
    #[schema(value_type = String, format = DateTime, example = "2026-01-20T14:30:15.123Z")]
    pub t: Timestamp,
    /// Last trade price.
    pub p: f64,
    /// Cumulative volume of the trading day.
    pub v: i64,
    /// Bid price, when the source gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bp: Option<f64>,
    /// Ask price, when the source gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ap: Option<f64>,
    /// The day's open, when the source gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub o: Option<f64>,
    /// The day's high, when the source gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h: Option<f64>,
    /// The day's low, when the source gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l: Option<f64>,
    /// Where the quote came from (yfinance, alpaca, polygon, synthetic, …).
    pub src: String,
}

/// `GET /v1/quotes/{symbol}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotesPage {
    pub symbol: String,
    pub quotes: Vec<Quote>,
    /// Present (not null) while more quotes exist: pass it as `page_token`.
    pub next_page_token: Option<String>,
}

/// The latest quote of a symbol.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LatestQuote {
    #[schema(value_type = String, format = DateTime, example = "2026-01-20T14:30:15.123Z")]
    pub t: Timestamp,
    /// Last trade price.
    pub p: f64,
    /// Cumulative volume of the trading day.
    pub v: i64,
    pub src: String,
}

/// `GET /v1/quotes/latest`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Latest {
    /// By symbol.
    pub quotes: BTreeMap<String, LatestQuote>,
}

/// A stored symbol.
#[derive(Debug, Serialize, ToSchema)]
pub struct SymbolInfo {
    #[schema(example = "AAPL")]
    pub symbol: String,
    /// Time of its first stored quote.
    #[schema(value_type = String, format = DateTime)]
    pub first: Timestamp,
    /// Time of its latest stored quote.
    #[schema(value_type = String, format = DateTime)]
    pub last: Timestamp,
    /// Quotes stored.
    pub count: i64,
}

/// `GET /v1/symbols`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Symbols {
    pub symbols: Vec<SymbolInfo>,
}

/// `GET /v1/quotes/{symbol}/count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Count {
    pub symbol: String,
    /// The range counted (inclusive), null where it was left open.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<Timestamp>,
    pub count: i64,
}
