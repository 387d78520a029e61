//! The difference between what a connection is subscribed to and what the shard owns now.

use quotestream_api::{Ticker, TickerSet};

/// Tickers to subscribe and to unsubscribe to go from `current` to `wanted`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<Ticker>,
    pub removed: Vec<Ticker>,
}

impl Change {
    pub fn between(current: &TickerSet, wanted: &TickerSet) -> Self {
        Self {
            added: wanted
                .iter()
                .filter(|t| !current.contains(t))
                .cloned()
                .collect(),
            removed: current
                .iter()
                .filter(|t| !wanted.contains(t))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(symbols: &[String]) -> TickerSet {
        let refs: Vec<&str> = symbols.iter().map(String::as_str).collect();
        TickerSet::from_symbols(&refs).unwrap_or_default()
    }

    proptest! {
        /// Applying the change to the current set gives exactly the wanted set, and nothing is
        /// both added and removed.
        #[test]
        fn applying_the_change_reaches_the_wanted_set(
            current in proptest::collection::btree_set("[A-Z]{1,4}", 0..40),
            wanted in proptest::collection::btree_set("[A-Z]{1,4}", 0..40),
        ) {
            let current = set(&current.into_iter().collect::<Vec<_>>());
            let wanted = set(&wanted.into_iter().collect::<Vec<_>>());
            let change = Change::between(&current, &wanted);
            let mut after: Vec<Ticker> = current
                .iter()
                .filter(|t| !change.removed.contains(t))
                .cloned()
                .chain(change.added.iter().cloned())
                .collect();
            after.sort();
            let mut expected: Vec<Ticker> = wanted.iter().cloned().collect();
            expected.sort();
            prop_assert_eq!(after, expected);
            prop_assert!(change.added.iter().all(|t| !change.removed.contains(t)));
            prop_assert_eq!(change.is_empty(), current == wanted);
        }
    }
}
