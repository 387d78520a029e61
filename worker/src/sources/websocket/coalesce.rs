//! `spec.source.coalesce`: at most one quote per ticker per window, the latest one.
//!
//! A burst of ticks for one symbol within a window becomes its last tick (price, bid/ask and
//! cumulative volume are all "latest wins" values, so nothing is lost by folding). Quotes of
//! different tickers are independent.

use std::collections::HashMap;

use crate::quote::RawQuote;

#[derive(Debug, Default)]
pub struct Coalescer {
    pending: HashMap<String, RawQuote>,
    /// Ticks folded into a later one since the last [`Coalescer::take_folded`].
    folded: u64,
}

impl Coalescer {
    /// Keeps the newest quote of each ticker (by timestamp; on a tie the later arrival).
    pub fn add(&mut self, quotes: impl IntoIterator<Item = RawQuote>) {
        for quote in quotes {
            match self.pending.get_mut(&quote.ticker) {
                Some(held) => {
                    self.folded += 1;
                    if quote.timestamp >= held.timestamp {
                        *held = quote;
                    }
                }
                None => {
                    self.pending.insert(quote.ticker.clone(), quote);
                }
            }
        }
    }

    /// The window ends: everything held, one quote per ticker.
    pub fn drain(&mut self) -> Vec<RawQuote> {
        self.pending.drain().map(|(_, q)| q).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// How many ticks were folded since the last call.
    pub fn take_folded(&mut self) -> u64 {
        std::mem::take(&mut self.folded)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use proptest::prelude::*;

    use super::*;

    fn quote(ticker: &str, ms: i64, price: f64) -> RawQuote {
        RawQuote::trade(
            ticker,
            Timestamp::from_millisecond(ms).unwrap(),
            price,
            0.0,
            "test",
        )
    }

    #[test]
    fn keeps_the_latest_quote_of_each_ticker() {
        let mut c = Coalescer::default();
        c.add([
            quote("AAPL", 1, 1.0),
            quote("MSFT", 1, 5.0),
            quote("AAPL", 3, 3.0),
        ]);
        // A late straggler does not overwrite a newer quote.
        c.add([quote("AAPL", 2, 2.0)]);
        let mut out = c.drain();
        out.sort_by(|a, b| a.ticker.cmp(&b.ticker));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].ticker.as_str(), out[0].price), ("AAPL", 3.0));
        assert_eq!((out[1].ticker.as_str(), out[1].price), ("MSFT", 5.0));
        assert_eq!(c.take_folded(), 2);
        assert!(c.is_empty());
    }

    proptest! {
        /// One quote per ticker comes out, and it is the newest that went in.
        #[test]
        fn one_quote_per_ticker_the_newest(ticks in proptest::collection::vec((0..5usize, 0..1000i64), 0..200)) {
            let names = ["A", "B", "C", "D", "E"];
            let mut c = Coalescer::default();
            c.add(ticks.iter().map(|&(t, ms)| quote(names[t], ms, 1.0)));
            let out = c.drain();
            for name in names {
                let newest = ticks.iter().filter(|(t, _)| names[*t] == name).map(|(_, ms)| *ms).max();
                let got: Vec<_> = out.iter().filter(|q| q.ticker == name).collect();
                prop_assert_eq!(got.len(), usize::from(newest.is_some()));
                if let Some(ms) = newest {
                    prop_assert_eq!(got[0].timestamp.as_millisecond(), ms);
                }
            }
        }
    }
}
