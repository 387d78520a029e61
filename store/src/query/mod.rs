//! The read API under `/v1` (docs/query-api.md): stored symbols, raw quotes, latest quotes,
//! OHLCV bars from the rollups and counts, in the dialect of Alpaca's v2 market-data API.
//!
//! Parts: [`params`] (parsing, every mistake a 400 naming the parameter), [`cursor`] (page
//! tokens), [`sql`] (the statements), [`reader`] (read sessions), [`model`] (the answers),
//! [`auth`] (the optional bearer token), [`error`] (how a refusal looks), and the handlers here.

pub mod auth;
pub mod cursor;
pub mod error;
pub mod model;
pub mod params;
pub mod reader;
pub mod sql;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use jiff::{SignedDuration, Timestamp};
use utoipa::IntoParams;

pub use auth::{ApiToken, Authorized};
use cursor::Cursor;
pub use error::{ErrorBody, QueryError};
use model::{
    Bar, BarsPage, Count, Latest, LatestQuote, MultiBarsPage, Quote, QuotesPage, SymbolInfo,
    Symbols,
};
use params::{Params, QUOTES_WINDOW, Sort, floor_to};
pub use reader::Reader;

/// Rows per page when `limit` is left out, and the most a page may hold (Alpaca's figures).
pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
/// Most symbols in one `symbols=` list.
pub const MAX_SYMBOLS: usize = 100;

/// What the read handlers need.
#[derive(Debug)]
pub struct QueryApi {
    pub reader: Reader,
    /// The bearer token /v1 requires; None: no authentication.
    pub token: Option<ApiToken>,
}

/// The query parameters each endpoint takes (a test holds them equal to the OpenAPI spec).
pub const QUOTES_PARAMS: &[&str] = &["start", "end", "limit", "sort", "page_token"];
pub const BARS_PARAMS: &[&str] = &["timeframe", "start", "end", "limit", "sort", "page_token"];
pub const MULTI_BARS_PARAMS: &[&str] = &[
    "symbols",
    "timeframe",
    "start",
    "end",
    "limit",
    "sort",
    "page_token",
];
pub const LATEST_PARAMS: &[&str] = &["symbols"];
pub const COUNT_PARAMS: &[&str] = &["start", "end"];

/// Query parameters of `GET /v1/quotes/{symbol}` (for the OpenAPI document; parsing is
/// [`Params`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuotesQuery {
    /// First time included: RFC 3339 (an offset is converted to UTC) or a UTC date. Default:
    /// one day before `end`.
    #[param(example = "2026-01-20T14:30:00Z")]
    pub start: Option<String>,
    /// Last time included: RFC 3339 or a UTC date (its end). Default: now. At most 31 days
    /// after `start`.
    pub end: Option<String>,
    /// Quotes per page, 1 to 10000 (default 1000).
    pub limit: Option<i64>,
    /// `asc` (default) or `desc` by time.
    pub sort: Option<String>,
    /// The previous page's `next_page_token`.
    pub page_token: Option<String>,
}

/// Query parameters of `GET /v1/bars/{symbol}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BarsQuery {
    /// `1Min` (default), `5Min`, `15Min`, `1Hour` or `1Day`. 5Min and 15Min are computed from
    /// the 1-minute rollup.
    #[param(example = "1Day")]
    pub timeframe: Option<String>,
    /// First bar time included (RFC 3339 or a UTC date). Default: `end` minus 1 day (1Min),
    /// 5 days (5Min), 15 days (15Min), 31 days (1Hour), 366 days (1Day).
    pub start: Option<String>,
    /// Last bar time included (RFC 3339 or a UTC date: its end). Default: now. The range may
    /// span at most 31 days (1Min), 93 (5Min), 366 (15Min), 1096 (1Hour), 36525 (1Day).
    pub end: Option<String>,
    /// Bars per page, 1 to 10000 (default 1000).
    pub limit: Option<i64>,
    /// `asc` (default) or `desc` by time.
    pub sort: Option<String>,
    /// The previous page's `next_page_token`.
    pub page_token: Option<String>,
}

