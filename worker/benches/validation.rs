//! Micro-benchmark of contract validation (`quote::validate`) and of the pipeline stage that
//! runs it on every batch (validation + per-ticker de-duplication). A measurement, not a test.
//!
//! cargo bench -p quotestream-worker --bench validation

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use quotestream_worker::metrics::Metrics;
use quotestream_worker::pipeline::Stage;
use quotestream_worker::quote::{RawQuote, validate};

const T0_MS: i64 = 1_768_919_415_123;
const BATCH: usize = 1000;

fn symbol(i: usize) -> String {
    [i / 676 % 26, i / 26 % 26, i % 26]
        .iter()
        .map(|d| char::from(b'A' + *d as u8))
        .collect()
}

/// A synthetic-source quote: every optional field present, as the synthetic and yahoo sources
/// deliver them.
fn raw(i: usize, round: i64) -> RawQuote {
    let price = 100.0 + (i % 997) as f64 / 100.0;
    RawQuote {
        ticker: symbol(i),
        timestamp: Timestamp::from_millisecond(T0_MS + round * 1000).unwrap(),
        price,
        volume: (1_000_000 + i) as f64,
        bid: Some(price - 0.01),
        ask: Some(price + 0.01),
        open: Some(price - 0.5),
        high: Some(price + 1.0),
        low: Some(price - 1.0),
        source: "synthetic",
    }
}

fn benches(c: &mut Criterion) {
    let now = Timestamp::from_millisecond(T0_MS + 3_600_000).unwrap();
    let mut g = c.benchmark_group("validation");
    g.throughput(Throughput::Elements(1));
    g.bench_function("validate one quote", |b| {
        b.iter_batched(
            || raw(42, 0),
            |r| validate(black_box(r), now),
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut stage = Stage::new(Metrics::new("bench", 0).unwrap());
    let mut round = 0;
    g.bench_function("pipeline stage, batch of 1000 (validate + dedupe)", |b| {
        b.iter_batched(
            || {
                round += 1;
                (0..BATCH).map(|i| raw(i, round)).collect::<Vec<_>>()
            },
            |batch| stage.accept(black_box(batch), now),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(validation, benches);
criterion_main!(validation);
