//! POST /quotes/batch: the contract of seed 001 (INV-001..007, `quotestream_api::batch`)
//! enforced server side, then one transaction per batch (`PgSession::write`: binary COPY
//! into the table, or through the staging table and INSERT … ON CONFLICT DO NOTHING for a
//! batch holding stored rows; the rollups queued from the rows actually inserted). A batch is stored whole or not at all; a replay inserts nothing.
//!
//! Answers: 200 `{"accepted":N,"inserted":K,"duplicates":N-K}` (plus `"replay":true` when
//! answered from the Idempotency-Key cache); failures as in [`error`].

pub mod error;
pub mod group;
pub mod idempotency;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use quotestream_api::batch::{self, BatchBody, Invariant};
use serde::Serialize;

use crate::metrics::{self, Metrics};
use crate::pool::Pool;
pub use error::ApiError;
use group::QueuedRow;
use idempotency::{IdempotencyCache, Seen, Stored};

/// What the ingest handler needs.
#[derive(Debug)]
pub struct Ingest {
    pub pool: Arc<Pool>,
    /// Checked batches waiting for a session (group commit).
    pub queue: group::Queue,
    pub metrics: Metrics,
    pub cache: IdempotencyCache,
    /// Seconds of Retry-After on a 503.
    pub retry_after: u64,
    /// The body limit, for the 413 message.
    pub max_body_bytes: usize,
}

/// The answer to a stored batch.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Accepted {
    pub accepted: u64,
    pub inserted: u64,
    pub duplicates: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl Accepted {
    fn of(s: Stored, replay: bool) -> Self {
        Self {
            accepted: s.accepted,
            inserted: s.inserted,
            duplicates: s.accepted.saturating_sub(s.inserted),
            replay,
        }
    }
}

/// Most bytes of an oversized body read (and discarded) before answering 413: a client still
/// sending when the answer comes would see a broken pipe instead of the 413.
const DRAIN_CAP: usize = 64 << 20;
/// Longest time spent draining an oversized body.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Read(String),
}

/// Reads the body up to `limit` bytes; over it, drains (bounded) and reports it too large.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            let mut seen = buf.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while seen < DRAIN_CAP {
                    match stream.next().await {
                        Some(Ok(c)) => seen += c.len(),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The handler.
#[utoipa::path(post, path = "/quotes/batch", tag = "ingest",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "Contract 001: {\"quotes\":[{\"ticker\":\"AAPL\",\"timestamp\":\"2026-01-13T04:00:00.000Z\",\"close\":175.23,\"volume\":52341000,\"source\":\"yfinance\"}]}, at most 1000 quotes (docs/store.md)"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Answers a repeat of the same body from cache for 10 minutes")),
    responses(
        (status = 200, description = "Stored (inserted new rows, duplicates were there already)", body = Accepted),
        (status = 400, description = "Malformed JSON or Idempotency-Key"),
        (status = 413, description = "Body over --max-body-bytes"),
        (status = 415, description = "Content-Type is not application/json (INV-007)"),
        (status = 422, description = "A contract rule is broken; the body names the rule and the quote's index"),
        (status = 503, description = "The database is unavailable (Retry-After)")))]
