//! A local server that speaks Yahoo Finance's HTTP quote protocol, for tests and benchmarks of
//! the `yahoo` source. Not a mock: it serves the real paths, headers, status codes and bodies
//! (shaped after the recorded exchanges in shared/reference/yahoo-captures/), and enforces the
//! cookie + crumb flow the way query1.finance.yahoo.com does.
//!
//! - `GET /` plays fc.yahoo.com: answers 404 and sets the `A3` session cookie.
//! - `GET /v1/test/getcrumb` returns the session's crumb as `text/plain`, only with that cookie
//!   and a browser-like User-Agent (otherwise 429 `Too Many Requests`, as Yahoo does).
//! - `GET /v7/finance/quote?symbols=A,B&crumb=..&formatted=false` returns
//!   `{"quoteResponse":{"result":[..],"error":null}}` with deterministic numbers per symbol
//!   ([`fake_quote`]), share classes spelt with a dash (`BRK-B`), unknown symbols omitted and
//!   delisted ones as `quoteType: "NONE"` without prices.
//!
//! Failures are scriptable at any time: the crumb expires after N quote requests (401 `Invalid
//! Crumb`), queued [`Fault`]s answer the next quote requests (429, the 503 "Will be right back"
//! page, malformed JSON, results with missing fields), and a per-request latency. Every quote
//! request is logged ([`YahooServer::requests`]) for assertions.
//!
//! The chart API (`/v8/finance/chart/{symbol}`, history) is served too: see
//! [`crate::yahoo_chart`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::yahoo_chart::{self, ChartFault, ChartRequest, ChartState};
use crate::{Result, io_err};

/// Content type of Yahoo's JSON answers, byte for byte as recorded.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// Body of Yahoo's 401 for a missing, wrong or expired crumb, byte for byte.
pub const INVALID_CRUMB_BODY: &str =
    r#"{"finance":{"result":null,"error":{"code":"Unauthorized","description":"Invalid Crumb"}}}"#;
/// Body of a 429 from Yahoo's edge.
pub const TOO_MANY_REQUESTS_BODY: &str = "Too Many Requests";
/// The page Yahoo serves (503) while it is down.
pub const WILL_BE_RIGHT_BACK_BODY: &str = "<!DOCTYPE html>\n<html lang=\"en-us\"><head><meta charset=\"utf-8\"><title>Yahoo</title></head>\n<body><div id=\"message-1\"><p>Will be right back...</p><p>Thank you for your patience.</p><p>Our engineers are working quickly to resolve the issue.</p></div></body></html>\n";

/// A scripted answer to one quote request, in place of the normal one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with the plain body `Too Many Requests`.
    TooManyRequests,
    /// 503 with the "Will be right back" HTML page.
    WillBeRightBack,
    /// 200 with a JSON content type and a truncated body.
    MalformedJson,
    /// 200 with results that lack fields: results at even positions lose
    /// `regularMarketPrice` and `regularMarketTime` (unusable), odd ones lose `bid`, `ask`,
    /// `regularMarketVolume`, `regularMarketOpen`, `regularMarketDayHigh` and
    /// `regularMarketDayLow` (usable, without the optional parts).
    MissingFields,
    /// 200 with a JSON content type and a body of [`HUGE_BODY_BYTES`] streamed in 1 MiB chunks
    /// without a Content-Length (a broken proxy, an attack): only a client that counts what it
    /// reads can stop it.
    HugeBody,
}

/// Size of the [`Fault::HugeBody`] answer.
pub const HUGE_BODY_BYTES: usize = 60 << 20;

/// One quote request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRequest {
    /// The symbols asked for, in order, as sent (`BRK-B`).
    pub symbols: Vec<String>,
    /// The status the server answered.
    pub status: u16,
}

/// The numbers the server reports for a symbol at a market time (epoch seconds). Pure, so tests
/// can compute what a source must have decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeQuote {
    pub price: f64,
    pub volume: u64,
    /// 0 (as Yahoo sends outside the session) for about one symbol in seven.
    pub bid: f64,
    pub ask: f64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub previous_close: f64,
}

