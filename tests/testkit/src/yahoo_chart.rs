//! Yahoo's chart API on the local Yahoo server ([`crate::yahoo::YahooServer`]):
//! `GET /v8/finance/chart/{symbol}?period1&period2&interval`, answered in the shape of the
//! recorded `chart-AAPL.json` (`chart.result[0].{meta, timestamp[], indicators.quote[0].{open,
//! high, low, close, volume}, indicators.adjclose[0].adjclose}`, parallel arrays, nulls where a
//! bar has no data; errors as `chart.error.{code, description}` with `result: null`).
//!
//! The market it serves is deterministic ([`chart_bars`]): stocks (`AAPL`, `BRK-B`) and
//! indices (`^GSPC`, volume 0) trade 09:30–16:00 America/New_York on weekdays that are not in
//! [`HOLIDAYS`] (so the UTC time of the open moves with daylight saving), daily bars stamped at
//! the session's open as Yahoo does; crypto (`BTC-USD`) trades around the clock with daily bars
//! at 00:00 UTC. Yahoo's range limits are enforced against the server's clock (settable):
//! 1m only within the last 30 days and at most 7 days per request, 2m–90m within 60 days, 1h
//! within 730 days — beyond, HTTP 422 with Yahoo's message.
//!
//! Scriptable: queued [`ChartFault`]s (429 with or without Retry-After, 5xx), bars answered
//! as nulls, bars sent twice (the second copy with a later close, as Yahoo's revisions do), and
//! the live partial bar Yahoo appends after the range (on by default). Every chart request is
//! logged with its arrival time ([`crate::yahoo::YahooServer::chart_requests`]).

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

/// NYSE full-day closures 2024–2026: the gaps a daily series of a US stock has besides
/// weekends.
pub const HOLIDAYS: [(i16, i8, i8); 31] = [
    (2024, 1, 1),
    (2024, 1, 15),
    (2024, 2, 19),
    (2024, 3, 29),
    (2024, 5, 27),
    (2024, 6, 19),
    (2024, 7, 4),
    (2024, 9, 2),
    (2024, 11, 28),
    (2024, 12, 25),
    (2025, 1, 1),
    (2025, 1, 9),
    (2025, 1, 20),
    (2025, 2, 17),
    (2025, 4, 18),
    (2025, 5, 26),
    (2025, 6, 19),
    (2025, 7, 4),
    (2025, 9, 1),
    (2025, 11, 27),
    (2025, 12, 25),
    (2026, 1, 1),
    (2026, 1, 19),
    (2026, 2, 16),
    (2026, 4, 3),
    (2026, 5, 25),
    (2026, 6, 19),
    (2026, 7, 3),
    (2026, 9, 7),
    (2026, 11, 26),
    (2026, 12, 25),
];

/// A scripted answer to one chart request, in place of the normal one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartFault {
    /// 429 `Too Many Requests`, with `Retry-After: <seconds>` when given.
    TooManyRequests { retry_after: Option<u64> },
    /// A 5xx with Yahoo's "Will be right back" page.
    ServerError(u16),
}

/// One chart request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRequest {
    /// The symbol as sent (`^GSPC`, `BRK-B`).
    pub symbol: String,
    pub interval: String,
    pub period1: i64,
    pub period2: i64,
    pub status: u16,
    /// Milliseconds since the server started, when the request arrived.
    pub at_ms: u64,
}

#[derive(Debug)]
pub(crate) struct ChartState {
    pub started: Instant,
    pub now: Option<i64>,
    pub faults: VecDeque<ChartFault>,
    pub nulls: HashSet<(String, i64)>,
    pub null_every: Option<u64>,
    pub duplicates: HashSet<(String, i64)>,
    pub live_bar: bool,
    pub log: Vec<ChartRequest>,
}

impl Default for ChartState {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            now: None,
            faults: VecDeque::new(),
            nulls: HashSet::new(),
            null_every: None,
            duplicates: HashSet::new(),
            live_bar: true,
            log: Vec::new(),
        }
    }
}

/// What kind of market a Yahoo symbol trades in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Market {
    Equity,
    Index,
    Crypto,
}

