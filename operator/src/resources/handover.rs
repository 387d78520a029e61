//! Make before break: in which order a reshard's shard ConfigMaps are written so that a ticker
//! that changes shard is never unowned.
//!
//! Decided from what the shard ConfigMaps list *now* ([`Previous::listed`]), not from the
//! previous assignment: while a hand-over waits, the new owners' lists are already written (at a
//! newer epoch, so the previous assignment already credits them with the moving tickers), and
//! only the lists show that the old owners still stream them too. So the decision is the same
//! in every reconcile until the hand-over completes.

use std::collections::{BTreeSet, HashMap};

use quotestream_api::Ticker;

use super::plan::StreamPlan;
use super::previous::Previous;

/// The order of one reconcile's writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handover {
    /// Shards whose ConfigMap is written first: those whose planned list has a ticker their
    /// ConfigMap does not list yet (new shards included), and the receivers.
    pub first: BTreeSet<u32>,
    /// Shards that take over a ticker another shard's ConfigMap still lists. Every other shard
    /// keeps its current list — and removed shards keep running — until all of these are ready.
    pub receivers: BTreeSet<u32>,
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
            if planned
                .iter()
                .any(|t| listers(t).iter().any(|s| *s != shard))
            {
                handover.receivers.insert(shard);
                handover.first.insert(shard);
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
}

#[cfg(test)]
mod tests;
