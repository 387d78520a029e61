//! What a reshard may and must do to the per-shard ticker lists, checked against the shared
//! assignment function (`quotestream_api::sharding`): the lists after it are exactly
//! `rebalance(before, tickers, N)`, that moves the minimum, and while it runs every ticker is
//! in its old owner's list, its new owner's, or both (make before break) — never in nobody's,
//! never in a third shard's.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;

use quotestream_api::sharding::{Assignment, rebalance};
use quotestream_api::{Ticker, TickerSet};

/// shard index → tickers, as [`super::cluster::assignment`] reads them.
pub type Lists = BTreeMap<u32, BTreeSet<String>>;

fn to_assignment(lists: &Lists) -> Assignment {
    let count = lists
        .keys()
        .next_back()
        .map_or(0, |last| *last as usize + 1);
    let mut shards = vec![Vec::new(); count];
    for (shard, tickers) in lists {
        shards[*shard as usize] = tickers.iter().map(|t| Ticker::parse(t).unwrap()).collect();
    }
    Assignment::from_shards(shards).unwrap()
}

fn to_lists(a: &Assignment) -> Lists {
    a.shards()
        .iter()
        .enumerate()
        .map(|(i, list)| {
            let tickers = list.iter().map(|t| t.as_str().to_owned()).collect();
            (u32::try_from(i).unwrap(), tickers)
        })
        .collect()
}

/// ticker → its shard.
pub fn owners(lists: &Lists) -> BTreeMap<String, u32> {
    lists
        .iter()
        .flat_map(|(shard, tickers)| tickers.iter().map(|t| (t.clone(), *shard)))
        .collect()
}

/// A settled assignment: every ticker on exactly one shard (no hand-over in progress).
pub fn is_settled(lists: &Lists, tickers: usize) -> bool {
    lists.values().map(BTreeSet::len).sum::<usize>() == tickers && owners(lists).len() == tickers
}

/// The plan of a reshard of the settled `before` to `shards` shards.
#[derive(Debug, Clone)]
pub struct Reshard {
    pub before: Lists,
    /// `rebalance(before, tickers, shards)`: what the operator must write.
    pub after: Lists,
    /// The tickers whose owner changes.
    pub moved: BTreeSet<String>,
    /// The fewest tickers any balanced assignment could have moved.
    pub minimum: usize,
}

impl Reshard {
    pub fn plan(before: &Lists, shards: usize) -> Self {
        let previous = to_assignment(before);
        let symbols: Vec<&str> = before.values().flatten().map(String::as_str).collect();
        let tickers = TickerSet::from_symbols(&symbols).unwrap();
        let n = NonZeroUsize::new(shards).unwrap();
        let after = to_lists(&rebalance(&previous, &tickers, n));
        let (old, new) = (owners(before), owners(&after));
        let moved = new
            .iter()
            .filter(|(t, s)| old[*t] != **s)
            .map(|(t, _)| t.clone())
            .collect();
        Self {
            before: before.clone(),
            after,
            moved,
            minimum: previous.minimum_moves(n),
        }
    }

    /// Checks one observation of the lists during the reshard: every ticker is listed by its
    /// old owner, its new owner or both, and by no other shard; shards beyond both shard counts
    /// do not exist. Returns what is wrong.
    pub fn check(&self, observed: &Lists) -> Result<(), String> {
        let (old, new) = (owners(&self.before), owners(&self.after));
        let mut listed: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        for (shard, tickers) in observed {
            for t in tickers {
                listed.entry(t).or_default().insert(*shard);
            }
        }
        let mut wrong = Vec::new();
        for (ticker, old_owner) in &old {
            let allowed = BTreeSet::from([*old_owner, new[ticker]]);
            match listed.get(ticker.as_str()) {
                None => wrong.push(format!("{ticker} is on no shard")),
                Some(on) if !on.is_subset(&allowed) => wrong.push(format!(
                    "{ticker} is on shards {on:?}; only {allowed:?} (old and new owner) may list it"
                )),
                Some(_) => {}
            }
        }
        let shards = self.before.len().max(self.after.len());
        for shard in observed.keys().filter(|s| **s as usize >= shards) {
            wrong.push(format!("shard {shard} exists, beyond both shard counts"));
        }
        for ticker in listed.keys() {
            if !old.contains_key(*ticker) {
                wrong.push(format!("{ticker} is not one of the stream's tickers"));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\nobserved: {observed:?}", wrong.join("\n")))
        }
    }

    /// Tickers listed twice in `observed` (the make-before-break overlap).
    pub fn overlap(observed: &Lists) -> usize {
        let total: usize = observed.values().map(BTreeSet::len).sum();
        total - owners(observed).len()
    }
}