pub fn market_of(symbol: &str) -> Market {
    if symbol.starts_with('^') {
        Market::Index
    } else if symbol.split_once('-').is_some_and(|(_, q)| q.len() >= 3) {
        Market::Crypto
    } else {
        Market::Equity
    }
}

/// Seconds of a Yahoo interval, for the intraday ones and `1d`.
pub fn interval_seconds(interval: &str) -> Option<i64> {
    Some(match interval {
        "1m" => 60,
        "2m" => 120,
        "5m" => 300,
        "15m" => 900,
        "30m" => 1800,
        "60m" | "1h" => 3600,
        "90m" => 5400,
        "1d" => 86_400,
        "5d" => 5 * 86_400,
        "1wk" => 7 * 86_400,
        "1mo" => 31 * 86_400,
        "3mo" => 92 * 86_400,
        _ => return None,
    })
}

fn new_york() -> TimeZone {
    TimeZone::get("America/New_York").unwrap_or(TimeZone::UTC)
}

/// A NYSE trading day: a weekday that is not in [`HOLIDAYS`].
pub fn is_trading_day(d: Date) -> bool {
    !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
        && !HOLIDAYS.contains(&(d.year(), d.month(), d.day()))
}

fn at(d: Date, hour: i8, minute: i8, tz: &TimeZone) -> Option<i64> {
    d.to_datetime(Time::constant(hour, minute, 0, 0))
        .to_zoned(tz.clone())
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// One generated bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartBar {
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

/// The bar starts of `symbol` at `interval` in [period1, period2), before any script.
pub fn bar_times(symbol: &str, interval: &str, period1: i64, period2: i64) -> Vec<i64> {
    let Some(step) = interval_seconds(interval) else {
        return Vec::new();
    };
    let market = market_of(symbol);
    let (Ok(first), Ok(last)) = (
        Timestamp::from_second(period1),
        Timestamp::from_second(period2),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if market == Market::Crypto {
        if step >= 86_400 {
            let day = 86_400;
            let mut t = period1.div_euclid(day) * day;
            if t < period1 {
                t += day;
            }
            while t < period2 {
                out.push(t);
                t += day * (step / 86_400).clamp(1, 7);
            }
        } else {
            let mut t = period1.div_euclid(step) * step;
            if t < period1 {
                t += step;
            }
            while t < period2 {
                out.push(t);
                t += step;
            }
        }
        return out;
    }
    let tz = new_york();
    let mut d = first.to_zoned(tz.clone()).date();
    let end = last.to_zoned(tz.clone()).date();
    let mut week = None;
    while d <= end {
        if is_trading_day(d)
            && let (Some(open), Some(close)) = (at(d, 9, 30, &tz), at(d, 16, 0, &tz))
        {
            if step >= 86_400 {
                // Longer bars start at their first trading day's open.
                let key = match interval {
                    "1d" => i64::from(d.day_of_year()) + 1000 * i64::from(d.year()),
                    "1mo" => i64::from(d.month()) + 100 * i64::from(d.year()),
                    "3mo" => i64::from((d.month() - 1) / 3) + 100 * i64::from(d.year()),
                    _ => open.div_euclid(7 * 86_400),
                };
                if week != Some(key) && open >= period1 && open < period2 {
                    out.push(open);
                }
                week = Some(key);
            } else {
                let mut t = open;
                while t < close {
                    if t >= period1 && t < period2 {
                        out.push(t);
                    }
                    t += step;
                }
            }
        }
        d = match d.checked_add(1.day()) {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    out
}

/// The deterministic bar of `symbol` starting at `time`.
pub fn chart_bar(symbol: &str, time: i64) -> ChartBar {
    let h = crate::yahoo::fnv1a(symbol);
    let base = 10.0 + (h % 49_000) as f64 / 100.0;
    let wave = |t: i64| 1.0 + 0.05 * ((t as f64 / 86_400.0 / 7.0) + (h % 100) as f64).sin();
    let open = yahoo_float(base * wave(time));
    let close = yahoo_float(base * wave(time + 60) * (1.0 + 0.001 * ((time / 60) % 7 - 3) as f64));
    let volume = match market_of(symbol) {
        Market::Index => 0,
        _ => 1000 + (h >> 16) % 100_000 + time.rem_euclid(3600) as u64,
    };
    ChartBar {
        time,
        open,
        high: yahoo_float(open.max(close) * 1.002),
        low: yahoo_float(open.min(close) * 0.998),
        close,
        volume,
    }
}

/// Whether the bar of `symbol` at `time` comes as nulls under
/// [`crate::yahoo::YahooServer::set_null_every`]`(Some(n))`: deterministic, so a benchmark can
/// list the gaps it explains.
pub fn null_every_hits(symbol: &str, time: i64, n: u64) -> bool {
    n > 0 && (crate::yahoo::fnv1a(symbol) ^ time as u64).is_multiple_of(n)
}

/// The second copy of a bar sent twice ([`crate::yahoo::YahooServer::set_duplicate_bars`]):
/// Yahoo's revision, a cent higher close. The one a backfill must keep.
pub fn revised(bar: ChartBar) -> ChartBar {
    ChartBar {
        close: yahoo_float(bar.close + 0.01),
        high: yahoo_float(bar.high.max(bar.close + 0.01)),
        ..bar
    }
}

/// Yahoo's prices are single-precision floats printed as doubles (164.97999572753906).
fn yahoo_float(x: f64) -> f64 {
    f64::from(((x * 100.0).round() / 100.0) as f32)
}

/// Why a request is outside Yahoo's range limits, in Yahoo's words.
pub fn range_error(interval: &str, period1: i64, period2: i64, now: i64) -> Option<String> {
    let day = 86_400;
    let what =
        format!("{interval} data not available for startTime={period1} and endTime={period2}.");
    match interval {
        "1m" if period2 - period1 > 7 * day => Some(format!(
            "{what} Only 7 days worth of 1m granularity data are allowed to be fetched per request."
        )),
        "1m" if period1 < now - 30 * day => Some(format!(
            "{what} The requested range must be within the last 30 days."
        )),
        "2m" | "5m" | "15m" | "30m" | "90m" if period1 < now - 60 * day => Some(format!(
            "{what} The requested range must be within the last 60 days."
        )),
        "60m" | "1h" if period1 < now - 730 * day => Some(format!(
            "{what} The requested range must be within the last 730 days."
        )),
        _ => None,
    }
}

pub(crate) fn error_body(status: StatusCode, code: &str, description: &str) -> Response {
    let body =
        json!({"chart": {"result": null, "error": {"code": code, "description": description}}});
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::yahoo::JSON_CONTENT_TYPE),
        )],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn fault_response(fault: ChartFault) -> Response {
    match fault {
        ChartFault::TooManyRequests { retry_after } => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain;charset=utf-8"),
                )],
                crate::yahoo::TOO_MANY_REQUESTS_BODY,
            )
                .into_response();
            if let Some(secs) = retry_after
                && let Ok(v) = HeaderValue::from_str(&secs.to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        ChartFault::ServerError(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            crate::yahoo::WILL_BE_RIGHT_BACK_BODY,
        )
            .into_response(),
    }
}

