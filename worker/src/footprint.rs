//! What a batch of quotes costs in memory, as the sink queues count it against their byte
//! budget. An estimate, but an honest one: the heap blocks a batch owns (the shared
//! `Arc<[Quote]>` block and each ticker's string), each rounded up the way glibc's malloc rounds
//! a request into a chunk, so the figure is what the process's heap gives up for the batch, not
//! only what was asked for. `worker/tests/footprint.rs` checks it against an allocation
//! counter: never below what is allocated, never far above.

use std::mem::size_of;

use crate::quote::Quote;
use crate::sinks::Batch;

/// Bytes of the reference counts in front of the quotes in an `Arc<[Quote]>` block.
const ARC_HEADER: usize = 2 * size_of::<usize>();
/// glibc's malloc: a chunk is the request plus an 8-byte size field, in 16-byte steps, at
/// least 32 bytes; a request this large or larger is served by mmap in whole pages (the
/// default threshold; glibc may raise it, which only makes the rounding smaller).
const MMAP_THRESHOLD: usize = 128 << 10;
const PAGE: usize = 4096;

/// Heap bytes a `request`-byte allocation takes (0 for none: empty strings do not allocate).
pub fn heap_block(request: usize) -> usize {
    if request == 0 {
        0
    } else if request >= MMAP_THRESHOLD {
        (request + 16).next_multiple_of(PAGE)
    } else {
        (request + 8).next_multiple_of(16).max(32)
    }
}

/// Heap bytes of one quote outside the batch block: its ticker (a `String` whose capacity is
/// its length; `Ticker::parse` and `clone` allocate exactly that).
pub fn quote_heap(quote: &Quote) -> usize {
    heap_block(quote.ticker.as_str().len())
}

/// Bytes a batch holds, plus its slot in a queue: what a queue counts for it.
pub fn batch_bytes(batch: &Batch) -> usize {
    size_of::<Batch>()
        + heap_block(ARC_HEADER + batch.len() * size_of::<Quote>())
        + batch.iter().map(quote_heap).sum::<usize>()
}

/// A budget with room for at least `quotes` quotes of tickers up to 8 characters, whatever
/// their batches: each quote counted as a batch of its own (exactly what single-quote batches
/// cost; larger batches share a block, so more of their quotes fit). For tests and benchmarks
/// that think in quotes.
pub fn budget_for_quotes(quotes: usize) -> usize {
    quotes * (size_of::<Batch>() + heap_block(ARC_HEADER + size_of::<Quote>()) + heap_block(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_blocks_round_like_glibc_chunks_and_large_ones_to_pages() {
        assert_eq!(heap_block(0), 0);
        assert_eq!(heap_block(1), 32, "the smallest chunk");
        assert_eq!(heap_block(24), 32);
        assert_eq!(heap_block(25), 48);
        assert_eq!(heap_block(1000), 1008);
        assert_eq!(
            heap_block(200_000),
            200_704,
            "an mmapped block: whole pages"
        );
    }

    #[test]
    fn a_batch_counts_its_block_and_its_tickers() {
        let batch = crate::queue::tests::batch(10);
        let block = heap_block(ARC_HEADER + 10 * size_of::<Quote>());
        assert_eq!(batch_bytes(&batch), size_of::<Batch>() + block + 10 * 32);
        assert_eq!(
            budget_for_quotes(7),
            7 * batch_bytes(&crate::queue::tests::batch(1))
        );
        for n in [2, 10, 100, 1000] {
            assert!(budget_for_quotes(n) >= batch_bytes(&crate::queue::tests::batch(n)));
        }
    }
}