/// Query parameters of `GET /v1/bars`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MultiBarsQuery {
    /// Comma-separated symbols (at most 100), e.g. `AAPL,MSFT`. Required.
    #[param(example = "AAPL,MSFT")]
    pub symbols: String,
    /// As for `GET /v1/bars/{symbol}`.
    pub timeframe: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    /// Bars per page over all symbols, 1 to 10000 (default 1000); ordered by symbol, then time.
    pub limit: Option<i64>,
    /// `asc` (default) or `desc` by time (symbols stay in alphabetical order).
    pub sort: Option<String>,
    pub page_token: Option<String>,
}

/// Query parameters of `GET /v1/quotes/latest`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestQuery {
    /// Comma-separated symbols (at most 100); left out: every symbol.
    #[param(example = "AAPL,MSFT")]
    pub symbols: Option<String>,
}

/// Query parameters of `GET /v1/quotes/{symbol}/count`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountQuery {
    /// First time included (RFC 3339 or a UTC date); left out: from the first quote.
    pub start: Option<String>,
    /// Last time included (RFC 3339 or a UTC date: its end); left out: to the last quote.
    pub end: Option<String>,
}

/// 404 when `symbol` has no stored quote.
async fn ensure_known(
    api: &QueryApi,
    parameter: &str,
    symbols: &[String],
) -> Result<(), QueryError> {
    let unknown = api.reader.unknown(symbols).await?;
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(QueryError::unknown_symbols(parameter, &unknown))
    }
}

