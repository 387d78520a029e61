//! The stateful assignment: evolve the previous assignment to a new ticker set and shard count
//! while moving as few tickers as balance allows.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::num::NonZeroUsize;

use super::Assignment;
use super::hash::{key, score};
use super::split::balanced_split;
use crate::ticker::{Ticker, TickerSet};

/// Evolves `previous` to `tickers` over `shards` shards.
///
/// 1. Every ticker still listed stays where it was if its shard still exists; new tickers and
///    the tickers of removed shards (index ≥ N) form the pool.
/// 2. Targets: with q, r = divmod(T, N), the r shards that currently hold the most tickers
///    (ties: lower index first) may keep q + 1, the others q.
/// 3. A shard above its target sheds its surplus into the pool, choosing the tickers that most
///    prefer a shard below its target (highest `max score(t, j)` over those shards j; ties by
///    ticker ascending).
/// 4. The pool, in ticker order, goes to the shard below target with the highest `score(t, j)`.
///
/// With a balanced `previous` this moves exactly the minimum: ⌊T/(N+1)⌋ tickers on N → N+1,
/// the removed shard's tickers on N → N−1, no other ticker when one is added, and at most one
/// other ticker when one is removed. With no previous assignment it is [`balanced_split`].
pub fn rebalance(previous: &Assignment, tickers: &TickerSet, shards: NonZeroUsize) -> Assignment {
    if previous.ticker_count() == 0 {
        return balanced_split(tickers, shards);
    }
    let n = shards.get();
    let index_of: HashMap<&Ticker, usize> =
        tickers.iter().enumerate().map(|(i, t)| (t, i)).collect();
    let keys: Vec<u64> = tickers.iter().map(|t| key(t.as_str())).collect();

    // 1. Keep what can stay.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut placed = vec![false; tickers.len()];
    for (shard, list) in previous.shards().iter().enumerate().take(n) {
        for t in list {
            if let Some(&idx) = index_of.get(t) {
                members[shard].push(idx);
                placed[idx] = true;
            }
        }
    }
    let mut pool: Vec<usize> = (0..tickers.len()).filter(|&i| !placed[i]).collect();

    // 2. Targets: the extra slots go to the largest shards, so nobody sheds to refill another.
    let (q, r) = (tickers.len() / n, tickers.len() % n);
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by_key(|&s| (Reverse(members[s].len()), s));
    let mut target = vec![q; n];
    for &s in by_size.iter().take(r) {
        target[s] = q + 1;
    }

    // 3. Shed surplus towards the shards that need tickers.
    let deficit: Vec<usize> = (0..n).filter(|&s| members[s].len() < target[s]).collect();
    let preference = |idx: usize| {
        deficit
            .iter()
            .map(|&j| score(keys[idx], j))
            .max()
            .unwrap_or(0)
    };
    for (shard, list) in members.iter_mut().enumerate() {
        if list.len() > target[shard] {
            let surplus = list.len() - target[shard];
            // Each preference computed once (a selection compares an element several times).
            let mut ranked: Vec<(Reverse<u64>, usize)> = list
                .iter()
                .map(|&idx| (Reverse(preference(idx)), idx))
                .collect();
            ranked.select_nth_unstable(surplus - 1);
            pool.extend(ranked[..surplus].iter().map(|&(_, idx)| idx));
            *list = ranked[surplus..].iter().map(|&(_, idx)| idx).collect();
        }
    }

    // 4. Fill the shards below target.
    pool.sort_unstable();
    let mut room: Vec<usize> = (0..n)
        .map(|s| target[s].saturating_sub(members[s].len()))
        .collect();
    for idx in pool {
        let best = (0..n)
            .filter(|&s| room[s] > 0)
            .max_by_key(|&s| (score(keys[idx], s), Reverse(s)));
        // The targets add up to T, so a shard with room always exists for a pooled ticker.
        if let Some(s) = best {
            members[s].push(idx);
            room[s] -= 1;
        }
    }
    Assignment::from_indices(tickers, members)
}
