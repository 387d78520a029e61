//! The fixed hash functions of the shard assignment. They must never change: every process on
//! every platform has to compute the same scores (golden vectors in `api/tests/`).

use xxhash_rust::xxh64::xxh64;

/// A ticker's key: XXH64 of its canonical ASCII form with seed 0.
pub fn key(ticker: &str) -> u64 {
    xxh64(ticker.as_bytes(), 0)
}

/// The SplitMix64 finaliser: a cheap bijective mixer, so `mix64(0) == 0`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rendezvous score of a ticker key for a shard: higher means "prefers this shard".
pub fn score(key: u64, shard: usize) -> u64 {
    mix64(key ^ mix64(shard as u64 + 1))
}
