//! `spec.autoscale`: the shard count follows the ticker count.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Shards from the ticker count (docs/operator.md, "Autoscaling on tickers"): the operator runs
/// ceil(tickers / tickersPerShard) shards, at least spec.shards (what `kubectl scale` and an
/// HPA set: they can add shards, not remove the ones the ticker count needs), within
/// [minShards, maxShards] and never more shards than tickers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.minShards) || !has(self.maxShards) || self.minShards <= self.maxShards")
    .message("spec.autoscale.minShards must not exceed spec.autoscale.maxShards: lower minShards or raise maxShards")
    .field_path(".minShards"))]
#[serde(rename_all = "camelCase")]
pub struct Autoscale {
    /// The most tickers one shard should hold, 1-100000 (e.g. 300).
    #[schemars(range(min = 1, max = 100_000))]
    pub tickers_per_shard: i32,
    /// The fewest shards, whatever the ticker count (default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub min_shards: i32,
    /// The most shards, whatever the ticker count (default 1024).
    #[serde(default = "most")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_shards: i32,
}

fn one() -> i32 {
    1
}

fn most() -> i32 {
    super::MAX_SHARDS
}

impl Autoscale {
    /// The shard count for `tickers` tickers when spec.shards is `requested`.
    pub fn shards_for(&self, tickers: usize, requested: i32) -> usize {
        let per_shard = usize::try_from(self.tickers_per_shard).unwrap_or(1).max(1);
        let bound = |v: i32| usize::try_from(v).unwrap_or(1).max(1);
        let (min, max) = (
            bound(self.min_shards),
            bound(self.max_shards).max(bound(self.min_shards)),
        );
        tickers
            .div_ceil(per_shard)
            .max(bound(requested))
            .clamp(min, max)
            .min(tickers)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn autoscale(per_shard: i32, min: i32, max: i32) -> Autoscale {
        Autoscale {
            tickers_per_shard: per_shard,
            min_shards: min,
            max_shards: max,
        }
    }

    #[test]
    fn shards_follow_the_ticker_count() {
        let a = autoscale(300, 1, 64);
        assert_eq!(a.shards_for(300, 1), 1);
        assert_eq!(a.shards_for(301, 1), 2);
        assert_eq!(a.shards_for(3000, 1), 10);
        // spec.shards (an HPA, kubectl scale) adds shards, but cannot go below the need.
        assert_eq!(a.shards_for(3000, 12), 12);
        assert_eq!(a.shards_for(3000, 2), 10);
        // maxShards caps, minShards floors, and a shard needs a ticker.
        assert_eq!(a.shards_for(100_000, 1), 64);
        assert_eq!(autoscale(300, 4, 64).shards_for(300, 1), 4);
        assert_eq!(autoscale(300, 4, 64).shards_for(3, 1), 3);
    }

    proptest! {
        #[test]
        fn the_count_stays_in_its_bounds(
            tickers in 1usize..200_000,
            per_shard in 1i32..100_000,
            min in 1i32..1024,
            span in 0i32..1024,
            requested in 1i32..1024,
        ) {
            let max = (min + span).min(1024);
            let a = autoscale(per_shard, min, max);
            let n = a.shards_for(tickers, requested);
            prop_assert!(n >= 1 && n <= tickers);
            prop_assert!(n <= max as usize);
            prop_assert!(n >= (min as usize).min(tickers));
            // Within the bounds every shard holds at most tickersPerShard tickers.
            if (n as i32) < max {
                prop_assert!(tickers.div_ceil(n) <= per_shard as usize);
            }
            // More tickers never mean fewer shards.
            prop_assert!(a.shards_for(tickers + 1, requested) >= n);
        }
    }
}