/// The deterministic quote of `symbol` at `time` (epoch seconds).
pub fn fake_quote(symbol: &str, time: i64) -> FakeQuote {
    let h = fnv1a(symbol);
    let base = 10.0 + (h % 49_000) as f64 / 100.0; // 10.00 ..= 499.99
    // A slow deterministic wave so successive polls differ.
    let phase = (time.rem_euclid(60) as f64 - 30.0) / 30.0;
    let price = cents(base * (1.0 + 0.002 * phase));
    let open = cents(base * 0.995);
    let spread = 0.01 * (1 + (h >> 20) % 5) as f64;
    let (bid, ask) = if (h >> 8).is_multiple_of(7) {
        (0.0, 0.0)
    } else {
        (cents(price - spread), cents(price + spread))
    };
    FakeQuote {
        price,
        volume: 1_000_000 + (h >> 32) % 50_000_000 + time.rem_euclid(86_400) as u64 * 10,
        bid,
        ask,
        open,
        high: cents(price.max(open) * 1.01),
        low: cents(price.min(open) * 0.99),
        previous_close: cents(base * 0.99),
    }
}

/// A running Yahoo-protocol server on a free loopback port; stopped when dropped.
#[derive(Debug)]
pub struct YahooServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Current session; 0 = none issued yet. Each cookie request starts a new one.
    generation: u64,
    session_expired: bool,
    session_uses: u64,
    crumb_lifetime: Option<u64>,
    faults: VecDeque<Fault>,
    latency: Duration,
    unknown: HashSet<String>,
    delisted: HashSet<String>,
    market_time: Option<i64>,
    log: Vec<QuoteRequest>,
    cookie_requests: u64,
    crumb_requests: u64,
    chart: ChartState,
}

impl YahooServer {
    /// Starts the server on the current tokio runtime.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(io_err("binding the Yahoo test server to 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("reading the Yahoo test server's address"))?;
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/", get(cookie))
            .route("/v1/test/getcrumb", get(crumb))
            .route("/v7/finance/quote", get(quote))
            .route("/v8/finance/chart/{symbol}", get(chart))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            // Ends only when the task is aborted (drop) or the listener fails.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`: the quote API (what query1.finance.yahoo.com is).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/`: the cookie page (what fc.yahoo.com is).
    pub fn cookie_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The crumb expires after `requests` successful quote requests of a session; the next one
    /// gets 401 Invalid Crumb until a new cookie and crumb are fetched. `None`: never.
    pub fn expire_crumb_after(&self, requests: Option<u64>) {
        self.lock().crumb_lifetime = requests;
    }

