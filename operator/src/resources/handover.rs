//! Make before break: in which order a reshard's shard ConfigMaps are written so that a ticker
//! that changes shard is never unowned.
//!
//! Decided from what the shard ConfigMaps list *now* ([`Previous::listed`]), not from the
//! previous assignment: while a hand-over waits, the new owners' lists are already written (at a
//! newer epoch, so the previous assignment already credits them with the moving tickers), and
//! only the lists show that the old owners still stream them too. So the decision is the same
//! in every reconcile until the hand-over completes.
//!
//! The old owners let go only once every receiver is ready *and has acknowledged* its new list:
//! a ready pod of the shard serves, on `/assignment`, the fingerprint of the list it streams
//! ([`quotestream_api::worker_config::AppliedList`]), equal to the one the operator wrote. Ready
//! alone is not enough: kubelet refreshes a mounted ConfigMap up to a minute late, so a ready
//! shard may still stream its old list.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use quotestream_api::Ticker;
use quotestream_api::crd::HandoverStatus;

use super::plan::StreamPlan;
use super::previous::Previous;

/// How long ready receivers may stay unacknowledged before their old owners are released
/// anyway (`--handover-timeout`, with a Warning Event): longer than kubelet's ConfigMap refresh
/// (up to about two minutes with the default sync period and cache TTL), short enough that a
/// reshard in a cluster whose NetworkPolicy keeps the operator from the workers completes.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(300);

/// The order of one reconcile's writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handover {
    /// Shards whose ConfigMap is written first: those whose planned list has a ticker their
    /// ConfigMap does not list yet (new shards included), and the receivers.
    pub first: BTreeSet<u32>,
    /// Shards that take over a ticker another shard's ConfigMap still lists. Every other shard
    /// keeps its current list — and removed shards keep running — until all of these are ready
    /// and have acknowledged their new lists.
    pub receivers: BTreeSet<u32>,
    /// Per receiver, how many of its planned tickers another shard's ConfigMap still lists.
    pub moving: BTreeMap<u32, usize>,
}

/// What a reconcile does with the shards that would let tickers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Keep every ticker where it is listed: a receiver is not ready, or has not acknowledged
    /// its list yet (both listed).
    Wait {
        not_ready: Vec<u32>,
        unacknowledged: Vec<u32>,
    },
    /// Every receiver streams its new list: the others may let go (also when nothing moves).
    Acknowledged,
    /// The receivers are ready but some did not acknowledge within the timeout (their
    /// `/assignment` unreachable, say, a NetworkPolicy without the operator's rule): released
    /// anyway, so that a reshard cannot hang, with a warning; the gap is then not known.
    TimedOut { unacknowledged: Vec<u32> },
}

impl Handover {
    pub fn new(plan: &StreamPlan, previous: Option<&Previous>) -> Self {
        let mut listed_by: HashMap<&Ticker, Vec<u32>> = HashMap::new();
        if let Some(previous) = previous {
            for (shard, list) in &previous.listed {
                for t in list {
                    listed_by.entry(t).or_default().push(*shard);
                }
            }
        }
        let mut handover = Self::default();
        for (shard, planned) in plan.assignment.shards().iter().enumerate() {
            let Ok(shard) = u32::try_from(shard) else {
                continue;
            };
            let listers = |t: &Ticker| listed_by.get(t).map(Vec::as_slice).unwrap_or(&[]);
            let moving = planned
                .iter()
                .filter(|t| listers(t).iter().any(|s| *s != shard))
                .count();
            if moving > 0 {
                handover.receivers.insert(shard);
                handover.first.insert(shard);
                handover.moving.insert(shard, moving);
            }
            if planned.iter().any(|t| !listers(t).contains(&shard)) {
                handover.first.insert(shard);
            }
        }
        handover
    }

    /// Whether the other shards may let go now, given which shards' workers are ready.
    pub fn may_release(&self, ready: impl Fn(u32) -> bool) -> bool {
        self.receivers.iter().all(|s| ready(*s))
    }

    /// `status.handover` while the old owners wait for the receivers (`release`), None once
    /// they may let go or when nothing moves. `began`: when the wait began; `timeout`: the
    /// operator's --handover-timeout (zero: acknowledgement off, no deadline).
    pub fn status(
        &self,
        release: &Release,
        began: Option<jiff::Timestamp>,
        timeout: Duration,
    ) -> Option<HandoverStatus> {
        let Release::Wait {
            not_ready,
            unacknowledged,
        } = release
        else {
            return None;
        };
        if self.receivers.is_empty() {
            return None;
        }
        let release_by = began
            .filter(|_| !timeout.is_zero())
            .and_then(|b| b.checked_add(timeout).ok());
        Some(HandoverStatus {
            moving_tickers: i32::try_from(self.moving_tickers()).unwrap_or(i32::MAX),
            receivers: shard_list(&self.receivers),
            not_ready: shard_list(not_ready),
            // A receiver that is not ready cannot have acknowledged either: listed once, as
            // not ready.
            unacknowledged: shard_list(unacknowledged.iter().filter(|s| !not_ready.contains(s))),
            since: began.map(rfc3339),
            release_by: release_by.map(rfc3339),
        })
    }

    /// Tickers that are listed twice until this hand-over completes.
    pub fn moving_tickers(&self) -> usize {
        self.moving.values().sum()
    }

    /// Whether the other shards may let go now: every receiver ready (its Deployment) and
    /// acknowledged (a ready pod streams the list written for it), or, once the hand-over has
    /// waited `timeout`, ready alone.
    pub fn decide(
        &self,
        ready: impl Fn(u32) -> bool,
        acknowledged: impl Fn(u32) -> bool,
        waited: Duration,
        timeout: Duration,
    ) -> Release {
        let not_ready: Vec<u32> = self
            .receivers
            .iter()
            .copied()
            .filter(|s| !ready(*s))
            .collect();
        let unacknowledged: Vec<u32> = self
            .receivers
            .iter()
            .copied()
            .filter(|s| !acknowledged(*s))
            .collect();
        match (not_ready.is_empty(), unacknowledged.is_empty()) {
            (true, true) => Release::Acknowledged,
            (true, false) if waited >= timeout => Release::TimedOut { unacknowledged },
            _ => Release::Wait {
                not_ready,
                unacknowledged,
            },
        }
    }
}

/// Shard indices as the status lists them.
fn shard_list<'a>(shards: impl IntoIterator<Item = &'a u32>) -> Vec<i32> {
    shards
        .into_iter()
        .map(|&i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect()
}

/// A time for the status: RFC 3339 in UTC, whole seconds.
fn rfc3339(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

#[cfg(test)]
mod tests;
