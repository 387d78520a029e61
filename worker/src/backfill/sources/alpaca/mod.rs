//! Alpaca's bars API (market data v2): stocks at `GET {base}/v2/stocks/{symbol}/bars`, crypto
//! at `GET {base}/v1beta3/crypto/us/bars?symbols=BTC/USD`, both with `timeframe`, `start`,
//! `end` (RFC 3339, inclusive), `limit` (≤ 10 000) and `page_token` → `next_page_token`,
//! followed until it is null. Bars `{t, o, h, l, c, v, n, vw}`. Stocks need the key pair
//! (`APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`, as the live source); `adjustment=raw` (no split
//! or dividend adjustment, as the live quotes). Alpaca has no index data.

use jiff::{SignedDuration, Timestamp};
use quotestream_api::instrument::AssetClass;
use quotestream_api::{Instrument, Vendor, contract};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::{RawBar, pages};
use crate::backfill::http::{FetchError, HistoryHttp};
use crate::backfill::interval::Interval;

const WHAT: &str = "Alpaca's bars API";
/// The most bars an answer holds (Alpaca's maximum `limit`).
const PAGE: &str = "10000";
/// Alpaca's data API.
pub const DEFAULT_BASE_URL: &str = "https://data.alpaca.markets";

#[derive(Debug)]
pub struct AlpacaBars {
    base: Url,
    headers: HeaderMap,
}

#[derive(Deserialize)]
struct Bar {
    t: Timestamp,
    o: Option<f64>,
    h: Option<f64>,
    l: Option<f64>,
    c: Option<f64>,
    v: Option<f64>,
    n: Option<i64>,
    vw: Option<f64>,
}

#[derive(Deserialize)]
struct StockPage {
    bars: Option<Vec<Bar>>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct CryptoPage {
    bars: Option<std::collections::HashMap<String, Vec<Bar>>>,
    next_page_token: Option<String>,
}

/// Alpaca's timeframe of an interval (`1Min` … `1Month`); 2m, 90m, 5d and 3mo have none.
pub fn timeframe(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1Min",
        Interval::M5 => "5Min",
        Interval::M15 => "15Min",
        Interval::M30 => "30Min",
        Interval::H1 => "1Hour",
        Interval::D1 => "1Day",
        Interval::W1 => "1Week",
        Interval::Mo1 => "1Month",
        Interval::M2 | Interval::M90 | Interval::D5 | Interval::Mo3 => return None,
    })
}

impl AlpacaBars {
    /// `base` is the REST address ([`super::rest_base::rest_base`]); the keys from the
    /// environment, as the live source reads them.
    pub fn new(base: Url, key_id: Option<String>, secret: Option<String>) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        if let (Some(id), Some(secret)) = (key_id, secret) {
            let value = |v: String, name: &str| {
                HeaderValue::from_str(&v)
                    .map_err(|_| format!("{name} has characters a header cannot carry"))
            };
            headers.insert("APCA-API-KEY-ID", value(id, contract::env::ALPACA_KEY_ID)?);
            let mut secret = value(secret, contract::env::ALPACA_SECRET_KEY)?;
            secret.set_sensitive(true);
            headers.insert("APCA-API-SECRET-KEY", secret);
        }
        Ok(Self { base, headers })
    }

    /// Whether stocks can be asked for (crypto needs no keys).
    pub fn has_keys(&self) -> bool {
        self.headers.contains_key("APCA-API-KEY-ID")
    }

    fn url(&self, instrument: &Instrument, symbol: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            match instrument.class() {
                AssetClass::Crypto => {
                    path.extend(["v1beta3", "crypto", "us", "bars"]);
                }
                _ => {
                    path.extend(["v2", "stocks", symbol, "bars"]);
                }
            }
        }
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
        let decode = |e: String| FetchError::Decode(e, WHAT);
        let symbol = instrument
            .vendor_symbol(Vendor::Alpaca)
            .map_err(|e| decode(e.to_string()))?;
        let tf = timeframe(interval).ok_or_else(|| {
            decode(format!(
                "Alpaca has no {interval} bars; use 1m, 5m, 15m, 30m, 1h, 1d, 1wk or 1mo"
            ))
        })?;
        let crypto = instrument.class() == AssetClass::Crypto;
        if !crypto && !self.has_keys() {
            return Err(decode(format!(
                "stock bars need the key pair: set {} and {}",
                contract::env::ALPACA_KEY_ID,
                contract::env::ALPACA_SECRET_KEY
            )));
        }
        // `end` is inclusive at Alpaca: the last second of the window.
        let last = end - SignedDuration::from_secs(1);
        let symbol = &symbol;
        pages::collect(WHAT, |token: Option<String>| async move {
            let mut url = self.url(instrument, symbol);
            {
                let mut q = url.query_pairs_mut();
                if crypto {
                    q.append_pair("symbols", symbol);
                }
                q.append_pair("timeframe", tf)
                    .append_pair("start", &start.to_string())
                    .append_pair("end", &last.to_string())
                    .append_pair("limit", PAGE)
                    .append_pair("sort", "asc");
                if !crypto {
                    q.append_pair("adjustment", "raw");
                }
                if let Some(t) = &token {
                    q.append_pair("page_token", t);
                }
            }
            let body = http.get(&url, &self.headers, WHAT).await?;
            let (bars, next) = if crypto {
                let page: CryptoPage =
                    serde_json::from_slice(&body).map_err(|e| decode(e.to_string()))?;
                let bars = page
                    .bars
                    .and_then(|mut m| m.remove(symbol))
                    .unwrap_or_default();
                (bars, page.next_page_token)
            } else {
                let page: StockPage =
                    serde_json::from_slice(&body).map_err(|e| decode(e.to_string()))?;
                (page.bars.unwrap_or_default(), page.next_page_token)
            };
            let bars = bars.into_iter().map(|b| RawBar {
                start: b.t,
                open: b.o,
                high: b.h,
                low: b.l,
                close: b.c,
                volume: b.v,
                trades: b.n,
                vwap: b.vw,
            });
            Ok((bars.collect(), next.filter(|t| !t.is_empty())))
        })
        .await
    }
}
