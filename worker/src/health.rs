//! Liveness and readiness state behind `/health` and `/ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use jiff::Timestamp;
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
        self.inner.ready.load(Ordering::Relaxed)
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    pub fn report(&self) -> HealthReport {
        let last = self.inner.last_fetch_ms.load(Ordering::Relaxed);
        HealthReport {
            status: if self.is_ready() { "ok" } else { "starting" },
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
