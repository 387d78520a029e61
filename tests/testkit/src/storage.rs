//! A storage API receiver (POST /quotes/batch, contract 001) on a free loopback port, for the
//! storage sink's tests and benchmarks. It enforces INV-001..007 exactly as the contract states
//! them and answers 400 with the reason when one is violated, records every request and accepted
//! quote, answers a repeated Idempotency-Key with 200 without storing twice, and can be scripted
//! to fail (5xx, stalls past the client's timeout, 429 with Retry-After, 400) before it recovers.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use crate::{Result, io_err};

/// `source` values the receiver accepts: the contract's enum plus the extension documented in
/// docs/contracts.md.
pub const SOURCES: [&str; 7] = [
    "yfinance",
    "fmp",
    "manual",
    "alpaca",
    "polygon",
    "synthetic",
    "replay",
];

/// What the receiver does with a request instead of storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and body.
    Status(u16, &'static str),
    /// 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_secs: u64 },
    /// Answer 503 only after this long (past the client's timeout).
    Stall(Duration),
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub key: Option<String>,
    pub status: u16,
}

/// Everything the receiver saw and what it does next.
#[derive(Debug)]
pub struct Ledger {
    /// Faults for the next requests, in order.
    pub script: VecDeque<Fault>,
    /// The fault for every request once the script is used up (None: store).
    pub always: Option<Fault>,
    /// Keep every request and accepted quote (tests); off, only the counts are kept
    /// (benchmarks, where the ledger would otherwise grow by the million).
    pub record: bool,
    pub requests: Vec<Request>,
    /// Accepted quotes, as received, in arrival order (when recording).
    pub accepted: Vec<Value>,
    /// Quotes accepted so far, recorded or not.
    pub accepted_count: usize,
    /// Sizes of the accepted batches (when recording).
    pub batch_sizes: Vec<usize>,
    /// Idempotency keys of accepted batches; a repeat is answered 200 and not stored twice.
    pub keys: HashSet<String>,
    /// A ticker whose quotes are refused: a batch holding one is answered 422 naming its index
    /// (as a store refuses a quote breaking a rule the client does not know).
    pub refused_ticker: Option<String>,
    pub replays: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            script: VecDeque::new(),
            always: None,
            record: true,
            requests: Vec::new(),
            accepted: Vec::new(),
            accepted_count: 0,
            batch_sizes: Vec::new(),
            keys: HashSet::new(),
            refused_ticker: None,
            replays: 0,
        }
    }
}

type Shared = Arc<Mutex<Ledger>>;

