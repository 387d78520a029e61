//! Liveness and readiness state behind `/health` and `/ready`: the process, and each sink's
//! state ([`SinkStatus`], what a sink reports about itself while it runs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use jiff::Timestamp;
pub use quotestream_api::readiness::{ReadyReport, SinkState};
use quotestream_api::sink_failure::SinkFailure;
use serde::Serialize;

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    shard: u32,
    last_fetch_ms: AtomicI64,
    ready: AtomicBool,
    metrics: Metrics,
    sinks: Board,
}

/// Each sink's state, by label.
type Board = Arc<Mutex<BTreeMap<&'static str, SinkState>>>;

/// One sink's slot on the board: what the sink reports while it runs. A detached status
/// (`SinkStatus::default()`, for a sink run outside a worker) records nothing.
#[derive(Debug, Clone, Default)]
pub struct SinkStatus {
    slot: Option<(&'static str, Board)>,
}

impl SinkStatus {
    fn set(&self, state: SinkState) {
        if let Some((name, board)) = &self.slot {
            lock(board).insert(name, state);
        }
    }

    pub fn up(&self) {
        self.set(SinkState::Up);
    }

    pub fn retrying(&self, reason: impl Into<String>) {
        self.set(SinkState::Retrying {
            reason: reason.into(),
        });
    }

    pub fn failed(&self, failure: &SinkFailure) {
        self.set(SinkState::Failed {
            setting: failure.setting.clone(),
            reason: failure.reason.clone(),
        });
    }
}

/// The board stays usable if a thread panicked while holding it (it only holds states).
fn lock(board: &Board) -> MutexGuard<'_, BTreeMap<&'static str, SinkState>> {
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `/health` document (the seed's fields plus the shard).
#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub status: &'static str,
    pub version: &'static str,
    pub shard: u32,
    pub active_tickers: i64,
    pub last_fetch: Option<String>,
    pub uptime_seconds: u64,
}

impl Health {
    pub fn new(shard: u32, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                shard,
                last_fetch_ms: AtomicI64::new(0),
                ready: AtomicBool::new(false),
                metrics,
                sinks: Board::default(),
            }),
        }
    }

    /// The source delivered a batch.
    pub fn record_fetch(&self) {
        let now = Timestamp::now().as_millisecond();
        self.inner.last_fetch_ms.store(now, Ordering::Relaxed);
    }

    /// Sinks are connected and the source is running.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().ready
    }

    /// The slot of sink `name` on the board, starting [`SinkState::Up`].
    pub fn sink(&self, name: &'static str) -> SinkStatus {
        lock(&self.inner.sinks).insert(name, SinkState::Up);
        SinkStatus {
            slot: Some((name, self.inner.sinks.clone())),
        }
    }

    /// Ready while the worker runs and no sink has failed permanently.
    pub fn readiness(&self) -> ReadyReport {
        let sinks = lock(&self.inner.sinks)
            .iter()
            .map(|(name, state)| ((*name).to_owned(), state.clone()))
            .collect();
        ReadyReport::new(sinks, self.inner.ready.load(Ordering::Relaxed))
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    pub fn report(&self) -> HealthReport {
        let last = self.inner.last_fetch_ms.load(Ordering::Relaxed);
        HealthReport {
            status: if self.inner.ready.load(Ordering::Relaxed) {
                "ok"
            } else {
                "starting"
            },
            version: env!("CARGO_PKG_VERSION"),
            shard: self.inner.shard,
            active_tickers: self.inner.metrics.active_tickers.get(),
            last_fetch: (last > 0)
                .then(|| Timestamp::from_millisecond(last).ok())
                .flatten()
                .map(|t| crate::quote::wire::WireTime(t).to_string()),
            uptime_seconds: self.uptime_seconds(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sink_makes_the_worker_unready_until_it_is_up_again() {
        let health = Health::new(0, Metrics::new("s", 0).unwrap());
        let pg = health.sink("postgres");
        let _redis = health.sink("redis");
        assert!(!health.is_ready(), "not ready before the worker runs");
        health.set_ready(true);
        assert!(health.is_ready());
        pg.retrying("connection refused");
        assert!(health.is_ready(), "an outage is not a reason to be unready");
        let failure = SinkFailure::new(
            "postgres",
            "spec.sinks.postgres.dsnSecretRef",
            "42501 permission denied",
        );
        pg.failed(&failure);
        let report = health.readiness();
        assert!(!report.ready);
        assert_eq!(report.reason.as_deref(), Some(failure.line().as_str()));
        let body = serde_json::to_value(&report).unwrap();
        assert_eq!(body["sinks"]["postgres"]["state"], "failed");
        assert_eq!(body["sinks"]["redis"]["state"], "up");
        pg.up();
        assert!(health.is_ready());
        SinkStatus::default().failed(&failure);
        assert!(health.is_ready(), "a detached status reports nowhere");
    }
}
