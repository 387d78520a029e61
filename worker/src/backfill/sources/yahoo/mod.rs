//! Yahoo's chart API: `GET {baseUrl}/v8/finance/chart/{symbol}?period1&period2&interval`, one
//! request per window (no paging: the window limits of [`crate::backfill::plan::yahoo_limits`]
//! keep an answer small). The symbol is Yahoo's spelling (`BRK-B`, `^GSPC`, `BTC-USD`),
//! percent-encoded as a path segment. No cookie or crumb: the chart API does not ask for them.

mod wire;

use jiff::Timestamp;
use quotestream_api::{Instrument, Vendor};
use reqwest::Url;
use reqwest::header::HeaderMap;

use super::RawBar;
use crate::backfill::http::{FetchError, HistoryHttp};
use crate::backfill::interval::Interval;

pub use wire::decode;

const WHAT: &str = "Yahoo's chart API";

#[derive(Debug)]
pub struct YahooChart {
    base: Url,
}

impl YahooChart {
    /// `base` as `spec.source.yahoo.baseUrl` gives it (`https://query1.finance.yahoo.com`).
    pub fn new(base: &str) -> Result<Self, String> {
        let base = crate::sources::yahoo::check_url("--base-url", base.trim_end_matches('/'))
            .map_err(|e| e.to_string())?;
        Ok(Self { base })
    }

    fn url(&self, symbol: &str, start: Timestamp, end: Timestamp, interval: Interval) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["v8", "finance", "chart", symbol]);
        }
        url.query_pairs_mut()
            .append_pair("period1", &start.as_second().to_string())
            .append_pair("period2", &end.as_second().to_string())
            .append_pair("interval", interval.name())
            .append_pair("includePrePost", "false")
            .append_pair("events", "div|split");
        url
    }

    pub async fn fetch(
        &self,
        http: &HistoryHttp,
        instrument: &Instrument,
        start: Timestamp,
        end: Timestamp,
        interval: Interval,
    ) -> Result<Vec<RawBar>, FetchError> {
        let symbol = instrument
            .vendor_symbol(Vendor::Yahoo)
            .map_err(|e| FetchError::Decode(e.to_string(), WHAT))?;
        let url = self.url(&symbol, start, end, interval);
        let body = http.get(&url, &HeaderMap::new(), WHAT).await?;
        decode(&body).map_err(|e| FetchError::Decode(e, WHAT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symbol_is_one_path_segment() {
        let y = YahooChart::new("http://127.0.0.1:9/").unwrap();
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let url = y.url("^GSPC", t(1_704_067_200), t(1_704_153_600), Interval::D1);
        assert_eq!(
            url.as_str(),
            // `^` is not in WHATWG's path percent-encode set; Yahoo takes it as is.
            "http://127.0.0.1:9/v8/finance/chart/^GSPC?period1=1704067200&period2=1704153600&interval=1d&includePrePost=false&events=div%7Csplit"
        );
        let err = YahooChart::new("ftp://x").unwrap_err();
        assert!(err.contains("--base-url"), "{err}");
    }
}
