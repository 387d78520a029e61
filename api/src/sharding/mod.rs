//! Shard assignment: which shard of a QuoteStream owns which ticker.
//!
//! One definition, used by the operator (to write each shard's ticker list) and by anyone who
//! needs to compute the answer offline (`quotestream-operator assign`). The rule, exactly:
//!
//! - [`balanced_split`] is the assignment of a stream seen for the first time: a pure function of
//!   (ticker set, N). Every shard holds ⌊T/N⌋ or ⌈T/N⌉ tickers; N → N+1 moves exactly ⌊T/(N+1)⌋
//!   tickers (all into the new shard); N → N−1 moves exactly the last shard's tickers.
//! - [`rebalance`] evolves the assignment the operator stored last time (the per-shard ticker
//!   lists in the shard ConfigMaps). It keeps the same balance and reshard minimality and also
//!   makes list edits cheap: adding a ticker moves no other ticker, removing one moves at most
//!   one other (the pure function moves ~14 others at T=503, N=10).
//!
//! Hashes are fixed (XXH64 seed 0, SplitMix64): see [`hash`] and docs/sharding.md.

pub mod hash;
mod rebalance;
mod split;

use std::collections::HashMap;

pub use rebalance::rebalance;
pub use split::balanced_split;

use crate::ticker::{Ticker, TickerSet};

/// Tickers per shard; shard i is `shards()[i]`, each list sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    shards: Vec<Vec<Ticker>>,
}

/// A stored assignment that cannot be used as the previous state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("ticker {ticker} is stored on both shard {first} and shard {second}")]
    DoubleOwnership {
        ticker: Ticker,
        first: usize,
        second: usize,
    },
}

impl Assignment {
    /// Rebuilds an assignment from stored per-shard lists (e.g. read back from the shard
    /// ConfigMaps). A ticker on two shards means the stored state is corrupt.
    pub fn from_shards(mut shards: Vec<Vec<Ticker>>) -> Result<Self, AssignmentError> {
        let mut owner: HashMap<&Ticker, usize> = HashMap::new();
        for (i, list) in shards.iter().enumerate() {
            for t in list {
                if let Some(first) = owner.insert(t, i) {
                    return Err(AssignmentError::DoubleOwnership {
                        ticker: t.clone(),
                        first,
                        second: i,
                    });
                }
            }
        }
        for list in &mut shards {
            list.sort_unstable();
        }
        Ok(Self { shards })
    }

    fn from_indices(tickers: &TickerSet, members: Vec<Vec<usize>>) -> Self {
        let all = tickers.as_slice();
        let shards = members
            .into_iter()
            .map(|mut idx| {
                idx.sort_unstable();
                idx.into_iter().map(|i| all[i].clone()).collect()
            })
            .collect();
        Self { shards }
    }

    pub fn shards(&self) -> &[Vec<Ticker>] {
        &self.shards
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn ticker_count(&self) -> usize {
        self.shards.iter().map(Vec::len).sum()
    }

    pub fn sizes(&self) -> Vec<usize> {
        self.shards.iter().map(Vec::len).collect()
    }

    /// Ticker → shard index.
    pub fn owners(&self) -> HashMap<&Ticker, usize> {
        self.shards
            .iter()
            .enumerate()
            .flat_map(|(i, list)| list.iter().map(move |t| (t, i)))
            .collect()
    }

    /// How many tickers present in both assignments are owned by a different shard in `other`.
    pub fn moved_to(&self, other: &Assignment) -> usize {
        let before = self.owners();
        other
            .owners()
            .into_iter()
            .filter(|(t, shard)| before.get(t).is_some_and(|b| b != shard))
            .count()
    }

    /// The fewest tickers any balanced assignment of the same tickers over `to` shards can move
    /// away from `self`: the tickers of removed shards (index ≥ `to`) plus each remaining
    /// shard's surplus over its target, where the one-larger targets go to the fullest shards.
    /// [`rebalance`] from a balanced assignment moves exactly this many.
    pub fn minimum_moves(&self, to: std::num::NonZeroUsize) -> usize {
        let (n, t) = (to.get(), self.ticker_count());
        let mut sizes = self.sizes();
        let removed: usize = sizes.iter().skip(n).sum();
        sizes.resize(n, 0);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), i));
        let surplus: usize = order
            .iter()
            .enumerate()
            .map(|(rank, &i)| sizes[i].saturating_sub(t / n + usize::from(rank < t % n)))
            .sum();
        removed + surplus
    }

    /// A stable fingerprint of one shard's list (hex XXH64 of the tickers joined by `\n`).
    /// The operator stamps it on the shard's Deployment so an unchanged shard is not rolled.
    pub fn shard_fingerprint(&self, shard: usize) -> String {
        let list = self.shards.get(shard).map(Vec::as_slice).unwrap_or(&[]);
        fingerprint(list.iter().map(Ticker::as_str))
    }

    /// A stable fingerprint of the whole assignment (each shard's fingerprint, in order).
    pub fn fingerprint(&self) -> String {
        let per_shard: Vec<String> = (0..self.shards.len())
            .map(|i| self.shard_fingerprint(i))
            .collect();
        fingerprint(per_shard.iter().map(String::as_str))
    }
}

fn fingerprint<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut text = String::new();
    for p in parts {
        text.push_str(p);
        text.push('\n');
    }
    format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
}

#[cfg(test)]
mod tests;
