//! The QuoteStream status: shard readiness (from the Deployments), the assignment, and the
//! Ready / Progressing / Degraded conditions with reasons a person can act on.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use quotestream_api::crd::{AssignmentStatus, MarketStatus, ShardStatus};
use quotestream_api::{QuoteStream, QuoteStreamStatus};

use super::conditions::{condition, set_condition};
use super::plan::{PlanError, StreamPlan};
use super::worker_failures::WorkerFailure;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Every shard's worker is ready on its current pod template.
pub const SHARDS_READY: &str = "ShardsReady";
/// Some shard's worker is not ready yet (new shard, rollout, restart).
pub const SHARDS_STARTING: &str = "ShardsStarting";
/// Every worker is ready, but some shard still runs a pod of an older template.
pub const SHARDS_ROLLING_OUT: &str = "ShardsRollingOut";
/// A shard's Deployment exceeded its progress deadline.
pub const SHARDS_STALLED: &str = "ShardsStalled";

/// What the reconciler saw of one shard's Deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardObservation {
    /// A worker pod of the shard passes /ready.
    pub ready: bool,
    /// The Deployment runs only pods of its current template (`kubectl rollout status` done).
    pub rolled_out: bool,
    /// The Deployment reports `Progressing=False` (ProgressDeadlineExceeded).
    pub stalled: bool,
}

