//! Group commit of checked batches. A request's batch joins a queue; the request then waits
//! for a database session (`--connections`, bounded by the pool's wait) or for its answer,
//! whichever comes first. The request that gets a session leads: it takes the batches queued
//! at that moment (its own and those of requests still waiting for a session, oldest first,
//! up to [`GROUP_ROWS`] quotes) and writes them in one transaction
//! (`PgSession::write_group`: one COPY of their rows, one queue row of their rollup partials, one
//! commit), then answers each batch with its own result.
//!
//! Why: on 2 cores shared with PostgreSQL, what a batch costs the server besides its rows —
//! a transaction, a commit's WAL flush, the COPY set-up, and above all its rollup partials
//! (one per symbol and minute: a batch of 1000 quotes over 500 symbols queues ~500, and the
//! merger folds each one into three bar tables) — is paid once per group instead of once per
//! batch. Nothing waits to form a group: a lone request writes its batch at once, as before;
//! groups form only while every session is busy.
//!
//! The meaning of an answer is unchanged: a batch is answered 200 only after the commit that
//! holds its rows, with its own `inserted` count; a batch holding stored rows (a replay), or
//! one the server refuses, makes the group fall back to one transaction per batch, so each
//! batch gets exactly what its own write would have given. A request still queued when its
//! wait for a session ends is withdrawn and answered 503, as a request of the pool was.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use jiff::Timestamp;
use quotestream_api::batch::CheckedQuote;
use quotestream_db::{Row, Verdict, classify, describe};
use tokio::sync::oneshot;

use super::{ApiError, Ingest};
use crate::metrics;
use crate::pool::{PoolError, Pooled};

/// Most quotes written in one group (ten full batches): a bound on one transaction's size
/// and on how long its first batch waits for the last.
pub const GROUP_ROWS: usize = 10_000;

/// Longest wait for a free database session before answering 503.
const SESSION_WAIT: Duration = Duration::from_secs(10);

/// A checked quote, owned (it waits in the queue beyond the request's body).
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRow {
    symbol: Box<str>,
    timestamp: Timestamp,
    price: f64,
    volume: i64,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    source: &'static str,
}

impl QueuedRow {
    pub fn of(q: &CheckedQuote<'_>) -> Self {
        Self {
            symbol: q.ticker.into(),
            timestamp: q.timestamp,
            price: q.close,
            volume: q.volume,
            open: q.open,
            high: q.high,
            low: q.low,
            source: q.source,
        }
    }

    /// The row of the table (the contract carries no bid or ask).
    pub fn row(&self) -> Row<'_> {
        Row {
            symbol: &self.symbol,
            timestamp: self.timestamp,
            price: self.price,
            volume: self.volume,
            bid: None,
            ask: None,
            open: self.open,
            high: self.high,
            low: self.low,
            source: self.source,
        }
    }
}

type Answer = Result<u64, ApiError>;

/// A batch waiting to be written.
#[derive(Debug)]
struct Waiting {
    id: u64,
    rows: Vec<QueuedRow>,
    reply: oneshot::Sender<Answer>,
    queued: Instant,
}

/// The batches waiting for a session.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: Mutex<VecDeque<Waiting>>,
    next_id: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, rows: Vec<QueuedRow>, reply: oneshot::Sender<Answer>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push_back(Waiting {
            id,
            rows,
            reply,
            queued: Instant::now(),
        });
        id
    }

    /// Takes `id` out of the queue; false when a leader has taken it already (its answer
    /// will come).
    fn withdraw(&self, id: u64) -> bool {
        let mut waiting = self.lock();
        match waiting.iter().position(|w| w.id == id) {
            Some(i) => waiting.remove(i).is_some(),
            None => false,
        }
    }

    /// The oldest batches, up to `max_rows` quotes (at least one), while `own` waits among
    /// them; nothing once `own` has been taken (by this leader or another).
    fn take(&self, max_rows: usize, own: u64) -> Vec<Waiting> {
        let mut waiting = self.lock();
        let mut group = Vec::new();
        if !waiting.iter().any(|w| w.id == own) {
            return group;
        }
        let mut rows = 0;
        while let Some(next) = waiting.front() {
            if !group.is_empty() && rows + next.rows.len() > max_rows {
                break;
            }
            rows += next.rows.len();
            group.extend(waiting.pop_front());
        }
        group
    }
}