/// Stored symbols with their first and last quote times and counts.
#[utoipa::path(get, path = "/v1/symbols", tag = "read",
    responses(
        (status = 200, description = "Every symbol with stored quotes, alphabetically (from the daily rollup: current within the merger's lag, at most --rollup-interval, 250 ms by default)", body = Symbols),
        (status = 400, description = "An unknown parameter", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it", body = ErrorBody),
        (status = 503, description = "The database is unavailable (Retry-After)", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn get_symbols(
    _: Authorized,
    State(api): State<Arc<QueryApi>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Symbols>, QueryError> {
    Params::parse(q.as_deref(), &[])?;
    let rows = api
        .reader
        .query(&sql::symbols(&api.reader.table), &[])
        .await?;
    Ok(Json(Symbols {
        symbols: rows
            .iter()
            .map(|r| SymbolInfo {
                symbol: r.get(0),
                first: r.get(1),
                last: r.get(2),
                count: r.get(3),
            })
            .collect(),
    }))
}

/// The latest quote of each symbol.
#[utoipa::path(get, path = "/v1/quotes/latest", tag = "read", params(LatestQuery),
    responses(
        (status = 200, description = "The latest quote by symbol", body = Latest),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "A symbol without stored quotes", body = ErrorBody),
        (status = 503, description = "The database is unavailable (Retry-After)", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn get_latest(
    _: Authorized,
    State(api): State<Arc<QueryApi>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Latest>, QueryError> {
    let p = Params::parse(q.as_deref(), LATEST_PARAMS)?;
    let symbols = p.symbols(true, MAX_SYMBOLS)?;
    let table = &api.reader.table;
    let rows = match &symbols {
        Some(list) => {
            ensure_known(&api, "symbols", list).await?;
            api.reader
                .query(&sql::latest(table, false), &[list])
                .await?
        }
        None => api.reader.query(&sql::latest(table, true), &[]).await?,
    };
    Ok(Json(Latest {
        quotes: rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    LatestQuote {
                        t: r.get(1),
                        p: r.get(2),
                        v: r.get(3),
                        src: r.get(4),
                    },
                )
            })
            .collect(),
    }))
}

/// Raw quotes of a symbol over a time range, paged.
#[utoipa::path(get, path = "/v1/quotes/{symbol}", tag = "read",
    params(("symbol" = String, Path, description = "The symbol, e.g. AAPL or BRK.B", example = "AAPL"), QuotesQuery),
    responses(
        (status = 200, description = "A page of quotes", body = QuotesPage),
        (status = 400, description = "A bad parameter, or a range wider than 31 days", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "No quote of the symbol is stored", body = ErrorBody),
        (status = 503, description = "The database is unavailable (Retry-After)", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn get_quotes(
    _: Authorized,
    State(api): State<Arc<QueryApi>>,
    Path(symbol): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<QuotesPage>, QueryError> {
    let p = Params::parse(q.as_deref(), QUOTES_PARAMS)?;
    let symbol = params::symbol("symbol", &symbol)?;
    let limit = p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let sort = p.sort()?;
    let range = p.range(QUOTES_WINDOW, Timestamp::now())?;
    let fp = cursor::fingerprint("quotes", &symbol, &p, &["start", "end", "sort"]);
    let (mut lo, mut hi) = (range.start, range.end);
    let resumed = p
        .get("page_token")
        .map(|t| cursor::decode(t, fp))
        .transpose()?;
    if let Some(c) = &resumed {
        // Stored times are microseconds: the next one after (before) the cursor.
        let step = SignedDuration::from_micros(1);
        match sort {
            Sort::Asc => lo = lo.max(c.t.checked_add(step).unwrap_or(c.t)),
            Sort::Desc => hi = hi.min(c.t.checked_sub(step).unwrap_or(c.t)),
        }
    }
    let mut quotes = Vec::new();
    if lo <= hi {
        let rows = api
            .reader
            .query(
                &sql::quotes(&api.reader.table, sort),
                &[&symbol, &lo, &hi, &(limit + 1)],
            )
            .await?;
        quotes = rows
            .iter()
            .map(|r| Quote {
                t: r.get(0),
                p: r.get(1),
                v: r.get(2),
                bp: r.get(3),
                ap: r.get(4),
                o: r.get(5),
                h: r.get(6),
                l: r.get(7),
                src: r.get(8),
            })
            .collect();
    }
    let next_page_token = next_token(&mut quotes, limit, |q| Cursor {
        symbol: symbol.clone(),
        t: q.t,
    })
    .map(|c| cursor::encode(fp, &c));
    if quotes.is_empty() && resumed.is_none() {
        ensure_known(&api, "symbol", std::slice::from_ref(&symbol)).await?;
    }
    Ok(Json(QuotesPage {
        symbol,
        quotes,
        next_page_token,
    }))
}

/// Cuts `rows` (fetched with one row more than `limit`) to `limit`; the cursor of the last row
/// kept when more rows exist.
fn next_token<T>(rows: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> Cursor) -> Option<Cursor> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(cursor)
}

/// How many raw quotes of a symbol are stored in a time range.
#[utoipa::path(get, path = "/v1/quotes/{symbol}/count", tag = "read",
    params(("symbol" = String, Path, description = "The symbol", example = "AAPL"), CountQuery),
    responses(
        (status = 200, description = "The count (exact: read from the raw table)", body = Count),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "No quote of the symbol is stored", body = ErrorBody),
        (status = 503, description = "The database is unavailable (Retry-After)", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn get_count(
    _: Authorized,
    State(api): State<Arc<QueryApi>>,
    Path(symbol): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Count>, QueryError> {
    let p = Params::parse(q.as_deref(), COUNT_PARAMS)?;
    let symbol = params::symbol("symbol", &symbol)?;
    let range = p.open_range()?;
    let rows = api
        .reader
        .query(
            &sql::count(&api.reader.table),
            &[&symbol, &range.start, &range.end],
        )
        .await?;
    let count: i64 = rows.first().map_or(0, |r| r.get(0));
    if count == 0 {
        ensure_known(&api, "symbol", std::slice::from_ref(&symbol)).await?;
    }
    Ok(Json(Count {
        symbol,
        start: p.get("start").map(|_| range.start),
        end: p.get("end").map(|_| range.end),
        count,
    }))
}

/// Bars of one or more symbols, one page: at most `limit` + 1 rows read, the extra one only
/// to know whether another page exists.
async fn bars_page(
    api: &QueryApi,
    p: &Params,
    symbols: &[String],
    fp: u64,
) -> Result<(Vec<(String, Bar)>, Option<String>), QueryError> {
    let tf = p.timeframe()?;
    let limit = p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let sort = p.sort()?;
    let range = p.range(tf.window(), Timestamp::now())?;
    let after = match p.get("page_token") {
        Some(t) => cursor::decode(t, fp)?,
        None => Cursor {
            symbol: String::new(),
            t: range.start,
        },
    };
    // The rollup rows read: from the range's first UTC day (a bar's volume needs the bar
    // before it that day) to the end of the bar holding `end`.
    let day = SignedDuration::from_hours(24);
    let source_from = floor_to(range.start, day);
    let last_bar = floor_to(range.end, tf.width());
    let source_to = last_bar.checked_add(tf.width()).unwrap_or(range.end);
    let symbols: Vec<String> = symbols.to_vec();
    let sql = sql::bars(&api.reader.table, tf, symbols.len() == 1, sort);
    let rows = api
        .reader
        .query(
            &sql,
            &[
                &symbols,
                &source_from,
                &source_to,
                &range.start,
                &range.end,
                &after.symbol,
                &after.t,
                &(limit + 1),
            ],
        )
        .await?;
    let mut bars: Vec<(String, Bar)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Bar {
                    t: r.get(1),
                    o: r.get(2),
                    h: r.get(3),
                    l: r.get(4),
                    c: r.get(5),
                    v: r.get(6),
                    n: r.get(7),
                },
            )
        })
        .collect();
    let token = next_token(&mut bars, limit, |(s, b)| Cursor {
        symbol: s.clone(),
        t: b.t,
    })
    .map(|c| cursor::encode(fp, &c));
    Ok((bars, token))
}

const BARS_FINGERPRINT: &[&str] = &["symbols", "timeframe", "start", "end", "sort"];

/// OHLCV bars of a symbol from the rollups, paged.
#[utoipa::path(get, path = "/v1/bars/{symbol}", tag = "read",
    params(("symbol" = String, Path, description = "The symbol", example = "AAPL"), BarsQuery),
    responses(
        (status = 200, description = "A page of bars", body = BarsPage),
        (status = 400, description = "A bad parameter, or a range too wide for the timeframe (the message names the window)", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "No quote of the symbol is stored", body = ErrorBody),
        (status = 503, description = "The database is unavailable (Retry-After)", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn get_bars(
    _: Authorized,
    State(api): State<Arc<QueryApi>>,
    Path(symbol): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<BarsPage>, QueryError> {
    let p = Params::parse(q.as_deref(), BARS_PARAMS)?;
    let symbol = params::symbol("symbol", &symbol)?;
    let fp = cursor::fingerprint("bars", &symbol, &p, BARS_FINGERPRINT);
    let (bars, next_page_token) = bars_page(&api, &p, std::slice::from_ref(&symbol), fp).await?;
    if bars.is_empty() && p.get("page_token").is_none() {
        ensure_known(&api, "symbol", std::slice::from_ref(&symbol)).await?;
    }
    Ok(Json(BarsPage {
        symbol,
        timeframe: p.timeframe()?.name().to_owned(),
        bars: bars.into_iter().map(|(_, b)| b).collect(),
        next_page_token,
    }))
}

/// OHLCV bars of several symbols, paged over all of them (ordered by symbol, then time).
#[utoipa::path(get, path = "/v1/bars", tag = "read", params(MultiBarsQuery),
    responses(
        (status = 200, description = "A page of bars, by symbol", body = MultiBarsPage),
        (status = 400, description = "A bad parameter, or a range too wide for the timeframe", body = ErrorBody),
        (status = 401, description = "A token is configured and the request lacks it", body = ErrorBody),
        (status = 404, description = "A symbol without stored quotes", body = ErrorBody),
        (status = 503, description = "The database is unavailable (Retry-After)", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn get_multi_bars(
    _: Authorized,
    State(api): State<Arc<QueryApi>>,
    RawQuery(q): RawQuery,
) -> Result<Json<MultiBarsPage>, QueryError> {
    let p = Params::parse(q.as_deref(), MULTI_BARS_PARAMS)?;
    let symbols = p.symbols(false, MAX_SYMBOLS)?.unwrap_or_default();
    let fp = cursor::fingerprint("bars", "", &p, BARS_FINGERPRINT);
    // Parameters first (a 400 before a 404), then the symbols.
    p.timeframe()?;
    p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    p.sort()?;
    p.range(p.timeframe()?.window(), Timestamp::now())?;
    ensure_known(&api, "symbols", &symbols).await?;
    let (rows, next_page_token) = bars_page(&api, &p, &symbols, fp).await?;
    let mut bars: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
    for (s, b) in rows {
        bars.entry(s).or_default().push(b);
    }
    Ok(Json(MultiBarsPage {
        timeframe: p.timeframe()?.name().to_owned(),
        bars,
        next_page_token,
    }))
}