/// Reads a shard's Deployment (`None`: not created yet).
pub fn observe(deployment: Option<&Deployment>) -> ShardObservation {
    let Some(d) = deployment else {
        return ShardObservation::default();
    };
    let Some(s) = &d.status else {
        return ShardObservation::default();
    };
    let want = d.spec.replicas.unwrap_or(1);
    let current = s.observed_generation >= d.metadata.generation;
    let updated = s.updated_replicas.unwrap_or(0);
    let stalled = s.conditions.iter().flatten().any(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    ShardObservation {
        ready: s.ready_replicas.unwrap_or(0) >= 1,
        rolled_out: current
            && updated >= want
            && s.replicas.unwrap_or(0) <= updated
            && s.available_replicas.unwrap_or(0) >= updated,
        stalled,
    }
}

/// The status after a successful plan; `observed[i]` is shard i (missing: not created yet).
pub fn planned_status(
    stream: &QuoteStream,
    plan: &StreamPlan,
    observed: &[ShardObservation],
    now: &Time,
) -> QuoteStreamStatus {
    let at = |i: usize| observed.get(i).copied().unwrap_or_default();
    let shards: Vec<ShardStatus> = plan
        .shards
        .iter()
        .enumerate()
        .map(|(i, s)| ShardStatus {
            index: i32::try_from(s.index).unwrap_or(i32::MAX),
            tickers: i32::try_from(s.config.tickers.len()).unwrap_or(i32::MAX),
            deployment: s.name.clone(),
            ready: at(i).ready,
        })
        .collect();
    let total = shards.len();
    let ready = shards.iter().filter(|s| s.ready).count();
    let stalled: Vec<String> = (0..total)
        .filter(|&i| at(i).stalled)
        .map(|i| plan.shards[i].name.clone())
        .collect();
    let rolled_out = (0..total).all(|i| at(i).rolled_out);

    let mut status = base(stream, now);
    let generation = stream.metadata.generation;
    let counted = format!("{ready} of {total} shards ready");
    let (ready_reason, progress, progress_reason) = match (ready == total, rolled_out) {
        (true, true) => (SHARDS_READY, false, SHARDS_READY),
        (true, false) => (SHARDS_READY, true, SHARDS_ROLLING_OUT),
        (false, _) => (SHARDS_STARTING, true, SHARDS_STARTING),
    };
    let cs = &mut status.conditions;
    set_condition(
        cs,
        condition(
            READY,
            ready == total,
            ready_reason,
            counted.clone(),
            generation,
            now,
        ),
    );
    if stalled.is_empty() {
        set_condition(
            cs,
            condition(
                PROGRESSING,
                progress,
                progress_reason,
                counted.clone(),
                generation,
                now,
            ),
        );
        set_condition(
            cs,
            condition(DEGRADED, false, SHARDS_READY, counted, generation, now),
        );
    } else {
        let message = format!(
            "{} did not become ready within the progress deadline ({counted}): see kubectl describe deployment and the worker logs",
            stalled.join(", ")
        );
        set_condition(
            cs,
            condition(
                PROGRESSING,
                false,
                SHARDS_STALLED,
                message.clone(),
                generation,
                now,
            ),
        );
        set_condition(
            cs,
            condition(DEGRADED, true, SHARDS_STALLED, message, generation, now),
        );
    }
    status.ready_shards = i32::try_from(ready).unwrap_or(i32::MAX);
    status.desired_shards = i32::try_from(total).ok();
    status.tickers = i32::try_from(plan.assignment.ticker_count()).ok();
    status.shards = shards;
    status.assignment = Some(AssignmentStatus {
        epoch: plan.epoch,
        hash: plan.fingerprint.clone(),
    });
    status
}

/// `status.market` at `now`, from `spec.schedule` (None without one).
pub fn market_status(stream: &QuoteStream, now: jiff::Timestamp) -> Option<MarketStatus> {
    stream
        .spec
        .schedule
        .as_ref()
        .map(|schedule| MarketStatus::at(schedule, now))
}

/// The status when the spec cannot be planned. The workers keep streaming the last good
/// configuration, so the shard summary and assignment stay; the error's reason shows in
/// `kubectl get qs` (the Status column is the Ready reason).
pub fn failed_status(
    stream: &QuoteStream,
    error: &PlanError,
    observed: &[ShardObservation],
    now: &Time,
) -> QuoteStreamStatus {
    let mut status = base(stream, now);
    for s in &mut status.shards {
        let i = usize::try_from(s.index).unwrap_or(usize::MAX);
        s.ready = observed.get(i).is_some_and(|o| o.ready);
    }
    let ready = status.shards.iter().filter(|s| s.ready).count();
    status.ready_shards = i32::try_from(ready).unwrap_or(i32::MAX);
    let (generation, reason, message) = (
        stream.metadata.generation,
        error.reason(),
        error.to_string(),
    );
    let cs = &mut status.conditions;
    set_condition(
        cs,
        condition(READY, false, reason, message.clone(), generation, now),
    );
    set_condition(
        cs,
        condition(PROGRESSING, false, reason, message.clone(), generation, now),
    );
    set_condition(
        cs,
        condition(DEGRADED, true, reason, message, generation, now),
    );
    status
}

/// Marks `status` Degraded because workers cannot start (`failures`, not empty): the reason
/// is `SinkFailed` when the first names a sink, and the message says which shard, which sink
/// and which setting to fix. Ready and Progressing stay as the Deployments say.
pub fn worker_failed(
    status: &mut QuoteStreamStatus,
    failures: &[WorkerFailure],
    generation: Option<i64>,
    now: &Time,
) {
    let Some(first) = failures.first() else {
        return;
    };
    let mut message = failures
        .iter()
        .take(3)
        .map(WorkerFailure::describe)
        .collect::<Vec<_>>()
        .join("; ");
    if failures.len() > 3 {
        message.push_str(&format!(" (and {} more pods)", failures.len() - 3));
    }
    set_condition(
        &mut status.conditions,
        condition(DEGRADED, true, first.reason(), message, generation, now),
    );
}

/// The previous status with this generation and the stream's pod selector.
fn base(stream: &QuoteStream, now: &Time) -> QuoteStreamStatus {
    let mut status = stream.status.clone().unwrap_or_default();
    status.observed_generation = stream.metadata.generation;
    status.selector = Some(stream.selector());
    status.market = market_status(stream, now.0);
    status
}

#[cfg(test)]
mod tests;