/// A running receiver; stopped when dropped.
#[derive(Debug)]
pub struct StorageReceiver {
    addr: SocketAddr,
    ledger: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl StorageReceiver {
    /// Starts the receiver on the current tokio runtime.
    pub async fn start() -> Result<Self> {
        // Port 0: the OS picks a free loopback port.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(io_err("binding the storage receiver to 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("reading the storage receiver's address"))?;
        let ledger = Shared::default();
        let app = Router::new()
            .route("/quotes/batch", post(quotes_batch))
            .with_state(ledger.clone());
        let task = tokio::spawn(async move {
            // Ends only when the task is aborted (drop) or the listener fails.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, ledger, task })
    }

    /// `http://127.0.0.1:PORT`: what `spec.sinks.storage.url` points at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ledger, locked.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// Answers the next requests with these faults, in order (after faults already queued).
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.ledger().script.extend(faults);
    }

    /// Quotes accepted so far.
    pub fn accepted_count(&self) -> usize {
        self.ledger().accepted_count
    }
}

impl Drop for StorageReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(ledger: &Shared) -> MutexGuard<'_, Ledger> {
    // A panicking test thread must not hide the receiver's state from the others.
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

async fn quotes_batch(State(ledger): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // One lock for the whole decision: requests are logged in the order they were decided.
    let (status, answer, stall, fault) = {
        let mut l = lock(&ledger);
        let fault = l.script.pop_front().or_else(|| l.always.clone());
        let (status, answer, stall) = match &fault {
            Some(Fault::Status(code, msg)) => (*code, (*msg).to_owned(), None),
            Some(Fault::TooManyRequests { .. }) => (429, "slow down".to_owned(), None),
            Some(Fault::Stall(d)) => (503, "stalled".to_owned(), Some(*d)),
            None => match check_contract(&headers, &body, key.as_deref()) {
                Err(why) => (400, why, None),
                Ok(quotes) if poisoned(&quotes, l.refused_ticker.as_deref()).is_some() => {
                    let i = poisoned(&quotes, l.refused_ticker.as_deref()).unwrap_or_default();
                    (
                        422,
                        format!("quotes[{i}]: refused (scripted poison ticker)"),
                        None,
                    )
                }
                Ok(quotes) => {
                    let key = key.clone().unwrap_or_default();
                    if l.keys.contains(&key) {
                        l.replays += 1;
                    } else {
                        l.keys.insert(key);
                        l.accepted_count += quotes.len();
                        if l.record {
                            l.batch_sizes.push(quotes.len());
                            l.accepted.extend(quotes);
                        }
                    }
                    (200, r#"{"status":"ok"}"#.to_owned(), None)
                }
            },
        };
        if l.record {
            l.requests.push(Request {
                at,
                key: key.clone(),
                status,
            });
        }
        (status, answer, stall, fault)
    };
    if let Some(Fault::TooManyRequests { retry_after_secs }) = fault {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, answer).into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        return r;
    }
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, answer).into_response()
}

/// The index of the first quote of `poison`, if any.
fn poisoned(quotes: &[Value], poison: Option<&str>) -> Option<usize> {
    let poison = poison?;
    quotes
        .iter()
        .position(|q| q["ticker"].as_str() == Some(poison))
}

/// INV-001..007, exactly as the contract states them; the error is the 400 body.
fn check_contract(
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
) -> std::result::Result<Vec<Value>, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/json") {
        return Err(format!(
            "INV-007: Content-Type must be application/json, got {content_type:?}"
        ));
    }
    if key.is_none_or(|k| k.len() != 16 || !k.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(format!(
            "Idempotency-Key must be 16 hex digits, got {key:?}"
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let quotes = match v {
        Value::Object(mut body) => body.remove("quotes"),
        _ => None,
    };
    let Some(Value::Array(quotes)) = quotes else {
        return Err("INV-001: the body must be an object with a quotes array".into());
    };
    if quotes.is_empty() {
        return Err("INV-001: quotes must not be empty".into());
    }
    if quotes.len() > 1000 {
        return Err(format!(
            "INV-006: {} quotes; at most 1000 per batch",
            quotes.len()
        ));
    }
    for (i, q) in quotes.iter().enumerate() {
        let ticker = q["ticker"].as_str().unwrap_or_default();
        if !(1..=5).contains(&ticker.len()) || !ticker.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "INV-002: quotes[{i}].ticker {:?} does not match ^[A-Z]{{1,5}}$",
                q["ticker"]
            ));
        }
        let ts = q["timestamp"].as_str().unwrap_or_default();
        if !ts.ends_with('Z') || ts.parse::<jiff::Timestamp>().is_err() {
            return Err(format!(
                "INV-003: quotes[{i}].timestamp {:?} is not ISO 8601 UTC",
                q["timestamp"]
            ));
        }
        if !q["close"]
            .as_f64()
            .is_some_and(|c| c.is_finite() && c > 0.0)
        {
            return Err(format!(
                "INV-004: quotes[{i}].close {:?} must be a positive number",
                q["close"]
            ));
        }
        if !q["source"].as_str().is_some_and(|s| SOURCES.contains(&s)) {
            return Err(format!(
                "INV-005: quotes[{i}].source {:?} is not one of {SOURCES:?}",
                q["source"]
            ));
        }
    }
    Ok(quotes)
}
