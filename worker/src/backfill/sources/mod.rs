//! Sources of history: each turns (instrument, window, interval) into the vendor's bars, raw —
//! nulls, duplicates and bars outside the window included; [`super::clean`] applies one rule to
//! all of them. Each vendor has a folder: its request, its paging, its decoder.

pub mod alpaca;
mod pages;
pub mod polygon;
pub mod rest_base;
pub mod yahoo;

use jiff::Timestamp;
use quotestream_api::{Instrument, Vendor};

use super::http::{FetchError, HistoryHttp};
use super::interval::Interval;
use super::plan::{Limits, alpaca_limits, polygon_limits, yahoo_limits};

/// One bar as the vendor sent it; a field the vendor sent as null is `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawBar {
    pub start: Timestamp,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub close: Option<f64>,
    pub volume: Option<f64>,
    pub trades: Option<i64>,
    pub vwap: Option<f64>,
}

/// The vendor a run fetches from.
#[derive(Debug)]
pub enum HistorySource {
    Yahoo(yahoo::YahooChart),
    Alpaca(alpaca::AlpacaBars),
    Polygon(polygon::PolygonAggs),
}

impl HistorySource {
    pub fn vendor(&self) -> Vendor {
        match self {
            Self::Yahoo(_) => Vendor::Yahoo,
            Self::Alpaca(_) => Vendor::Alpaca,
            Self::Polygon(_) => Vendor::Polygon,
        }
    }

    /// The vendor's limits for `interval`.
    pub fn limits(&self, interval: Interval) -> Limits {
        match self {
            Self::Yahoo(_) => yahoo_limits(interval),
            Self::Alpaca(_) => alpaca_limits(interval),
            Self::Polygon(_) => polygon_limits(interval),
        }
    }

    /// The bars of `instrument` in [start, end), every page of them.
    pub async fn fetch(
        &self,
        http: &HistoryHttp,
        instrument: &Instrument,
        start: Timestamp,
        end: Timestamp,
        interval: Interval,
    ) -> Result<Vec<RawBar>, FetchError> {
        match self {
            Self::Yahoo(y) => y.fetch(http, instrument, start, end, interval).await,
            Self::Alpaca(a) => a.fetch(http, instrument, start, end, interval).await,
            Self::Polygon(p) => p.fetch(http, instrument, start, end, interval).await,
        }
    }
}
