//! Micro-benchmarks of the wire encodings every quote goes through: the contract 004 JSON on
//! Redis (plain and CloudEvents) and the POST /quotes/batch body of the storage sink. A
//! measurement, not a test.
//!
//! cargo bench -p quotestream-worker --bench wire

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use quotestream_worker::quote::wire::{CloudEvent, RedisQuote, StorageBatch};
use quotestream_worker::quote::{Quote, RawQuote, validate};

const T0_MS: i64 = 1_768_919_415_123;
const PRODUCER: &str = "/quotestream/markets/sp500/shard-0";

fn symbol(i: usize) -> String {
    [i / 676 % 26, i / 26 % 26, i % 26]
        .iter()
        .map(|d| char::from(b'A' + *d as u8))
        .collect()
}

fn quotes(n: usize) -> Vec<Quote> {
    let now = Timestamp::from_millisecond(T0_MS + 3_600_000).unwrap();
    (0..n)
        .map(|i| {
            let price = 100.0 + (i % 997) as f64 / 100.0;
            validate(
                RawQuote {
                    ticker: symbol(i),
                    timestamp: Timestamp::from_millisecond(T0_MS + i as i64).unwrap(),
                    price,
                    volume: (40_000_000 + i) as f64,
                    bid: Some(price - 0.01),
                    ask: Some(price + 0.01),
                    open: Some(price - 0.5),
                    high: Some(price + 1.0),
                    low: Some(price - 1.0),
                    source: "synthetic",
                },
                now,
            )
            .unwrap()
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let all = quotes(1000);
    let one = &all[7];
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let mut buf = Vec::with_capacity(256);
    g.bench_function("Redis JSON, one quote", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, &RedisQuote::from(black_box(one))).unwrap();
            buf.len()
        })
    });
    g.bench_function("CloudEvent, one quote", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, &CloudEvent::new(black_box(one), PRODUCER)).unwrap();
            buf.len()
        })
    });
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("storage batch body, 1000 quotes", |b| {
        b.iter(|| {
            let (batches, rejected) = StorageBatch::split(black_box(&all), 1000);
            let body = serde_json::to_vec(&batches[0]).unwrap();
            (body.len(), rejected.len())
        })
    });
    g.finish();
}

criterion_group!(wire, benches);
criterion_main!(wire);
