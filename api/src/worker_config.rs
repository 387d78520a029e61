//! The worker configuration: the one document the operator writes for each shard (ConfigMap
//! `<stream>-shard-<i>`, key `worker.json`) and the worker reads. This type *is* the
//! operator ↔ worker contract; see docs/architecture.md.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::crd::{Schedule, Sinks, Source};

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
    /// Trading hours, copied from the QuoteStream: the source runs only inside them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The assignment epoch this list belongs to.
    #[serde(default)]
    pub epoch: i64,
    /// Fingerprint of this shard's ticker list.
    #[serde(default)]
    pub fingerprint: String,
    /// Bytes each sink queue may hold (an estimate of the queued batches' heap size; see
    /// [`queue_bytes_per_sink`]). The operator derives it from `spec.worker.resources.limits.memory`;
    /// unset, the worker applies the same rule to a 128 Mi pod. `run --queue-bytes`
    /// (`QUOTESTREAM_QUEUE_BYTES`) overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_bytes: Option<u64>,
}

/// The memory limit the worker sizes its queues for when nothing says otherwise: the operator's
/// default `spec.worker.resources.limits.memory`, 128 Mi.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 128 << 20;
/// The share of the memory limit the sink queues may take together: a sixteenth. The rest is
/// the process itself (runtime, connections, the source's buffers, the batches a sink has in
/// hand: about 10-15 MiB) and headroom for the allocator, whose footprint exceeds what is live.
/// Measured (`make bench`, row_peak_rss): a quarter (16 MiB per sink in a 128 Mi pod) peaked at
/// 33-44 MB at full speed; a sixteenth peaks at 26-29 MB with the same throughput, since a
/// queue of 4 MiB still holds about 20 of the replay's 1000-quote batches.
pub const QUEUE_SHARE_OF_LIMIT: u64 = 16;
/// The smallest per-sink queue budget: below it a queue holds less than two of the replay's
/// 1000-quote batches.
pub const MIN_QUEUE_BYTES: u64 = 256 << 10;
/// The largest: beyond it a typo, not a plan.
pub const MAX_QUEUE_BYTES: u64 = 64 << 30;

/// The byte budget of each sink queue for a pod whose memory limit is `limit_bytes` and whose
/// worker runs `sinks` sinks: a sixteenth of the limit, split evenly across the sinks, within
/// [`MIN_QUEUE_BYTES`]..=[`MAX_QUEUE_BYTES`]. 128 Mi with Redis + PostgreSQL gives 4 MiB per
/// sink; with the three sinks, 2.7 MiB.
pub fn queue_bytes_per_sink(limit_bytes: u64, sinks: usize) -> u64 {
    let sinks = u64::try_from(sinks.max(1)).unwrap_or(u64::MAX);
    (limit_bytes / QUEUE_SHARE_OF_LIMIT / sinks).clamp(MIN_QUEUE_BYTES, MAX_QUEUE_BYTES)
}

impl WorkerConfig {
    /// The part of the configuration a running worker cannot apply by itself, so its change
    /// needs a new process: everything but what a reshard changes — the ticker list with its
    /// epoch and fingerprint, the shard count, and the rate-limit share derived from it — which
    /// a running worker reloads. The operator hashes this view into the pod template
    /// (`quotes.opa.io/config-hash`), so exactly these changes roll the pods.
    pub fn restart_view(&self) -> WorkerConfig {
        // Every field named (no `..self.clone()`): the ticker list, up to 100 000 strings, is
        // not cloned only to be dropped, and a field added later must be placed here by hand.
        let Self {
            namespace,
            stream,
            shard,
            shards: _,
            tickers: _,
            interval,
            requests_per_hour: _,
            source,
            sinks,
            schedule,
            epoch: _,
            fingerprint: _,
            queue_bytes,
        } = self;
        WorkerConfig {
            namespace: namespace.clone(),
            stream: stream.clone(),
            shard: *shard,
            shards: 0,
            tickers: Vec::new(),
            interval: interval.clone(),
            requests_per_hour: 0.0,
            source: source.clone(),
            sinks: sinks.clone(),
            schedule: schedule.clone(),
            epoch: 0,
            fingerprint: String::new(),
            queue_bytes: *queue_bytes,
        }
    }

    /// The fields (as named in `worker.json`) whose change from `self` to `next` needs a new
    /// worker process; empty when a running worker can apply `next` by itself. Computed from
    /// [`WorkerConfig::restart_view`], so a field added later counts until it is made reloadable.
    pub fn restart_changes(&self, next: &WorkerConfig) -> Vec<String> {
        let (before, after) = (self.restart_view(), next.restart_view());
        if before == after {
            return Vec::new();
        }
        let fields = |c: &WorkerConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let (before, after) = (fields(&before), fields(&after));
        let mut changed: Vec<String> = after
            .iter()
            .filter(|(field, value)| before.get(*field) != Some(*value))
            .map(|(field, _)| field.clone())
            .chain(before.keys().filter(|f| !after.contains_key(*f)).cloned())
            .collect();
        if changed.is_empty() {
            // Equal JSON but unequal values (a NaN share, say): still a change.
            changed.push("worker.json".to_owned());
        }
        changed
    }
}

