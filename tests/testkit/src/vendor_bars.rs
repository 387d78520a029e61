//! A local server for the bar APIs of Alpaca and Massive/Polygon, for the history sources'
//! tests: the real paths, parameters, paging and bodies, over the deterministic market of
//! [`crate::yahoo_chart`] (the same bars Yahoo's chart serves, spelled the vendor's way).
//!
//! - Alpaca: `GET /v2/stocks/{symbol}/bars?timeframe&start&end&limit&page_token` (headers
//!   `APCA-API-KEY-ID`, `APCA-API-SECRET-KEY`) → `{"bars":[{t,o,h,l,c,v,n,vw}],"symbol",
//!   "next_page_token"}`; `GET /v1beta3/crypto/us/bars?symbols=BTC/USD&…` →
//!   `{"bars":{"BTC/USD":[…]},"next_page_token"}`. Daily bars are stamped at midnight New York.
//! - Polygon: `GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}?limit&
//!   apiKey` (or `Authorization: Bearer`) → `{"ticker","results":[{t(ms),o,h,l,c,v,vw,n}],
//!   "resultsCount","status":"OK","next_url"}`; `limit` counts *base* bars (minutes for
//!   minute and hour aggregates, days for longer ones), as Polygon's does, and an answer cut
//!   by it carries `next_url`.
//!
//! Scriptable: the page size, queued 429s (with Retry-After), a request log.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::yahoo_chart::{Market, bar_times, chart_bar, market_of};
use crate::{Result, io_err};

/// The key pair the Alpaca side accepts, and the Polygon API key.
pub const ALPACA_KEY_ID: &str = "PKTESTKEY";
pub const ALPACA_SECRET: &str = "test-secret";
pub const POLYGON_KEY: &str = "test-polygon-key";

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarsRequest {
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Default)]
struct Inner {
    page_size: Option<usize>,
    too_many: VecDeque<Option<u64>>,
    log: Vec<BarsRequest>,
}

/// A running server on a free loopback port; stopped when dropped.
#[derive(Debug)]
pub struct VendorBarsServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl VendorBarsServer {
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(io_err("binding the vendor bars server to 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("reading the vendor bars server's address"))?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v2/stocks/{symbol}/bars", get(alpaca_stock))
            .route("/v1beta3/crypto/us/bars", get(alpaca_crypto))
            .route(
                "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}",
                get(polygon),
            )
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bars per page (Alpaca's `limit`, Polygon's base-bar `limit`) at most, whatever the
    /// client asks for: forces paging in tests.
    pub fn set_page_size(&self, n: Option<usize>) {
        self.lock().page_size = n;
    }

    /// Answers the next request with 429 (and `Retry-After` when given).
    pub fn inject_too_many_requests(&self, retry_after: Option<u64>) {
        self.lock().too_many.push_back(retry_after);
    }

    pub fn requests(&self) -> Vec<BarsRequest> {
        self.lock().log.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for VendorBarsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// A queued 429, or None.
fn throttled(s: &Shared) -> Option<Response> {
    let retry_after = lock(s).too_many.pop_front()?;
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"message": "too many requests."}),
    );
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(r)
}

fn logged(s: &Shared, path: String, r: Response) -> Response {
    lock(s).log.push(BarsRequest {
        path,
        status: r.status().as_u16(),
    });
    r
}

/// Our market's name of a vendor symbol (Yahoo's spelling).
fn market_symbol(vendor_symbol: &str) -> String {
    if let Some(index) = vendor_symbol.strip_prefix("I:") {
        return match index {
            "SPX" => "^GSPC".to_owned(),
            "COMP" => "^IXIC".to_owned(),
            other => format!("^{other}"),
        };
    }
    if let Some(pair) = vendor_symbol.strip_prefix("X:") {
        for quote in [
            "USDT", "USDC", "USD", "EUR", "GBP", "JPY", "CAD", "AUD", "BTC", "ETH",
        ] {
            if let Some(base) = pair.strip_suffix(quote) {
                return format!("{base}-{quote}");
            }
        }
    }
    vendor_symbol.replace(['/', '.'], "-")
}

/// (Yahoo interval name, width in seconds) of an Alpaca timeframe or Polygon multiplier+timespan.
fn interval(multiplier: u32, unit: &str) -> Option<(&'static str, i64)> {
    Some(match (multiplier, unit) {
        (1, "Min" | "minute") => ("1m", 60),
        (2, "Min" | "minute") => ("2m", 120),
        (5, "Min" | "minute") => ("5m", 300),
        (15, "Min" | "minute") => ("15m", 900),
        (30, "Min" | "minute") => ("30m", 1800),
        (90, "Min" | "minute") => ("90m", 5400),
        (1, "Hour" | "hour") => ("1h", 3600),
        (1, "Day" | "day") => ("1d", 86_400),
        (1, "Week" | "week") => ("1wk", 7 * 86_400),
        (1, "Month" | "month") => ("1mo", 31 * 86_400),
        _ => return None,
    })
}

/// Bars of `symbol` in [from, to) with the vendor's stamps: intraday bars at their start
/// aligned to the width (Alpaca and Polygon align hours to the clock), daily and longer at
/// midnight New York of the session day.
fn vendor_bars(symbol: &str, name: &str, width: i64, from: i64, to: i64) -> Vec<(i64, Value)> {
    let ny = jiff::tz::TimeZone::get("America/New_York").unwrap_or(jiff::tz::TimeZone::UTC);
    let mut out: Vec<(i64, Value)> = Vec::new();
    // A day of margin: a daily bar stamped at midnight belongs to a session that opens later.
    for start in bar_times(symbol, name, from - 86_400, to + 86_400) {
        let b = chart_bar(symbol, start);
        let stamp = if width >= 86_400 && market_of(symbol) != Market::Crypto {
            jiff::Timestamp::from_second(start)
                .ok()
                .and_then(|t| t.to_zoned(ny.clone()).start_of_day().ok())
                .map_or(start, |z| z.timestamp().as_second())
        } else {
            start - start.rem_euclid(width.min(3600))
        };
        if stamp < from || stamp >= to || out.last().is_some_and(|(t, _)| *t == stamp) {
            continue;
        }
        let vw = ((b.open + b.close) / 2.0 * 10_000.0).round() / 10_000.0;
        out.push((
            stamp,
            json!({"o": b.open, "h": b.high, "l": b.low, "c": b.close, "v": b.volume, "n": b.volume / 100 + 1, "vw": vw}),
        ));
    }
    out
}

fn rfc3339_seconds(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .or_else(|| {
            s.parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp())
        })
        .map(|t| t.as_second())
}