    /// Answers the next `times` quote requests with `fault` (after faults already queued).
    pub fn inject(&self, fault: Fault, times: usize) {
        self.lock().faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Delay before each quote answer.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Symbols Yahoo does not know: omitted from `result`.
    pub fn set_unknown<S: AsRef<str>>(&self, symbols: impl IntoIterator<Item = S>) {
        self.lock().unknown = symbols.into_iter().map(|s| s.as_ref().to_owned()).collect();
    }

    /// Delisted symbols: returned with `quoteType: "NONE"` and no prices.
    pub fn set_delisted<S: AsRef<str>>(&self, symbols: impl IntoIterator<Item = S>) {
        self.lock().delisted = symbols.into_iter().map(|s| s.as_ref().to_owned()).collect();
    }

    /// Freezes `regularMarketTime` (epoch seconds); `None` (default) reports the wall clock.
    pub fn set_market_time(&self, time: Option<i64>) {
        self.lock().market_time = time;
    }

    /// Every quote request so far, in arrival order.
    pub fn requests(&self) -> Vec<QuoteRequest> {
        self.lock().log.clone()
    }

    /// Every quote request since the last call, emptying the log (long benchmarks).
    pub fn take_requests(&self) -> Vec<QuoteRequest> {
        std::mem::take(&mut self.lock().log)
    }

    /// Quote requests so far (since the last [`YahooServer::take_requests`]).
    pub fn request_count(&self) -> usize {
        self.lock().log.len()
    }

    /// Requests of the cookie page so far (one per session).
    pub fn cookie_requests(&self) -> u64 {
        self.lock().cookie_requests
    }

    /// getcrumb requests so far.
    pub fn crumb_requests(&self) -> u64 {
        self.lock().crumb_requests
    }

    /// The server's clock for the chart API (range limits, the live bar), epoch seconds;
    /// `None` (default) is the wall clock.
    pub fn set_now(&self, now: Option<i64>) {
        self.lock().chart.now = now;
    }

    /// Answers the next `times` chart requests with `fault`.
    pub fn inject_chart(&self, fault: ChartFault, times: usize) {
        self.lock()
            .chart
            .faults
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Bars of `symbol` (Yahoo spelling) starting at these times come as nulls.
    pub fn set_null_bars(&self, symbol: &str, times: impl IntoIterator<Item = i64>) {
        let nulls = &mut self.lock().chart.nulls;
        nulls.extend(times.into_iter().map(|t| (symbol.to_owned(), t)));
    }

    /// About one bar in `n` of every symbol comes as nulls (deterministic per symbol and
    /// time); `None`: none but the listed ones.
    pub fn set_null_every(&self, n: Option<u64>) {
        self.lock().chart.null_every = n;
    }

    /// Bars of `symbol` starting at these times are sent twice, the second copy revised.
    pub fn set_duplicate_bars(&self, symbol: &str, times: impl IntoIterator<Item = i64>) {
        let duplicates = &mut self.lock().chart.duplicates;
        duplicates.extend(times.into_iter().map(|t| (symbol.to_owned(), t)));
    }

    /// Whether answers end with the live partial bar (default on, as Yahoo does).
    pub fn set_live_bar(&self, on: bool) {
        self.lock().chart.live_bar = on;
    }

    /// Every chart request so far, in arrival order.
    pub fn chart_requests(&self) -> Vec<ChartRequest> {
        self.lock().chart.log.clone()
    }

    /// Every chart request since the last call, emptying the log (long benchmarks).
    pub fn take_chart_requests(&self) -> Vec<ChartRequest> {
        std::mem::take(&mut self.lock().chart.log)
    }

    /// Stops the server.
    pub fn stop(self) {
        drop(self);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }
}

impl Drop for YahooServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the server's state from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `A3` cookie value of a session, shaped like Yahoo's (`d=...&S=...`).
fn session_cookie(generation: u64) -> String {
    format!("d=AQABBKvcsWcCEIGLkyl67hr2YX{generation:016x}&S=AQAAAtFJa---IoVh8DRgGhGzVr4")
}

/// The session's crumb: 11 characters like the recorded `haT3oykhHqZ`.
fn session_crumb(generation: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./";
    let mut h = fnv1a(&generation.to_string());
    (0..11)
        .map(|_| {
            let c = ALPHABET[(h % 64) as usize] as char;
            h = h.rotate_right(6) ^ 0x9e37_79b9_7f4a_7c15;
            c
        })
        .collect()
}

fn is_browser(headers: &HeaderMap) -> bool {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"))
}

/// The `A3` value the client sent, if any.
fn a3_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("A3=").map(str::to_owned))
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.into(),
    )
        .into_response()
}

