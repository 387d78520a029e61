//! The acknowledged hand-over's requests and bookkeeping: asks the ready pods of each shard
//! taking tickers over which list they stream (`GET /assignment` on the pod's `http` port),
//! remembers since when each stream's hand-over waits, and measures what a release leaves: the
//! per-ticker ownership gap (`quotestream_handover_gap_seconds`) and the wait.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use quotestream_api::worker_config::AppliedList;

use crate::metrics::Metrics;
use crate::resources::acknowledgement::{AckEndpoint, ack_endpoints, acknowledges, gap_seconds};
use crate::resources::handover::{Handover, Release};
use crate::resources::plan::{ShardPlan, StreamPlan};

// A pod that does not answer in time (`worker_client::REQUEST_TIMEOUT`) is asked again at the
// next reconcile (one second later while a hand-over waits).
use super::worker_client::{CONCURRENT_REQUESTS, WorkerClient};

/// The hand-overs in progress, per stream, and the client that asks the workers.
#[derive(Debug)]
pub struct Acks {
    /// A client that could not be built (no TLS provider) fails every request: hand-overs
    /// then wait for the timeout, and say why.
    workers: WorkerClient,
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    /// The assignment being handed over: a newer one starts a new wait.
    fingerprint: String,
    since: Instant,
    /// The same moment on the wall clock, for the status.
    began: jiff::Timestamp,
}

/// What a reconcile learnt about its hand-over.
#[derive(Debug)]
pub struct Decision {
    pub release: Release,
    /// The acknowledging report of each receiver that gave one.
    pub acknowledged: BTreeMap<u32, AppliedList>,
    /// Since the hand-over's first reconcile (by this replica).
    pub waited: Duration,
    /// When that was, on the wall clock (None when nothing moves).
    pub began: Option<jiff::Timestamp>,
}

impl Acks {
    pub fn new(workers: WorkerClient) -> Self {
        Self {
            workers,
            pending: Mutex::default(),
        }
    }

    /// Since when the stream's hand-over of `fingerprint` waits (now, if it is new), on the
    /// monotonic and on the wall clock.
    fn since(&self, key: &str, fingerprint: &str) -> (Instant, jiff::Timestamp) {
        let new = || Pending {
            fingerprint: fingerprint.to_owned(),
            since: Instant::now(),
            began: jiff::Timestamp::now(),
        };
        let Ok(mut pending) = self.pending.lock() else {
            let now = new();
            return (now.since, now.began);
        };
        let entry = pending.entry(key.to_owned()).or_insert_with(new);
        if entry.fingerprint != fingerprint {
            *entry = new();
        }
        (entry.since, entry.began)
    }

    /// Forgets the stream's hand-over (released, or nothing to hand over).
    pub fn finish(&self, key: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(key);
        }
    }

    /// Asks every ready pod of every receiver (no request when nothing moves) and decides.
    pub async fn decide(
        &self,
        key: &str,
        plan: &StreamPlan,
        handover: &Handover,
        ready: impl Fn(u32) -> bool,
        pods: &[Pod],
        timeout: Duration,
    ) -> Decision {
        // The wait counts from before this reconcile's requests (they take time too).
        let since = (!handover.receivers.is_empty()).then(|| self.since(key, &plan.fingerprint));
        // With the acknowledgement off (`--handover-timeout=0s`) nobody is asked.
        // Owned items: the requests run as one stream inside the reconcile's future.
        let asked: Vec<(usize, AckEndpoint)> = plan
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| handover.receivers.contains(&s.index) && !timeout.is_zero())
            .flat_map(|(at, s)| {
                ack_endpoints(pods, s.index)
                    .into_iter()
                    .map(move |e| (at, e))
            })
            .collect();
        // At most CONCURRENT_REQUESTS at once: a scale-out to hundreds of shards, or pods that
        // do not answer (each costs up to REQUEST_TIMEOUT), must not hold the reconcile for
        // minutes.
        let answers: Vec<(usize, AckEndpoint, Result<AppliedList, String>)> =
            futures_util::stream::iter(asked)
                .map(|(at, endpoint)| async move {
                    let answer = self
                        .workers
                        .get_json::<AppliedList>(&endpoint.url, None)
                        .await;
                    (at, endpoint, answer)
                })
                .buffer_unordered(CONCURRENT_REQUESTS)
                .collect()
                .await;
        let mut acknowledged = BTreeMap::new();
        for (at, endpoint, answer) in answers {
            let planned: &ShardPlan = &plan.shards[at];
            match answer {
                Ok(report) if acknowledges(&report, planned) => {
                    acknowledged.insert(planned.index, report);
                }
                Ok(report) => {
                    tracing::debug!(stream = key, pod = %endpoint.pod, streams = %report.fingerprint, wanted = %planned.config.fingerprint, "shard does not stream its new list yet")
                }
                Err(e) => {
                    tracing::debug!(stream = key, pod = %endpoint.pod, url = %endpoint.url, error = %e, "hand-over acknowledgement not read")
                }
            }
        }
        let waited = since.map_or(Duration::ZERO, |(s, _)| s.elapsed());
        let release = handover.decide(ready, |s| acknowledged.contains_key(&s), waited, timeout);
        Decision {
            release,
            acknowledged,
            waited,
            began: since.map(|(_, began)| began),
        }
    }
}

/// Records a release in the metrics; returns the largest per-ticker gap (None when the release
/// was not acknowledged, so no gap is known).
pub fn record_release(
    metrics: &Metrics,
    handover: &Handover,
    decision: &Decision,
    released: jiff::Timestamp,
) -> Option<f64> {
    if handover.receivers.is_empty() {
        return Some(0.0);
    }
    metrics.handover_wait.observe(decision.waited.as_secs_f64());
    let moved = handover.moving_tickers() as u64;
    if !matches!(decision.release, Release::Acknowledged) {
        metrics.handed_over("unacknowledged").inc_by(moved);
        return None;
    }
    metrics.handed_over("acknowledged").inc_by(moved);
    let mut worst: f64 = 0.0;
    for (shard, tickers) in &handover.moving {
        let Some(report) = decision.acknowledged.get(shard) else {
            continue;
        };
        let gap = gap_seconds(report.applied_at, released);
        worst = worst.max(gap);
        for _ in 0..*tickers {
            metrics.handover_gap.observe(gap);
        }
    }
    Some(worst)
}
