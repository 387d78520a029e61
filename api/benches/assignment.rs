//! Micro-benchmarks of the shard assignment the operator computes on every reconcile:
//! `balanced_split` (a stream seen for the first time) and `rebalance` (from the stored
//! assignment, after a shard-count change or a ticker-list edit). A measurement, not a test.
//!
//! cargo bench -p quotestream-api --bench assignment

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroUsize;

use criterion::{Criterion, criterion_group, criterion_main};
use quotestream_api::TickerSet;
use quotestream_api::sharding::{balanced_split, rebalance};

/// `n` distinct symbols AAA, AAB, … (four letters beyond 17 576).
fn tickers(n: usize) -> TickerSet {
    let symbols: Vec<String> = (0..n)
        .map(|i| {
            let len = if i < 17_576 { 3 } else { 4 };
            (0..len)
                .rev()
                .map(|k| char::from(b'A' + (i / 26usize.pow(k) % 26) as u8))
                .collect()
        })
        .collect();
    TickerSet::from_symbols(&symbols).unwrap()
}

fn shards(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("assignment");
    for n in [503, 10_000] {
        let set = tickers(n);
        g.bench_function(format!("balanced_split, {n} tickers, 10 shards"), |b| {
            b.iter(|| balanced_split(black_box(&set), shards(10)))
        });
        let stored = balanced_split(&set, shards(10));
        g.bench_function(format!("rebalance {n} tickers, 10 → 11 shards"), |b| {
            b.iter(|| rebalance(black_box(&stored), &set, shards(11)))
        });
        let edited = tickers(n + 1);
        g.bench_function(format!("rebalance {n} tickers + 1 added, 10 shards"), |b| {
            b.iter(|| rebalance(black_box(&stored), &edited, shards(10)))
        });
    }
    g.finish();
}

criterion_group!(assignment, benches);
criterion_main!(assignment);