fn alpaca_timeframe(tf: &str) -> Option<(&'static str, i64)> {
    let digits: String = tf.chars().take_while(char::is_ascii_digit).collect();
    let unit = &tf[digits.len()..];
    interval(digits.parse().ok()?, unit)
}

/// The page of `bars` from `page_token` (a start time), and the next token.
fn alpaca_page(
    s: &Shared,
    mut bars: Vec<(i64, Value)>,
    query: &HashMap<String, String>,
) -> (Vec<Value>, Value) {
    let asked = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, 10_000);
    let limit = lock(s).page_size.map_or(asked, |p| p.min(asked));
    if let Some(after) = query.get("page_token").and_then(|t| t.parse::<i64>().ok()) {
        bars.retain(|(t, _)| *t >= after);
    }
    let next = bars
        .get(limit)
        .map_or(Value::Null, |(t, _)| json!(t.to_string()));
    let page = bars
        .into_iter()
        .take(limit)
        .map(|(t, mut v)| {
            v["t"] = json!(
                jiff::Timestamp::from_second(t)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            );
            v
        })
        .collect();
    (page, next)
}

fn alpaca_authorised(headers: &HeaderMap) -> bool {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    h("APCA-API-KEY-ID") == Some(ALPACA_KEY_ID) && h("APCA-API-SECRET-KEY") == Some(ALPACA_SECRET)
}

