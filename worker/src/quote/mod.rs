//! The quote model (contracts 001 and 004) and the validation every quote passes before any
//! sink sees it.

mod validate;
pub mod wire;

use jiff::Timestamp;
use quotestream_api::Ticker;

pub use validate::{
    DEFAULT_MAX_CLOCK_SKEW, RawQuote, ValidationError, validate, validate_with_skew,
};

/// A validated quote. Constructed only by [`validate`], so every `Quote` a sink receives
/// satisfies the contract: a canonical ticker, a UTC timestamp, a positive finite price, a
/// non-negative volume and bid ≤ ask when both are present.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub ticker: Ticker,
    /// Time of the last trade (or of the quote), UTC; published with millisecond precision.
    pub timestamp: Timestamp,
    /// Last trade price.
    pub price: f64,
    /// Cumulative volume of the trading day.
    pub volume: u64,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    /// The `source` field of the contracts (`yfinance`, `alpaca`, `polygon`, `synthetic`, ...).
    pub source: &'static str,
}

impl Quote {
    /// The idempotency key shared by all sinks: a ticker has at most one quote per millisecond.
    pub fn key(&self) -> (&Ticker, i64) {
        (&self.ticker, self.timestamp.as_millisecond())
    }
}
