//! The worker configuration: the one document the operator writes for each shard (ConfigMap
//! `<stream>-shard-<i>`, key `worker.json`) and the worker reads. This type *is* the
//! operator ↔ worker contract; see docs/architecture.md.

use serde::{Deserialize, Serialize};

use crate::crd::{Sinks, Source};

/// The ConfigMap key holding the worker configuration.
pub const WORKER_CONFIG_KEY: &str = "worker.json";
/// Where the shard Deployment mounts it.
pub const WORKER_CONFIG_PATH: &str = "/etc/quotestream/worker.json";

/// Everything one worker needs to stream its shard. Secrets are never in here: the worker
/// reads them from the environment (`REDIS_URL`, `DATABASE_URL`, ...), which the Deployment
/// fills from the Secrets the QuoteStream references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerConfig {
    /// Namespace of the QuoteStream.
    pub namespace: String,
    /// Name of the QuoteStream.
    pub stream: String,
    /// This worker's shard index, from 0.
    pub shard: u32,
    /// Shards of the stream.
    pub shards: u32,
    /// The tickers this shard owns (canonical symbols, sorted).
    pub tickers: Vec<String>,
    /// Polling interval, a Go duration.
    pub interval: String,
    /// This shard's share of the stream's request budget (requestsPerHour / shards).
    pub requests_per_hour: f64,
    /// The source settings, copied from the QuoteStream.
    pub source: Source,
    /// The sink settings, copied from the QuoteStream.
    pub sinks: Sinks,
    /// The assignment epoch this list belongs to.
    #[serde(default)]
    pub epoch: i64,
    /// Fingerprint of this shard's ticker list.
    #[serde(default)]
    pub fingerprint: String,
}

impl WorkerConfig {
    /// The part of the configuration whose change needs a new worker process (everything but
    /// the ticker list, which a running worker picks up by itself).
    pub fn without_tickers(&self) -> WorkerConfig {
        WorkerConfig {
            tickers: Vec::new(),
            epoch: 0,
            fingerprint: String::new(),
            ..self.clone()
        }
    }
}