/// Writes `rows` (one checked batch), alone or in a group; returns how many were new.
pub async fn write(ingest: &Ingest, rows: Vec<QueuedRow>) -> Answer {
    let (reply, mut answer) = oneshot::channel();
    let id = ingest.queue.push(rows, reply);
    let pooled = tokio::select! {
        biased;
        a = &mut answer => return answered(a),
        p = ingest.pool.get(SESSION_WAIT) => p,
    };
    match pooled {
        Ok(pooled) => lead(ingest, pooled, id).await,
        Err(e) => {
            if ingest.queue.withdraw(id) {
                return Err(unavailable(ingest, &e, 1));
            }
        }
    }
    answered(answer.await)
}

fn answered(a: Result<Answer, oneshot::error::RecvError>) -> Answer {
    a.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the write of this batch ended without an answer",
        ))
    })
}

/// Writes groups from the queue, oldest first, until the batch `own` has been taken (by this
/// leader or another): every group ahead of it is written too, so a queued batch always has
/// a leader.
async fn lead(ingest: &Ingest, pooled: Pooled, own: u64) {
    let mut pooled = Some(pooled);
    loop {
        let group = ingest.queue.take(GROUP_ROWS, own);
        if group.is_empty() {
            return;
        }
        let metrics = &ingest.metrics;
        metrics.group_batches.observe(group.len() as f64);
        let wait = metrics.phase.with_label_values(&[metrics::WAIT]);
        for w in &group {
            wait.observe(w.queued.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        let answers = commit(ingest, &mut pooled, &group).await;
        metrics
            .phase
            .with_label_values(&[metrics::WRITE])
            .observe(started.elapsed().as_secs_f64());
        for (w, a) in group.into_iter().zip(answers) {
            // The request may have gone (client hung up); its batch is written all the same.
            let _ = w.reply.send(a);
        }
    }
}

/// One group in one transaction, retried once on a new session when the connection failed
/// before the commit (the pooled one may predate a database restart); one answer per batch.
async fn commit(ingest: &Ingest, pooled: &mut Option<Pooled>, group: &[Waiting]) -> Vec<Answer> {
    let views: Vec<Vec<Row<'_>>> = group
        .iter()
        .map(|w| w.rows.iter().map(QueuedRow::row).collect())
        .collect();
    let batches: Vec<&[Row<'_>]> = views.iter().map(Vec::as_slice).collect();
    let all = |e: ApiError| vec![Err(e); group.len()];
    let mut last = String::new();
    for _ in 0..2 {
        let p = match pooled {
            Some(p) => p,
            None => match ingest.pool.get(SESSION_WAIT).await {
                Ok(p) => pooled.insert(p),
                Err(e) => return all(unavailable(ingest, &e, group.len())),
            },
        };
        let Some(session) = p.session() else {
            *pooled = None;
            continue;
        };
        match session.write_group(&batches).await {
            Ok(results) => {
                let broken = results
                    .iter()
                    .any(|r| r.as_ref().is_err_and(|e| e.as_db_error().is_none()));
                if broken {
                    p.discard();
                    *pooled = None;
                    ingest.pool.clear();
                }
                return results
                    .into_iter()
                    .map(|r| r.map_err(|e| failed(ingest, &e)))
                    .collect();
            }
            Err(e) => {
                let why = describe(&e);
                ingest
                    .metrics
                    .db_errors
                    .with_label_values(&["retry"])
                    .inc_by(group.len() as u64);
                tracing::warn!(error = %why, batches = group.len(), "write failed");
                if e.as_db_error().is_none() {
                    p.discard();
                    *pooled = None;
                    ingest.pool.clear();
                    last = why;
                    continue;
                }
                return all(ApiError::unavailable(
                    format!("the database failed the write: {why}; retry later"),
                    ingest.retry_after,
                ));
            }
        }
    }
    all(ApiError::unavailable(
        format!("the database connection failed: {last}; retry later"),
        ingest.retry_after,
    ))
}

/// The answer to a batch whose own write failed.
fn failed(ingest: &Ingest, e: &tokio_postgres::Error) -> ApiError {
    let why = describe(e);
    if classify(e) == Verdict::Reject {
        ingest
            .metrics
            .db_errors
            .with_label_values(&["rejected"])
            .inc();
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "database",
            format!("the database refused the batch: {why}"),
        );
    }
    ingest.metrics.db_errors.with_label_values(&["retry"]).inc();
    tracing::warn!(error = %why, "write failed");
    ApiError::unavailable(
        format!("the database failed the write: {why}; retry later"),
        ingest.retry_after,
    )
}

/// No session for `batches` batches: 503.
fn unavailable(ingest: &Ingest, e: &PoolError, batches: usize) -> ApiError {
    ingest
        .metrics
        .db_errors
        .with_label_values(&["unavailable"])
        .inc_by(batches as u64);
    tracing::warn!(error = %e, "database unavailable; answering 503");
    ApiError::unavailable(
        format!("the database is unavailable: {e}; retry later"),
        ingest.retry_after,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(queue: &Queue, rows: usize) -> (u64, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        let row = QueuedRow {
            symbol: "AAPL".into(),
            timestamp: Timestamp::UNIX_EPOCH,
            price: 1.0,
            volume: 0,
            open: None,
            high: None,
            low: None,
            source: "synthetic",
        };
        (queue.push(vec![row; rows], tx), rx)
    }

    fn ids(group: &[Waiting]) -> Vec<u64> {
        group.iter().map(|w| w.id).collect()
    }

    #[test]
    fn a_leader_takes_the_oldest_batches_up_to_the_row_bound_until_its_own_is_taken() {
        let queue = Queue::default();
        let waiting: Vec<_> = [4000, 4000, 4000, 10, 10]
            .iter()
            .map(|&n| waiting(&queue, n))
            .collect();
        let id: Vec<u64> = waiting.iter().map(|w| w.0).collect();
        let own = id[3];
        assert_eq!(
            ids(&queue.take(GROUP_ROWS, own)),
            id[..2],
            "8000 quotes; a third batch would pass 10 000"
        );
        assert_eq!(
            ids(&queue.take(GROUP_ROWS, own)),
            id[2..],
            "then the rest, oldest first, its own among them"
        );
        assert!(queue.take(GROUP_ROWS, own).is_empty(), "its own is taken");
    }

    #[test]
    fn a_leader_whose_batch_another_took_takes_nothing() {
        let queue = Queue::default();
        let (a, _ra) = waiting(&queue, 10);
        let (b, _rb) = waiting(&queue, 10);
        assert_eq!(ids(&queue.take(GROUP_ROWS, b)), [a, b]);
        let (_c, _rc) = waiting(&queue, 10);
        assert!(
            queue.take(GROUP_ROWS, a).is_empty(),
            "a's batch was written by b's leader; a answers, c has its own leader"
        );
    }

    #[test]
    fn a_batch_over_the_bound_is_still_taken_alone() {
        let queue = Queue::default();
        let (id, _rx) = waiting(&queue, GROUP_ROWS + 1);
        let (other, _ro) = waiting(&queue, 1);
        assert_eq!(ids(&queue.take(GROUP_ROWS, other)), [id]);
        assert_eq!(ids(&queue.take(GROUP_ROWS, other)), [other]);
    }

    #[test]
    fn a_withdrawn_batch_is_never_taken_and_a_taken_one_cannot_be_withdrawn() {
        let queue = Queue::default();
        let (a, _ra) = waiting(&queue, 1);
        let (b, _rb) = waiting(&queue, 1);
        assert!(queue.withdraw(b), "still queued: withdrawn");
        assert!(queue.take(GROUP_ROWS, b).is_empty(), "b is gone");
        assert_eq!(ids(&queue.take(GROUP_ROWS, a)), [a]);
        assert!(
            !queue.withdraw(a),
            "taken by a leader: its answer will come"
        );
        assert!(!queue.withdraw(b), "already withdrawn");
    }
}