/// What the scripts do to one answer.
#[derive(Debug, Clone)]
pub(crate) struct Shaping {
    pub nulls: HashSet<i64>,
    pub null_every: Option<u64>,
    pub duplicates: HashSet<i64>,
    pub live_bar: bool,
    pub now: i64,
}

/// The 200 body for `symbol` (Yahoo spelling) at `interval` over [period1, period2).
pub(crate) fn chart_body(
    symbol: &str,
    interval: &str,
    period1: i64,
    period2: i64,
    shaping: &Shaping,
) -> Value {
    let mut times = Vec::new();
    let (mut open, mut high, mut low, mut close, mut volume) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut push = |bar: Option<ChartBar>, time: i64| {
        times.push(json!(time));
        match bar {
            Some(b) => {
                open.push(json!(b.open));
                high.push(json!(b.high));
                low.push(json!(b.low));
                close.push(json!(b.close));
                volume.push(json!(b.volume));
            }
            None => {
                for a in [&mut open, &mut high, &mut low, &mut close, &mut volume] {
                    a.push(Value::Null);
                }
            }
        }
    };
    for t in bar_times(symbol, interval, period1, period2) {
        let null = shaping.nulls.contains(&t)
            || shaping
                .null_every
                .is_some_and(|n| null_every_hits(symbol, t, n));
        if null {
            push(None, t);
            continue;
        }
        let bar = chart_bar(symbol, t);
        push(Some(bar), t);
        if shaping.duplicates.contains(&t) {
            push(Some(revised(bar)), t);
        }
    }
    if shaping.live_bar {
        // Yahoo appends the bar in progress, stamped with the last trade's time, whatever
        // period2 says.
        let t = shaping.now;
        push(Some(chart_bar(symbol, t - t.rem_euclid(60))), t);
    }
    let adjclose = close.clone();
    let quote = if times.is_empty() {
        json!({})
    } else {
        json!({"open": open, "high": high, "low": low, "close": close, "volume": volume})
    };
    let mut result = json!({
        "meta": meta(symbol, interval, shaping.now),
        "indicators": {"quote": [quote]},
    });
    if !times.is_empty() {
        result["timestamp"] = Value::Array(times);
        if interval_seconds(interval).is_some_and(|s| s >= 86_400) {
            result["indicators"]["adjclose"] = json!([{"adjclose": adjclose}]);
        }
    }
    json!({"chart": {"result": [result], "error": null}})
}

