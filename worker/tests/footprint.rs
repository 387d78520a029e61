//! The byte estimate the sink queues count (`footprint::batch_bytes`) against an allocation
//! counter (dhat as this test binary's allocator): a batch never owns more heap than the
//! estimate says, and the estimate is not far above what it owns (the difference is malloc's
//! chunk rounding, which the estimate models and the counter does not see).

use std::mem::size_of;

use quotestream_worker::footprint::batch_bytes;
use quotestream_worker::quote::{RawQuote, validate};
use quotestream_worker::sinks::Batch;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn raw(ticker: &str, i: usize, now: jiff::Timestamp) -> RawQuote {
    let price = 100.0 + i as f64 / 100.0;
    RawQuote {
        ticker: ticker.to_owned(),
        timestamp: now - jiff::SignedDuration::from_millis(i as i64),
        price,
        volume: 1_000.0 + i as f64,
        bid: Some(price - 0.01),
        ask: Some(price + 0.01),
        open: Some(price - 1.0),
        high: Some(price + 1.0),
        low: Some(price - 2.0),
        source: "replay",
    }
}

/// Heap bytes `batch` owns: what dropping it frees.
fn owned(batch: Batch) -> u64 {
    let before = dhat::HeapStats::get().curr_bytes as u64;
    drop(batch);
    before - dhat::HeapStats::get().curr_bytes as u64
}

#[test]
fn the_estimate_covers_what_a_batch_allocates_and_not_much_more() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let now = jiff::Timestamp::now();
    for (ticker, n) in [
        ("A", 1),
        ("AAPL", 10),
        ("BRK.B", 100),
        ("GOOGL", 1_000),
        ("MSFT", 5_000),
    ] {
        let batch: Batch = (0..n)
            .map(|i| validate(raw(ticker, i, now), now).unwrap())
            .collect::<Vec<_>>()
            .into();
        let estimate = (batch_bytes(&batch) - size_of::<Batch>()) as u64;
        let owned = owned(batch);
        assert!(
            owned <= estimate,
            "{n} × {ticker}: owns {owned} bytes, estimated {estimate}"
        );
        assert!(
            estimate <= owned * 5 / 4 + 64,
            "{n} × {ticker}: estimated {estimate} bytes for {owned} owned: not honest either"
        );
    }
}