pub async fn post_batch(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Accepted>, ApiError> {
    let body = read_body(body, ingest.max_body_bytes).await;
    let started = Instant::now();
    let result = handle(&ingest, &headers, body, started).await;
    if let Err(e) = &result {
        let label = if e.status == StatusCode::SERVICE_UNAVAILABLE {
            None
        } else {
            Some(e.rule)
        };
        if let Some(rule) = label {
            ingest.metrics.rejected.with_label_values(&[rule]).inc();
        }
        if e.status.is_client_error() {
            tracing::info!(status = e.status.as_u16(), rule = e.rule, index = ?e.index, message = %e.message, "refused a batch");
        }
    }
    result.map(Json)
}

async fn handle(
    ingest: &Arc<Ingest>,
    headers: &HeaderMap,
    body: Result<Bytes, BodyError>,
    started: Instant,
) -> Result<Accepted, ApiError> {
    check_content_type(headers)?;
    let body = body.map_err(|r| match r {
        BodyError::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            metrics::BODY_SIZE,
            format!(
                "the body is larger than {} bytes; send at most {} quotes per batch (INV-006)",
                ingest.max_body_bytes,
                batch::MAX_BATCH_QUOTES
            ),
        ),
        BodyError::Read(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            metrics::JSON,
            format!("the body could not be read: {e}"),
        ),
    })?;
    let key = idempotency_key(headers)?;
    let digest = key.as_ref().map(|_| body_digest(&body));
    if let (Some(key), Some(digest)) = (&key, digest) {
        match ingest.cache.check(key, digest, Instant::now()) {
            Seen::New => {}
            Seen::Same(stored) => {
                ingest.metrics.replays.inc();
                return Ok(Accepted::of(stored, true));
            }
            Seen::OtherBody => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key",
                    format!(
                        "Idempotency-Key {key:?} was used for a different batch; use one key per batch"
                    ),
                ));
            }
        }
    }
    // The write runs in its own task: a client that disconnects must not cancel a transaction
    // halfway through its COPY.
    let task = {
        let ingest = Arc::clone(ingest);
        tokio::spawn(async move { store(&ingest, &body).await })
    };
    let stored = task.await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the write task failed: {e}"),
        )
    })??;
    ingest
        .metrics
        .batch_duration
        .observe(started.elapsed().as_secs_f64());
    if let (Some(key), Some(digest)) = (&key, digest) {
        ingest.cache.remember(key, digest, stored, Instant::now());
    }
    Ok(Accepted::of(stored, false))
}

/// INV-007: `Content-Type: application/json` (parameters such as charset allowed).
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let json = value.is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Invariant::Inv007.code(),
        format!(
            "Content-Type is {}; send Content-Type: application/json",
            value.map_or_else(|| "missing".to_owned(), |v| format!("{v:?}"))
        ),
    ))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(batch::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= idempotency::MAX_KEY_LEN => Ok(Some(k.to_owned())),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters",
                idempotency::MAX_KEY_LEN
            ),
        )),
    }
}

fn body_digest(body: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

/// Parses, checks and stores one body.
async fn store(ingest: &Ingest, body: &[u8]) -> Result<Stored, ApiError> {
    let started = Instant::now();
    let parsed: BatchBody = serde_json::from_slice(body).map_err(|e| json_error(body, &e))?;
    let quotes = batch::check_batch(&parsed, jiff::Timestamp::now())?;
    let rows: Vec<QueuedRow> = quotes.iter().map(QueuedRow::of).collect();
    ingest
        .metrics
        .phase
        .with_label_values(&[metrics::PARSE])
        .observe(started.elapsed().as_secs_f64());
    let accepted = rows.len() as u64;
    let inserted = group::write(ingest, rows).await?;
    ingest
        .metrics
        .rows
        .with_label_values(&["inserted"])
        .inc_by(inserted);
    ingest
        .metrics
        .rows
        .with_label_values(&["duplicate"])
        .inc_by(accepted.saturating_sub(inserted));
    Ok(Stored { accepted, inserted })
}

fn json_error(body: &[u8], e: &serde_json::Error) -> ApiError {
    // JSON has no NaN or Infinity; say so rather than only "expected value".
    let non_finite = e.is_syntax()
        && [&b"NaN"[..], b"Infinity"]
            .iter()
            .any(|w| body.windows(w.len()).any(|x| x == *w));
    let hint = if non_finite {
        "; JSON has no NaN or Infinity: close, open, high, low and volume must be finite numbers (INV-004)"
    } else if e.is_data() {
        "; expected {\"quotes\":[{\"ticker\":\"AAPL\",\"timestamp\":\"2026-01-20T14:30:15.123Z\",\"close\":185.5,\"volume\":45000000,\"source\":\"yfinance\"}]}"
    } else {
        ""
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        metrics::JSON,
        format!("the body is not a valid batch: {e}{hint}"),
    )
}