fn meta(symbol: &str, interval: &str, now: i64) -> Value {
    let market = market_of(symbol);
    let (kind, exchange, full, tz_name) = match market {
        Market::Equity => ("EQUITY", "NMS", "NasdaqGS", "America/New_York"),
        Market::Index => ("INDEX", "SNP", "SNP", "America/New_York"),
        Market::Crypto => ("CRYPTOCURRENCY", "CCC", "CCC", "UTC"),
    };
    let offset = Timestamp::from_second(now)
        .ok()
        .and_then(|t| {
            TimeZone::get(tz_name)
                .ok()
                .map(|tz| tz.to_offset(t).seconds())
        })
        .unwrap_or(0);
    let abbreviation = match (market, offset) {
        (Market::Crypto, _) => "UTC",
        (_, -14_400) => "EDT",
        _ => "EST",
    };
    let last = chart_bar(symbol, now - now.rem_euclid(60));
    json!({
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": exchange,
        "fullExchangeName": full,
        "instrumentType": kind,
        "firstTradeDate": 345_479_400,
        "regularMarketTime": now,
        "hasPrePostMarketData": market == Market::Equity,
        "gmtoffset": offset,
        "timezone": abbreviation,
        "exchangeTimezoneName": tz_name,
        "regularMarketPrice": last.close,
        "regularMarketVolume": last.volume,
        "priceHint": 2,
        "dataGranularity": interval,
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_moves_with_daylight_saving() {
        // 2024-03-08 (EST) opens 14:30Z; 2024-03-11 (EDT) 13:30Z.
        let before = bar_times("AAPL", "1m", 1_709_856_000, 1_709_942_400);
        assert_eq!(before.first(), Some(&1_709_908_200));
        assert_eq!(before.len(), 390);
        let after = bar_times("AAPL", "1m", 1_710_115_200, 1_710_201_600);
        assert_eq!(after.first(), Some(&1_710_163_800));
        assert_eq!(after.len(), 390);
    }

    #[test]
    fn weekends_and_holidays_have_no_daily_bars_but_crypto_does() {
        // 2024-12-23 .. 2024-12-30: Christmas and the weekend are closed.
        let days = bar_times("AAPL", "1d", 1_734_912_000, 1_735_516_800);
        assert_eq!(days.len(), 4);
        assert_eq!(
            bar_times("BTC-USD", "1d", 1_734_912_000, 1_735_516_800).len(),
            7
        );
    }

    #[test]
    fn range_limits_are_yahoos() {
        let now = 1_735_000_000;
        assert!(range_error("1m", now - 8 * 86_400, now, now).is_some());
        assert!(range_error("1m", now - 31 * 86_400, now - 25 * 86_400, now).is_some());
        assert!(range_error("1m", now - 7 * 86_400, now, now).is_none());
        assert!(range_error("5m", now - 61 * 86_400, now, now).is_some());
        assert!(range_error("1h", now - 700 * 86_400, now, now).is_none());
        assert!(range_error("1d", 0, now, now).is_none());
    }
}