fn huge_body() -> Response {
    const CHUNK: usize = 1 << 20;
    let chunk = axum::body::Bytes::from(vec![b' '; CHUNK]);
    let chunks = futures_util::stream::iter(
        (0..HUGE_BODY_BYTES / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        )],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

fn too_many_requests() -> Response {
    text(
        StatusCode::TOO_MANY_REQUESTS,
        "text/plain;charset=utf-8",
        TOO_MANY_REQUESTS_BODY,
    )
}

fn invalid_crumb() -> Response {
    text(
        StatusCode::UNAUTHORIZED,
        JSON_CONTENT_TYPE,
        INVALID_CRUMB_BODY,
    )
}

/// fc.yahoo.com: a 404 page that starts a session and sets its cookie on the host's domain.
async fn cookie(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let generation = {
        let mut inner = shared.lock();
        inner.cookie_requests += 1;
        inner.generation += 1;
        inner.session_expired = false;
        inner.session_uses = 0;
        inner.generation
    };
    // Yahoo scopes the cookie to `.yahoo.com`; the equivalent here is the requested host.
    let domain = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|host| host.rsplit_once(':').map_or(host, |(name, _)| name))
        .unwrap_or("127.0.0.1")
        .to_owned();
    let set_cookie = format!(
        "A3={}; Max-Age=31557600; Domain={domain}; Path=/; SameSite=None; Secure; HttpOnly",
        session_cookie(generation)
    );
    let mut response = text(
        StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        "<!DOCTYPE html><html><head><title>404</title></head><body>Not Found</body></html>",
    );
    if let Ok(value) = HeaderValue::from_str(&set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// query1/v1/test/getcrumb: the crumb of the session named by the `A3` cookie.
async fn crumb(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    inner.crumb_requests += 1;
    if !is_browser(&headers) {
        return too_many_requests();
    }
    let current = inner.generation > 0 && !inner.session_expired;
    if !current || a3_cookie(&headers).as_deref() != Some(&session_cookie(inner.generation)) {
        // Yahoo's exact answer to a missing or stale cookie is not recorded; an Unauthorized
        // error in its usual envelope makes the client start a new session.
        return text(
            StatusCode::UNAUTHORIZED,
            JSON_CONTENT_TYPE,
            r#"{"finance":{"result":null,"error":{"code":"Unauthorized","description":"Invalid Cookie"}}}"#,
        );
    }
    text(
        StatusCode::OK,
        "text/plain;charset=utf-8",
        session_crumb(inner.generation),
    )
}

/// query1/v7/finance/quote.
async fn quote(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let symbols: Vec<String> = query
        .get("symbols")
        .map(|s| {
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let latency = shared.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // The decision is taken under the lock; the body is built outside it, so concurrent
    // requests (benchmarks) are not serialised on JSON encoding.
    let plan = answer(&mut shared.lock(), &headers, &query, &symbols);
    let response = match plan {
        Plan::Respond(response) => response,
        Plan::Quotes {
            results,
            time,
            missing_fields,
        } => quote_body(&results, time, missing_fields),
    };
    shared.lock().log.push(QuoteRequest {
        symbols,
        status: response.status().as_u16(),
    });
    response
}

/// query2/v8/finance/chart/{symbol}: history ([`crate::yahoo_chart`]).
async fn chart(
    State(shared): State<Arc<Shared>>,
    Path(symbol): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let latency = shared.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let number = |key: &str| query.get(key).and_then(|v| v.parse::<i64>().ok());
    let interval = query
        .get("interval")
        .cloned()
        .unwrap_or_else(|| "1d".to_owned());
    let (period1, period2) = (
        number("period1").unwrap_or(0),
        number("period2").unwrap_or(0),
    );
    let plan = {
        let mut inner = shared.lock();
        let now = inner.chart.now.unwrap_or_else(now_seconds);
        let at_ms = inner.chart.started.elapsed().as_millis() as u64;
        let plan = if let Some(fault) = inner.chart.faults.pop_front() {
            Err(yahoo_chart::fault_response(fault))
        } else if inner.unknown.contains(&symbol) || !is_known_spelling(&symbol) {
            Err(yahoo_chart::error_body(
                StatusCode::NOT_FOUND,
                "Not Found",
                "No data found, symbol may be delisted",
            ))
        } else if yahoo_chart::interval_seconds(&interval).is_none() {
            Err(yahoo_chart::error_body(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable Entity",
                &format!(
                    "Invalid input - interval={interval} is not supported. Valid intervals: [1m, 2m, 5m, 15m, 30m, 60m, 90m, 1h, 1d, 5d, 1wk, 1mo, 3mo]"
                ),
            ))
        } else if let Some(why) = yahoo_chart::range_error(&interval, period1, period2, now) {
            Err(yahoo_chart::error_body(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable Entity",
                &why,
            ))
        } else {
            let pick = |set: &HashSet<(String, i64)>| {
                set.iter()
                    .filter(|(s, _)| *s == symbol)
                    .map(|(_, t)| *t)
                    .collect::<HashSet<i64>>()
            };
            Ok(yahoo_chart::Shaping {
                nulls: pick(&inner.chart.nulls),
                null_every: inner.chart.null_every,
                duplicates: pick(&inner.chart.duplicates),
                live_bar: inner.chart.live_bar,
                now,
            })
        };
        (plan, at_ms)
    };
    let (plan, at_ms) = plan;
    let response = match plan {
        Err(response) => response,
        Ok(shaping) => text(
            StatusCode::OK,
            JSON_CONTENT_TYPE,
            yahoo_chart::chart_body(&symbol, &interval, period1, period2, &shaping).to_string(),
        ),
    };
    shared.lock().chart.log.push(ChartRequest {
        symbol,
        interval,
        period1,
        period2,
        status: response.status().as_u16(),
        at_ms,
    });
    response
}

/// What to answer to a quote request.
enum Plan {
    Respond(Response),
    Quotes {
        /// Symbols in `result`, in request order, and whether each is delisted.
        results: Vec<(String, bool)>,
        time: i64,
        missing_fields: bool,
    },
}

fn answer(
    inner: &mut Inner,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    symbols: &[String],
) -> Plan {
    // The edge answers before the API looks at the session.
    if !is_browser(headers) {
        return Plan::Respond(too_many_requests());
    }
    let fault = inner.faults.pop_front();
    match fault {
        Some(Fault::TooManyRequests) => return Plan::Respond(too_many_requests()),
        Some(Fault::WillBeRightBack) => {
            return Plan::Respond(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/html; charset=utf-8",
                WILL_BE_RIGHT_BACK_BODY,
            ));
        }
        Some(Fault::MalformedJson) => {
            return Plan::Respond(text(
                StatusCode::OK,
                JSON_CONTENT_TYPE,
                r#"{"quoteResponse":{"result":[{"language":"en-US","region":"US","quoteType":"EQUI"#,
            ));
        }
        Some(Fault::HugeBody) => return Plan::Respond(huge_body()),
        Some(Fault::MissingFields) | None => {}
    }
    let valid_session = inner.generation > 0
        && !inner.session_expired
        && query.get("crumb") == Some(&session_crumb(inner.generation))
        && a3_cookie(headers).as_deref() == Some(&session_cookie(inner.generation));
    if !valid_session {
        return Plan::Respond(invalid_crumb());
    }
    inner.session_uses += 1;
    if inner
        .crumb_lifetime
        .is_some_and(|lifetime| inner.session_uses > lifetime)
    {
        inner.session_expired = true;
        return Plan::Respond(invalid_crumb());
    }
    Plan::Quotes {
        results: symbols
            .iter()
            .filter(|s| !inner.unknown.contains(*s) && is_known_spelling(s))
            .map(|s| (s.clone(), inner.delisted.contains(s)))
            .collect(),
        time: inner.market_time.unwrap_or_else(now_seconds),
        missing_fields: fault == Some(Fault::MissingFields),
    }
}

fn quote_body(results: &[(String, bool)], time: i64, missing_fields: bool) -> Response {
    let mut result: Vec<Value> = results
        .iter()
        .map(|(symbol, delisted)| {
            if *delisted {
                delisted_result(symbol)
            } else {
                equity_result(symbol, time)
            }
        })
        .collect();
    if missing_fields {
        strip_fields(&mut result);
    }
    let body = json!({"quoteResponse": {"result": result, "error": null}});
    text(StatusCode::OK, JSON_CONTENT_TYPE, body.to_string())
}

/// Yahoo spells share classes with a dash; a dotted `BRK.B` would name an exchange suffix it
/// does not have, so it comes back as unknown (omitted).
fn is_known_spelling(symbol: &str) -> bool {
    !symbol.contains('.')
        && !symbol.is_empty()
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'^')
}

/// An equity result with the fields (and spellings) of the recorded AAPL/BABA answer.
fn equity_result(symbol: &str, time: i64) -> Value {
    let q = fake_quote(symbol, time);
    let change = cents(q.price - q.previous_close);
    let name = format!("{symbol} Holdings Inc.");
    let (bid_size, ask_size) = if q.bid == 0.0 { (0, 0) } else { (2, 3) };
    let mut result = json!({
        "language": "en-US",
        "region": "US",
        "quoteType": "EQUITY",
        "typeDisp": "Equity",
        "quoteSourceName": "Nasdaq Real Time Price",
        "triggerable": true,
        "customPriceAlertConfidence": "HIGH",
        "currency": "USD",
        "shortName": name,
        "longName": name,
        "regularMarketChangePercent": change / q.previous_close * 100.0,
        "regularMarketPrice": q.price,
        "hasPrePostMarketData": true,
        "firstTradeDateMilliseconds": 345_479_400_000_i64,
        "priceHint": 2,
        "regularMarketChange": change,
        "regularMarketDayHigh": q.high,
        "regularMarketDayRange": format!("{} - {}", q.low, q.high),
        "regularMarketDayLow": q.low,
        "regularMarketVolume": q.volume,
        "regularMarketPreviousClose": q.previous_close,
        "bid": q.bid,
        "ask": q.ask,
        "bidSize": bid_size,
        "askSize": ask_size,
        "fullExchangeName": "NasdaqGS",
        "financialCurrency": "USD",
        "regularMarketOpen": q.open,
    });
    // Two literals: one would exceed `json!`'s macro recursion limit.
    let more = json!({
        "averageDailyVolume3Month": q.volume,
        "averageDailyVolume10Day": q.volume,
        "fiftyTwoWeekLow": cents(q.low * 0.7),
        "fiftyTwoWeekHigh": cents(q.high * 1.2),
        "fiftyTwoWeekRange": format!("{} - {}", cents(q.low * 0.7), cents(q.high * 1.2)),
        "sourceInterval": 15,
        "exchangeDataDelayedBy": 0,
        "tradeable": false,
        "cryptoTradeable": false,
        "corporateActions": [],
        "regularMarketTime": time,
        "marketState": "REGULAR",
        "exchange": "NMS",
        "messageBoardId": format!("finmb_{}", fnv1a(symbol) % 100_000_000),
        "exchangeTimezoneName": "America/New_York",
        "exchangeTimezoneShortName": "EST",
        "gmtOffSetMilliseconds": -18_000_000,
        "market": "us_market",
        "esgPopulated": false,
        "displayName": symbol,
        "symbol": symbol,
    });
    if let (Some(fields), Value::Object(more)) = (result.as_object_mut(), more) {
        fields.extend(more);
    }
    result
}

/// A delisted symbol: Yahoo still lists it, with `quoteType: "NONE"` and no prices.
fn delisted_result(symbol: &str) -> Value {
    json!({
        "language": "en-US",
        "region": "US",
        "quoteType": "NONE",
        "typeDisp": "None",
        "triggerable": false,
        "customPriceAlertConfidence": "LOW",
        "tradeable": false,
        "cryptoTradeable": false,
        "esgPopulated": false,
        "symbol": symbol,
    })
}

/// [`Fault::MissingFields`]: even positions become unusable, odd ones lose the optional parts.
fn strip_fields(result: &mut [Value]) {
    for (i, item) in result.iter_mut().enumerate() {
        let Some(fields) = item.as_object_mut() else {
            continue;
        };
        let drop: &[&str] = if i.is_multiple_of(2) {
            &["regularMarketPrice", "regularMarketTime"]
        } else {
            &[
                "bid",
                "ask",
                "regularMarketVolume",
                "regularMarketOpen",
                "regularMarketDayHigh",
                "regularMarketDayLow",
            ]
        };
        for key in drop {
            fields.remove(*key);
        }
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// FNV-1a: a stable hash (std's hasher is randomly seeded per process).
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_quotes_are_deterministic_and_valid() {
        for symbol in ["AAPL", "BRK-B", "MSFT", "Z"] {
            let a = fake_quote(symbol, 1_739_566_800);
            assert_eq!(a, fake_quote(symbol, 1_739_566_800));
            assert!(a.price > 0.0 && a.low > 0.0 && a.high >= a.low);
            assert!(a.bid == 0.0 || (a.bid < a.ask && a.bid > 0.0));
        }
    }

    #[test]
    fn crumbs_look_like_yahoos() {
        let c = session_crumb(1);
        assert_eq!(c.len(), 11);
        assert_ne!(c, session_crumb(2));
    }
}