fn alpaca_range(
    query: &HashMap<String, String>,
) -> std::result::Result<((&'static str, i64), i64, i64), &'static str> {
    let bad = |m: &'static str| m;
    let tf = query
        .get("timeframe")
        .and_then(|t| alpaca_timeframe(t))
        .ok_or_else(|| bad("invalid timeframe"))?;
    let start = query
        .get("start")
        .and_then(|s| rfc3339_seconds(s))
        .ok_or_else(|| bad("invalid start"))?;
    // `end` is inclusive at Alpaca.
    let end = query
        .get("end")
        .and_then(|s| rfc3339_seconds(s))
        .ok_or_else(|| bad("invalid end"))?
        + 1;
    Ok((tf, start, end))
}

async fn alpaca_stock(
    State(s): State<Shared>,
    Path(symbol): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = format!("/v2/stocks/{symbol}/bars");
    if let Some(r) = throttled(&s) {
        return logged(&s, path, r);
    }
    if !alpaca_authorised(&headers) {
        return logged(
            &s,
            path,
            json_response(
                StatusCode::UNAUTHORIZED,
                json!({"message": "unauthorized."}),
            ),
        );
    }
    let ((name, width), start, end) = match alpaca_range(&query) {
        Ok(r) => r,
        Err(m) => {
            let r = json_response(StatusCode::UNPROCESSABLE_ENTITY, json!({"message": m}));
            return logged(&s, path, r);
        }
    };
    let bars = vendor_bars(&market_symbol(&symbol), name, width, start, end);
    let (page, next) = alpaca_page(&s, bars, &query);
    let body = json!({"bars": page, "symbol": symbol, "next_page_token": next});
    logged(&s, path, json_response(StatusCode::OK, body))
}

async fn alpaca_crypto(
    State(s): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = "/v1beta3/crypto/us/bars".to_owned();
    if let Some(r) = throttled(&s) {
        return logged(&s, path, r);
    }
    let ((name, width), start, end) = match alpaca_range(&query) {
        Ok(r) => r,
        Err(m) => {
            let r = json_response(StatusCode::UNPROCESSABLE_ENTITY, json!({"message": m}));
            return logged(&s, path, r);
        }
    };
    let symbol = query.get("symbols").cloned().unwrap_or_default();
    let bars = vendor_bars(&market_symbol(&symbol), name, width, start, end);
    let (page, next) = alpaca_page(&s, bars, &query);
    let body = json!({"bars": {symbol: page}, "next_page_token": next});
    logged(&s, path, json_response(StatusCode::OK, body))
}

async fn polygon(
    State(s): State<Shared>,
    Path((ticker, multiplier, timespan, from, to)): Path<(String, u32, String, String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = format!("/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}");
    if let Some(r) = throttled(&s) {
        return logged(&s, path, r);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if query.get("apiKey").map(String::as_str).or(bearer) != Some(POLYGON_KEY) {
        let body = json!({"status": "ERROR", "request_id": "local", "error": "Unknown API Key"});
        return logged(&s, path, json_response(StatusCode::UNAUTHORIZED, body));
    }
    let edge = |v: &str| {
        v.parse::<i64>()
            .ok()
            .map(|ms| ms.div_euclid(1000))
            .or_else(|| rfc3339_seconds(v))
    };
    let (Some((name, width)), Some(start), Some(end)) =
        (interval(multiplier, &timespan), edge(&from), edge(&to))
    else {
        let body = json!({"status": "ERROR", "request_id": "local", "error": "Could not parse the request"});
        return logged(&s, path, json_response(StatusCode::BAD_REQUEST, body));
    };
    // `to` is inclusive; a date means its whole day.
    let end = if to.contains('-') {
        end + 86_400
    } else {
        end + 1
    };
    let bars = vendor_bars(&market_symbol(&ticker), name, width, start, end);
    let asked = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(5000)
        .clamp(1, 50_000);
    let limit = lock(&s).page_size.map_or(asked, |p| p.min(asked));
    // Base bars: minutes for minute and hour aggregates, days for longer ones.
    let base_per_bar = if width >= 86_400 {
        (width / 86_400) as usize
    } else {
        (width / 60) as usize
    };
    let fit = (limit / base_per_bar.max(1)).max(1);
    let next_url = bars.get(fit).map(|(t, _)| {
        format!(
            "http://{}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{}/{to}?cursor={}",
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1"),
            t * 1000,
            t
        )
    });
    let results: Vec<Value> = bars
        .into_iter()
        .take(fit)
        .map(|(t, mut v)| {
            v["t"] = json!(t * 1000);
            v
        })
        .collect();
    let mut body = json!({
        "ticker": ticker,
        "queryCount": results.len(),
        "resultsCount": results.len(),
        "adjusted": true,
        "status": "OK",
        "request_id": "local",
        "count": results.len(),
    });
    if !results.is_empty() {
        body["results"] = Value::Array(results);
    }
    if let Some(url) = next_url {
        body["next_url"] = json!(url);
    }
    logged(&s, path, json_response(StatusCode::OK, body))
}
