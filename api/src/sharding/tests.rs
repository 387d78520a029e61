//! Property tests of the assignment invariants documented in the module and in docs/sharding.md.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use proptest::prelude::*;

use super::*;

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn set(symbols: &BTreeSet<String>) -> TickerSet {
    TickerSet::from_symbols(symbols).unwrap()
}

fn tickers(max: usize) -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set("[A-Z]{1,5}", 1..max)
}

fn assert_partition(a: &Assignment, t: &TickerSet, n: usize) {
    assert_eq!(a.shard_count(), n);
    let mut all: Vec<&Ticker> = a.shards().iter().flatten().collect();
    all.sort();
    let expected: Vec<&Ticker> = t.iter().collect();
    assert_eq!(
        all, expected,
        "shards must be disjoint and cover every ticker"
    );
}

fn assert_balanced(a: &Assignment, t: usize, n: usize) {
    let (lo, hi) = (t / n, t.div_ceil(n));
    for (i, size) in a.sizes().into_iter().enumerate() {
        assert!(
            (lo..=hi).contains(&size),
            "shard {i} holds {size}, not within [{lo}, {hi}]"
        );
    }
}

#[test]
fn one_shard_holds_everything() {
    let t = TickerSet::from_symbols(["AAPL", "MSFT"]).unwrap();
    assert_eq!(balanced_split(&t, nz(1)).sizes(), [2]);
}

#[test]
fn more_shards_than_tickers_leaves_the_extra_shards_empty() {
    let t = TickerSet::from_symbols(["AAPL", "MSFT"]).unwrap();
    let a = balanced_split(&t, nz(4));
    assert_eq!(a.sizes(), [1, 1, 0, 0]);
    assert_eq!(rebalance(&a, &t, nz(5)).sizes().iter().sum::<usize>(), 2);
}

#[test]
fn stored_state_with_a_ticker_on_two_shards_is_rejected() {
    let t = Ticker::parse("AAPL").unwrap();
    let err = Assignment::from_shards(vec![vec![t.clone()], vec![t]]).unwrap_err();
    assert!(err.to_string().contains("AAPL"), "{err}");
}

#[test]
fn fingerprints_change_only_with_the_shard_they_describe() {
    let t = TickerSet::from_symbols(["AAPL", "MSFT", "NVDA", "GOOGL"]).unwrap();
    let a = balanced_split(&t, nz(2));
    let b = rebalance(
        &a,
        &TickerSet::from_symbols(["AAPL", "MSFT", "NVDA", "GOOGL", "TSLA"]).unwrap(),
        nz(2),
    );
    let changed: Vec<usize> = (0..2)
        .filter(|&i| a.shard_fingerprint(i) != b.shard_fingerprint(i))
        .collect();
    assert_eq!(changed.len(), 1, "only the shard that got TSLA changes");
    assert_ne!(a.fingerprint(), b.fingerprint());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn balanced_split_partitions_and_balances(symbols in tickers(400), n in 1usize..40) {
        let t = set(&symbols);
        let a = balanced_split(&t, nz(n));
        assert_partition(&a, &t, n);
        assert_balanced(&a, t.len(), n);
        prop_assert_eq!(a.clone(), balanced_split(&t, nz(n)), "deterministic");
    }

    #[test]
    fn balanced_split_reshards_minimally(symbols in tickers(400), n in 1usize..40) {
        let t = set(&symbols);
        let (small, big) = (balanced_split(&t, nz(n)), balanced_split(&t, nz(n + 1)));
        prop_assert_eq!(small.moved_to(&big), t.len() / (n + 1), "growing moves ⌊T/(N+1)⌋");
        prop_assert_eq!(big.moved_to(&small), big.sizes()[n], "shrinking moves the last shard");
    }

    #[test]
    fn rebalance_reshards_minimally(symbols in tickers(400), n in 1usize..40) {
        let t = set(&symbols);
        let start = balanced_split(&t, nz(n));
        let grown = rebalance(&start, &t, nz(n + 1));
        assert_partition(&grown, &t, n + 1);
        assert_balanced(&grown, t.len(), n + 1);
        prop_assert_eq!(start.moved_to(&grown), t.len() / (n + 1));
        let shrunk = rebalance(&grown, &t, nz(n));
        assert_partition(&shrunk, &t, n);
        assert_balanced(&shrunk, t.len(), n);
        prop_assert_eq!(grown.moved_to(&shrunk), grown.sizes()[n]);
    }

    #[test]
    fn rebalance_moves_the_minimum_over_any_jump(symbols in tickers(400), from in 1usize..40, to in 1usize..40) {
        let t = set(&symbols);
        let start = balanced_split(&t, nz(from));
        let after = rebalance(&start, &t, nz(to));
        assert_partition(&after, &t, to);
        prop_assert_eq!(start.moved_to(&after), start.minimum_moves(nz(to)), "{} -> {} shards", from, to);
        prop_assert_eq!(start.minimum_moves(nz(from)), 0);
    }

    #[test]
    fn rebalance_list_edits_move_at_most_one_other(
        symbols in tickers(300), n in 1usize..20, extra in "[A-Z]{1,5}", drop in any::<prop::sample::Index>()
    ) {
        let t = set(&symbols);
        let a = balanced_split(&t, nz(n));

        let mut added = symbols.clone();
        if added.insert(extra) {
            let b = rebalance(&a, &set(&added), nz(n));
            assert_balanced(&b, added.len(), n);
            prop_assert_eq!(a.moved_to(&b), 0, "adding a ticker moves no other");
        }
        if symbols.len() > 1 {
            let mut removed = symbols.clone();
            let gone = symbols.iter().nth(drop.index(symbols.len())).unwrap().clone();
            removed.remove(&gone);
            let b = rebalance(&a, &set(&removed), nz(n));
            assert_balanced(&b, removed.len(), n);
            prop_assert!(a.moved_to(&b) <= 1, "removing a ticker moves at most one other");
        }
    }

    #[test]
    fn rebalance_stays_balanced_over_any_history(
        start in tickers(200),
        ops in prop::collection::vec((0u8..4, "[A-Z]{1,5}", any::<prop::sample::Index>()), 1..30),
    ) {
        let mut symbols = start;
        let mut n = 3usize;
        let mut a = balanced_split(&set(&symbols), nz(n));
        for (op, sym, pick) in ops {
            match op {
                0 => { symbols.insert(sym); }
                1 if symbols.len() > 1 => {
                    let gone = symbols.iter().nth(pick.index(symbols.len())).unwrap().clone();
                    symbols.remove(&gone);
                }
                2 => n += 1,
                3 if n > 1 => n -= 1,
                _ => {}
            }
            let t = set(&symbols);
            let before = a.clone();
            a = rebalance(&a, &t, nz(n));
            assert_partition(&a, &t, n);
            assert_balanced(&a, t.len(), n);
            prop_assert!(before.moved_to(&a) <= t.len().div_ceil(n).max(1), "a single step never moves more than one shard's worth");
        }
    }
}