/// The worker's acknowledgement of a ticker list: what it serves on
/// [`crate::contract::ASSIGNMENT_PATH`] and the operator reads before a hand-over's previous
/// owners let the moving tickers go. No API rights are involved: the operator already reads
/// the stream's pods, and asks each gaining shard's ready pod over the pod network.
/// The ticker list a worker streams: the `worker.json` it last applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedList {
    pub shard: u32,
    /// `worker.json`'s assignment epoch.
    pub epoch: i64,
    /// `worker.json`'s `fingerprint`: the XXH64 of the shard's ticker list. The operator
    /// compares it with the list it wrote.
    pub fingerprint: String,
    pub tickers: usize,
    /// When the worker's source was handed this list (the worker's clock).
    pub applied_at: Timestamp,
}

impl AppliedList {
    /// The list of `config`, applied at `at`.
    pub fn of(config: &WorkerConfig, at: Timestamp) -> Self {
        Self {
            shard: config.shard,
            epoch: config.epoch,
            fingerprint: config.fingerprint.clone(),
            tickers: config.tickers.len(),
            applied_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> WorkerConfig {
        let mut base = serde_json::json!({
            "namespace": "default", "stream": "demo", "shard": 1, "shards": 3,
            "tickers": ["AAPL", "MSFT"], "interval": "1s", "requestsPerHour": 600.0,
            "source": {"type": "yahoo"}, "sinks": {"redis": {"url": "redis://redis:6379/0"}},
            "epoch": 4, "fingerprint": "00000000000000aa"
        });
        if let (Some(base), serde_json::Value::Object(changes)) = (base.as_object_mut(), json) {
            base.extend(changes);
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn the_queue_budget_is_a_sixteenth_of_the_limit_split_across_the_sinks() {
        const MI: u64 = 1 << 20;
        assert_eq!(queue_bytes_per_sink(DEFAULT_MEMORY_LIMIT_BYTES, 2), 4 * MI);
        assert_eq!(queue_bytes_per_sink(DEFAULT_MEMORY_LIMIT_BYTES, 1), 8 * MI);
        assert_eq!(queue_bytes_per_sink(1 << 30, 4), 16 * MI);
        assert_eq!(
            queue_bytes_per_sink(0, 0),
            MIN_QUEUE_BYTES,
            "never below the minimum"
        );
        assert_eq!(queue_bytes_per_sink(u64::MAX, 1), MAX_QUEUE_BYTES);
        let json = serde_json::to_value(config(serde_json::json!({}))).unwrap();
        assert!(
            json.get("queueBytes").is_none(),
            "unset stays out of worker.json"
        );
        let set = config(serde_json::json!({"queueBytes": 16 * MI}));
        assert_eq!(set.queue_bytes, Some(16 * MI));
        assert_eq!(
            config(serde_json::json!({})).restart_changes(&set),
            ["queueBytes"],
            "a new budget needs a new process"
        );
    }

    #[test]
    fn a_reshard_needs_no_restart() {
        let before = config(serde_json::json!({}));
        let after = config(serde_json::json!({
            "shards": 5, "tickers": ["AAPL"], "requestsPerHour": 360.0,
            "epoch": 5, "fingerprint": "00000000000000bb"
        }));
        assert_eq!(before.restart_changes(&after), Vec::<String>::new());
        assert_eq!(before.restart_view(), after.restart_view());
    }

    #[test]
    fn other_changes_are_named() {
        let before = config(serde_json::json!({}));
        let after = config(serde_json::json!({
            "interval": "2s", "sinks": {"redis": {"url": "redis://other:6379/0"}}, "tickers": []
        }));
        assert_eq!(before.restart_changes(&after), ["interval", "sinks"]);
    }

    #[test]
    fn the_acknowledgement_is_camel_case_with_an_rfc3339_time() {
        let doc = AppliedList {
            shard: 3,
            epoch: 7,
            fingerprint: "00000000000000aa".into(),
            tickers: 120,
            applied_at: "2026-12-06T16:00:00.5Z".parse().unwrap(),
        };
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["appliedAt"], "2026-12-06T16:00:00.5Z");
        assert_eq!(json["fingerprint"], "00000000000000aa");
        let back: AppliedList = serde_json::from_value(json).unwrap();
        assert_eq!(back, doc);
    }
}
