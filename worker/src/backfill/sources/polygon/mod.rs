//! Massive's (formerly Polygon.io) aggregates API:
//! `GET {base}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}` (`from`, `to`
//! in Unix milliseconds, inclusive), `adjusted=false`, `sort=asc`, `limit=50000`, the key as
//! `Authorization: Bearer` (`POLYGON_API_KEY`, as the live source). `limit` counts *base* bars
//! — minutes for minute and hour aggregates — not the bars returned, the classic source of
//! silent truncation: the windows keep a request under it (`plan::polygon_limits`) and
//! `next_url` is followed whenever the answer carries one. Results `{t (ms), o, h, l, c, v,
//! vw, n}`; tickers `AAPL`, `I:SPX`, `X:BTCUSD`.

use jiff::Timestamp;
use quotestream_api::{Instrument, Vendor, contract};
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::{RawBar, pages};
use crate::backfill::http::{FetchError, HistoryHttp};
use crate::backfill::interval::Interval;

const WHAT: &str = "Polygon's aggregates API";
/// Massive's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.massive.com";

#[derive(Debug)]
pub struct PolygonAggs {
    base: Url,
    headers: HeaderMap,
}

#[derive(Deserialize)]
struct Agg {
    t: i64,
    o: Option<f64>,
    h: Option<f64>,
    l: Option<f64>,
    c: Option<f64>,
    v: Option<f64>,
    n: Option<i64>,
    vw: Option<f64>,
}

#[derive(Deserialize)]
struct Page {
    results: Option<Vec<Agg>>,
    next_url: Option<String>,
}

/// (multiplier, timespan) of an interval.
pub fn range(interval: Interval) -> (u32, &'static str) {
    match interval {
        Interval::M1 => (1, "minute"),
        Interval::M2 => (2, "minute"),
        Interval::M5 => (5, "minute"),
        Interval::M15 => (15, "minute"),
        Interval::M30 => (30, "minute"),
        Interval::H1 => (1, "hour"),
        Interval::M90 => (90, "minute"),
        Interval::D1 => (1, "day"),
        Interval::D5 => (5, "day"),
        Interval::W1 => (1, "week"),
        Interval::Mo1 => (1, "month"),
        Interval::Mo3 => (1, "quarter"),
    }
}

impl PolygonAggs {
    pub fn new(base: Url, api_key: Option<String>) -> Result<Self, String> {
        let key = api_key.ok_or_else(|| {
            format!(
                "--source polygon needs the API key: set {}",
                contract::env::POLYGON_API_KEY
            )
        })?;
        let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
            format!(
                "{} has characters a header cannot carry",
                contract::env::POLYGON_API_KEY
            )
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        Ok(Self { base, headers })
    }

    pub async fn fetch(
        &self,
        http: &HistoryHttp,
        instrument: &Instrument,
        start: Timestamp,
        end: Timestamp,
        interval: Interval,
    ) -> Result<Vec<RawBar>, FetchError> {
        let decode = |e: String| FetchError::Decode(e, WHAT);
        let ticker = instrument
            .vendor_symbol(Vendor::Polygon)
            .map_err(|e| decode(e.to_string()))?;
        let (multiplier, timespan) = range(interval);
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend([
                "v2",
                "aggs",
                "ticker",
                &ticker,
                "range",
                &multiplier.to_string(),
                timespan,
                &start.as_millisecond().to_string(),
                // Inclusive: the last millisecond of the window.
                &(end.as_millisecond() - 1).to_string(),
            ]);
        }
        url.query_pairs_mut()
            .append_pair("adjusted", "false")
            .append_pair("sort", "asc")
            .append_pair("limit", "50000");
        pages::collect(WHAT, |next: Option<Url>| {
            let url = next.unwrap_or_else(|| url.clone());
            async move {
                let body = http.get(&url, &self.headers, WHAT).await?;
                let page: Page =
                    serde_json::from_slice(&body).map_err(|e| decode(e.to_string()))?;
                let bars = page
                    .results
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| {
                        let start = Timestamp::from_millisecond(a.t)
                            .map_err(|e| decode(format!("t = {}: {e}", a.t)))?;
                        Ok(RawBar {
                            start,
                            open: a.o,
                            high: a.h,
                            low: a.l,
                            close: a.c,
                            volume: a.v,
                            trades: a.n,
                            vwap: a.vw,
                        })
                    })
                    .collect::<Result<Vec<_>, FetchError>>()?;
                // next_url is absolute; it carries no key (the header does).
                let next = match page.next_url {
                    Some(next) => {
                        let parsed = Url::parse(&next)
                            .map_err(|e| decode(format!("next_url {next:?}: {e}")))?;
                        // The key goes with every page: never to another host than the first's.
                        if parsed.origin() != self.base.origin() {
                            return Err(decode(format!(
                                "next_url {next:?} names another host than --base-url; not followed"
                            )));
                        }
                        Some(parsed)
                    }
                    None => None,
                };
                Ok((bars, next))
            }
        })
        .await
    }
}
