//! `status`: what the operator observed and did.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a QuoteStream, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuoteStreamStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Shards whose worker Deployment is ready (the scale subresource's replicas).
    #[serde(default)]
    pub ready_shards: i32,
    /// Shards the operator runs: spec.shards, or the count spec.autoscale chose from the
    /// ticker count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_shards: Option<i32>,
    /// Label selector of the worker pods (the scale subresource's selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Tickers streamed: inline plus ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickers: Option<i32>,
    /// Ready, Progressing and Degraded, with reasons a person can act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One entry per shard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// The current ticker assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<AssignmentStatus>,
    /// Progress of the spec.history backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryStatus>,
    /// The exchange's state, for a stream with spec.schedule (removed with the schedule).
    #[serde(default)]
    pub market: Option<MarketStatus>,
    /// A hand-over in progress: tickers moving between shards stay listed by their old owners
    /// until every shard taking them over is ready and has acknowledged its new list. Absent
    /// when nothing waits.
    // `market` and `handover` serialise None as null: the operator's status write is a merge
    // patch, in which an absent field keeps the stored one and null removes it.
    #[serde(default)]
    pub handover: Option<HandoverStatus>,
}

/// A waiting hand-over (docs/operator.md, "Acknowledged hand-over").
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HandoverStatus {
    /// Tickers listed by two shards (their old and their new owner) until the hand-over ends.
    pub moving_tickers: i32,
    /// The shards taking tickers over.
    pub receivers: Vec<i32>,
    /// Receivers whose worker is not ready yet.
    #[serde(default)]
    pub not_ready: Vec<i32>,
    /// Receivers no ready pod of which reports its new list on /assignment yet.
    #[serde(default)]
    pub unacknowledged: Vec<i32>,
    /// When this operator replica saw the hand-over begin (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// When the old owners are released even without every acknowledgement (`since` plus the
    /// operator's --handover-timeout; RFC 3339). Absent when acknowledgement is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_by: Option<String>,
}

/// The trading-hours state of a stream with `spec.schedule`, refreshed at each session bound.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MarketStatus {
    /// Closed, PreMarket, Open or PostMarket (the exchange's sessions, whatever the stream
    /// streams).
    pub state: String,
    /// Whether the stream's window is open: its sources run. Outside it the shards stay up
    /// and ready but make no requests.
    pub streaming: bool,
    /// When the stream's next window opens (RFC 3339), while it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_open: Option<String>,
    /// When the current window closes (RFC 3339), while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_close: Option<String>,
}

impl MarketStatus {
    /// The state of `schedule` at `now`.
    pub fn at(schedule: &crate::crd::Schedule, now: jiff::Timestamp) -> Self {
        let window = schedule.window_at(now);
        Self {
            state: schedule.market_state(now).as_str().to_owned(),
            streaming: window.is_some(),
            next_open: match window {
                Some(_) => None,
                None => schedule.next_window(now).map(|w| w.start.to_string()),
            },
            next_close: window.map(|w| w.end.to_string()),
        }
    }
}

/// Summary of one shard.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard index, from 0.
    pub index: i32,
    /// Number of tickers the shard owns.
    pub tickers: i32,
    /// Name of the shard's Deployment (<stream>-shard-<index>).
    pub deployment: String,
    /// Whether the shard's worker is ready.
    pub ready: bool,
}

/// Identity of the current ticker assignment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentStatus {
    /// Incremented each time the assignment changes.
    pub epoch: i64,
    /// Fingerprint of the assignment (hex XXH64, see docs/sharding.md).
    pub hash: String,
}

/// Progress of `spec.history`: what the backfill Jobs did and do.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HistoryStatus {
    /// One line for `kubectl get qs` (the History column), e.g. "480/500 done, 2 failed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Tickers whose history is not complete yet and not failed (queued or in a running Job).
    #[serde(default)]
    pub pending: i32,
    /// Of the pending tickers, those in a running Job.
    #[serde(default)]
    pub running: i32,
    /// Tickers with all the history spec.history asks for.
    #[serde(default)]
    pub done: i32,
    /// Tickers whose last backfill failed (see failures; retried an hour later, or at once when
    /// spec.history changes).
    #[serde(default)]
    pub failed: i32,
    /// The backfill Jobs running now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
    /// What is in the database: per bar interval and vendor, the tickers backfilled from a date
    /// on (up to the day their Job ran; the live stream carries on from there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<HistoryDone>,
    /// The last failed backfill of each failed ticker, grouped by reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<HistoryFailure>,
}

/// Tickers whose bars of one interval from one vendor are in the database from `from` on.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryDone {
    /// Bar interval (1d, or spec.history.intraday.interval).
    pub interval: String,
    /// Vendor (spec.history.source).
    pub source: String,
    /// First day backfilled (UTC date, YYYY-MM-DD).
    pub from: String,
    /// The tickers, sorted.
    pub tickers: Vec<String>,
}

/// Tickers whose backfill of one interval failed, and why.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryFailure {
    /// Bar interval.
    pub interval: String,
    /// Vendor.
    pub source: String,
    /// First day the failed Job asked for (YYYY-MM-DD).
    pub from: String,
    /// Why: the backfill's own words for the ticker (its pod's termination message), else the
    /// Job's failure condition.
    pub reason: String,
    /// When the Job failed (RFC 3339).
    pub at: String,
    /// The Job (kubectl logs job/NAME while it is kept, a day).
    pub job: String,
    /// The stream's metadata.generation the Job ran for: any spec change retries at once.
    #[serde(default)]
    pub generation: i64,
    /// The tickers, sorted.
    pub tickers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_of_the_status_removes_a_market_or_hand_over_that_ended() {
        // The operator writes the status as a JSON merge patch: an absent field would keep
        // the stored one; null removes it.
        let body = serde_json::to_value(QuoteStreamStatus::default()).unwrap();
        assert_eq!(body["market"], serde_json::Value::Null);
        assert_eq!(body["handover"], serde_json::Value::Null);
        assert!(body.as_object().unwrap().contains_key("market"));
        assert!(body.as_object().unwrap().contains_key("handover"));
        // status.history belongs to the history step: never written by omission.
        assert!(!body.as_object().unwrap().contains_key("history"));
    }
}
