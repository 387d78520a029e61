//! The stateless assignment: "balanced split", a pure function of (ticker set, shard count).

use std::cmp::Reverse;

use super::Assignment;
use super::hash::{key, score};
use crate::ticker::TickerSet;

/// Assigns `tickers` to `shards` shards from scratch.
///
/// Start with every ticker on shard 0. For n = 1..N-1, add shard n: with q, r = divmod(T, n+1),
/// each old shard i keeps q + [i < r] tickers and hands its surplus to shard n, choosing the
/// tickers with the highest `score(t, n)` (ties by ticker bytes ascending).
///
/// Every shard holds ⌊T/N⌋ or ⌈T/N⌉ tickers (the first T mod N shards hold one more), and the
/// result for N+1 differs from the one for N by exactly ⌊T/(N+1)⌋ tickers, all of which move
/// into the new shard.
pub fn balanced_split(tickers: &TickerSet, shards: std::num::NonZeroUsize) -> Assignment {
    let t = tickers.len();
    let keys: Vec<u64> = tickers.iter().map(|x| key(x.as_str())).collect();
    // Shards hold indices into `tickers`; index order equals ticker byte order (the set is sorted).
    let mut members: Vec<Vec<usize>> = vec![(0..t).collect()];
    // One shard's members with their score for the shard being added, reused at every step:
    // each score is computed once per step (a selection compares each element several times),
    // which matters at 100 000 tickers × 1024 shards.
    let mut ranked: Vec<(Reverse<u64>, usize)> = Vec::new();
    for n in 1..shards.get() {
        let (q, r) = (t / (n + 1), t % (n + 1));
        let mut new_shard = Vec::new();
        for (i, shard) in members.iter_mut().enumerate() {
            let keep = q + usize::from(i < r);
            if shard.len() <= keep {
                continue;
            }
            let surplus = shard.len() - keep;
            // Highest score first, ties by ticker ascending: a total order, so the partition
            // below is the same everywhere (the order within a shard never matters).
            ranked.clear();
            ranked.extend(shard.iter().map(|&idx| (Reverse(score(keys[idx], n)), idx)));
            ranked.select_nth_unstable(surplus - 1);
            new_shard.extend(ranked[..surplus].iter().map(|&(_, idx)| idx));
            shard.clear();
            shard.extend(ranked[surplus..].iter().map(|&(_, idx)| idx));
        }
        members.push(new_shard);
    }
    Assignment::from_indices(tickers, members)
}
