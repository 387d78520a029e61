//! Per-ticker state. A quote carries the last trade price, the top of the book and the day's
//! volume, open, high and low; Massive sends those in separate events (`T` trades, `Q` quotes,
//! `AM` minute aggregates). The book keeps the latest of each per ticker so that every trade,
//! and every book update once a trade price is known, becomes a complete quote.
//!
//! - **Day volume** is the `av` of the newest aggregate plus the sizes of the trades after
//!   that aggregate's window: exact at each minute, a running count in between. Before the
//!   first aggregate of a day it counts only the trades seen.
//! - **Open** is the aggregate's `op` (the official day open). **High/low** are the extremes of
//!   the trades and minute bars seen today: a worker started mid-day reports the range since
//!   it started.
//! - A **new trading day** (the first event dated on it, in New York:
//!   [`crate::sources::trading_day`]) clears volume, open, high, low and the
//!   book; the last trade price stays (pre-market quotes show the previous close, as Yahoo's do).
//! - **Out of order**: a trade older than the ticker's last trade, or a book update older than
//!   its last one, is dropped (it would publish a stale price as the newest).
//! - Values a sane vendor never sends (a price ≤ 0) are not kept: the quote they arrive in
//!   carries them so that validation counts and drops it, and the next quote is clean again.
//!
//! The state describes the market, not a connection, so it survives reconnects.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::quote::RawQuote;
use crate::sources::trading_day::TradingDays;

/// The `source` of the quotes (contracts 001 and 004).
pub const SOURCE: &str = "polygon";

/// Tickers the book remembers: twice the most a shard can be assigned (10 000 inline), so a
/// server sending endless symbols cannot grow it without bound. Symbols beyond this still
/// produce quotes, from their own event alone (the connection drops unsubscribed ones anyway).
const MAX_TICKERS: usize = 20_000;

fn usable(price: f64) -> bool {
    price.is_finite() && price > 0.0
}

/// What an event did to the book.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A quote to deliver.
    Quote(RawQuote),
    /// The state was updated (or the event was stale); nothing to deliver.
    Held,
    /// Unusable: a reason (metric label) and a detail for the log.
    Malformed(&'static str, String),
}

#[derive(Debug, Clone, Copy)]
struct Trade {
    price: f64,
    ms: i64,
}

#[derive(Debug, Clone, Default)]
struct TickerState {
    day: Option<Date>,
    trade: Option<Trade>,
    /// Time of the last book update.
    book_ms: i64,
    bid: Option<f64>,
    ask: Option<f64>,
    volume: f64,
    /// End of the aggregate window `volume` was last set from; later trades add to it.
    volume_as_of: i64,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
}

impl TickerState {
    /// Moves to `day` if it is a later one than the state's.
    fn roll(&mut self, day: Date) {
        if self.day.is_none_or(|current| day > current) {
            *self = Self {
                day: Some(day),
                trade: self.trade,
                ..Self::default()
            };
        }
    }

    fn extend_range(&mut self, high: f64, low: f64) {
        self.high = Some(self.high.map_or(high, |h| h.max(high)));
        self.low = Some(self.low.map_or(low, |l| l.min(low)));
    }

    fn quote(&self, ticker: &str, timestamp: Timestamp, price: f64) -> RawQuote {
        RawQuote {
            ticker: ticker.to_owned(),
            timestamp,
            price,
            volume: self.volume,
            bid: self.bid,
            ask: self.ask,
            open: self.open,
            high: self.high,
            low: self.low,
            source: SOURCE,
        }
    }
}

/// A book update: the best bid and ask (`None`: that side is empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Top {
    pub bid: Option<f64>,
    pub ask: Option<f64>,
}

/// A minute (or second) aggregate's day-level fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// `av`: the day's accumulated volume up to the window's end.
    pub day_volume: f64,
    /// `op`: the day's official open.
    pub day_open: Option<f64>,
    /// The bar's `h` and `l`.
    pub high: Option<f64>,
    pub low: Option<f64>,
    /// `e`: the window's end, Unix ms.
    pub end_ms: i64,
}

/// Every ticker's state.
#[derive(Default)]
pub struct Book {
    tickers: HashMap<String, TickerState>,
    days: TradingDays,
}

// Thousands of entries are no use in a debug print.
impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book")
            .field("tickers", &self.tickers.len())
            .finish()
    }
}

impl Book {
    /// The ticker's state, created on first sight while there is room.
    fn state(&mut self, ticker: &str) -> Option<&mut TickerState> {
        if !self.tickers.contains_key(ticker) {
            if self.tickers.len() >= MAX_TICKERS {
                return None;
            }
            self.tickers
                .insert(ticker.to_owned(), TickerState::default());
        }
        self.tickers.get_mut(ticker)
    }

    /// A trade: always a quote (unless out of order).
    pub fn trade(&mut self, ticker: &str, price: f64, size: f64, time: Timestamp) -> Outcome {
        let day = self.days.of(time);
        let mut scratch = TickerState::default();
        let state = match self.state(ticker) {
            Some(state) => state,
            None => &mut scratch,
        };
        let ms = time.as_millisecond();
        if let Some(last) = state.trade
            && ms < last.ms
        {
            return Outcome::Malformed(
                "out_of_order",
                format!(
                    "{ticker}: trade at {time} is older than the last one ({} ms)",
                    last.ms
                ),
            );
        }
        state.roll(day);
        if !usable(price) {
            return Outcome::Quote(state.quote(ticker, time, price));
        }
        state.trade = Some(Trade { price, ms });
        state.extend_range(price, price);
        if ms >= state.volume_as_of {
            state.volume += size;
        }
        Outcome::Quote(state.quote(ticker, time, price))
    }

    /// A book update: a quote when a trade price is known, otherwise kept for the next trade.
    pub fn top(&mut self, ticker: &str, top: Top, time: Timestamp) -> Outcome {
        let day = self.days.of(time);
        let Some(state) = self.state(ticker) else {
            return Outcome::Held;
        };
        let ms = time.as_millisecond();
        if ms < state.book_ms {
            return Outcome::Malformed(
                "out_of_order",
                format!(
                    "{ticker}: book update at {time} is older than the last one ({} ms)",
                    state.book_ms
                ),
            );
        }
        state.roll(day);
        let sane = top.bid.is_none_or(usable) && top.ask.is_none_or(usable);
        if sane {
            state.bid = top.bid;
            state.ask = top.ask;
            state.book_ms = ms;
        }
        match state.trade {
            Some(trade) => {
                let mut quote = state.quote(ticker, time, trade.price);
                // An insane side is delivered once, so validation names and counts it.
                quote.bid = top.bid;
                quote.ask = top.ask;
                Outcome::Quote(quote)
            }
            None if sane => Outcome::Held,
            None => Outcome::Malformed(
                "bad_price",
                format!("{ticker}: bid {:?} / ask {:?}", top.bid, top.ask),
            ),
        }
    }

    /// An aggregate: updates the day's volume, open and range.
    pub fn aggregate(&mut self, ticker: &str, agg: Aggregate) -> Outcome {
        let sane = agg.day_volume.is_finite()
            && agg.day_volume >= 0.0
            && [agg.day_open, agg.high, agg.low]
                .into_iter()
                .flatten()
                .all(usable);
        let end = Timestamp::from_millisecond(agg.end_ms)
            .ok()
            .filter(|_| sane);
        let Some(end) = end else {
            return Outcome::Malformed("bad_aggregate", format!("{ticker}: {agg:?}"));
        };
        let day = self.days.of(end);
        let Some(state) = self.state(ticker) else {
            return Outcome::Held;
        };
        if state.day.is_some_and(|current| day < current) {
            // Yesterday's bar arriving late describes a day that is over.
            return Outcome::Held;
        }
        state.roll(day);
        if agg.end_ms >= state.volume_as_of {
            state.volume = agg.day_volume;
            state.volume_as_of = agg.end_ms;
        }
        if agg.day_open.is_some() {
            state.open = agg.day_open;
        }
        if let (Some(high), Some(low)) = (agg.high, agg.low) {
            state.extend_range(high, low);
        }
        Outcome::Held
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// 2026-01-20 14:30:00 UTC (09:30 Eastern).
    const OPEN_MS: i64 = 1_768_919_400_000;
    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 24 * HOUR_MS;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    fn quote(outcome: Outcome) -> RawQuote {
        match outcome {
            Outcome::Quote(q) => q,
            other => panic!("expected a quote, got {other:?}"),
        }
    }

    fn minute(end_ms: i64, day_volume: f64) -> Aggregate {
        Aggregate {
            day_volume,
            day_open: Some(187.5),
            high: Some(190.0),
            low: Some(188.0),
            end_ms,
        }
    }

    #[test]
    fn a_trade_carries_the_book_and_the_day() {
        let mut book = Book::default();
        let top = Top {
            bid: Some(189.4),
            ask: Some(189.45),
        };
        assert_eq!(
            book.top("AAPL", top, at(OPEN_MS)),
            Outcome::Held,
            "no trade yet"
        );
        assert_eq!(
            book.aggregate("AAPL", minute(OPEN_MS + 60_000, 1_000_000.0)),
            Outcome::Held
        );
        let q = quote(book.trade("AAPL", 189.42, 100.0, at(OPEN_MS + 61_000)));
        assert_eq!(q.price, 189.42);
        assert_eq!((q.bid, q.ask), (Some(189.4), Some(189.45)));
        assert_eq!(q.volume, 1_000_100.0, "av plus the trade after the window");
        assert_eq!(q.open, Some(187.5));
        assert_eq!((q.high, q.low), (Some(190.0), Some(188.0)));
        assert_eq!(q.source, "polygon");
        // A book update now carries the last trade price.
        let q = quote(book.top(
            "AAPL",
            Top {
                bid: Some(189.41),
                ask: None,
            },
            at(OPEN_MS + 62_000),
        ));
        assert_eq!((q.price, q.bid, q.ask), (189.42, Some(189.41), None));
        assert_eq!(q.timestamp, at(OPEN_MS + 62_000));
    }

    #[test]
    fn the_next_aggregate_replaces_the_running_volume_without_double_counting() {
        let mut book = Book::default();
        book.aggregate("AAPL", minute(OPEN_MS + 60_000, 1_000.0));
        // Inside the next window: counted on top of av...
        quote(book.trade("AAPL", 10.0, 50.0, at(OPEN_MS + 70_000)));
        // ...until that window's aggregate arrives with the exact figure.
        book.aggregate("AAPL", minute(OPEN_MS + 120_000, 1_060.0));
        // A trade from inside the aggregated window arriving late is already in av.
        let q = quote(book.trade("AAPL", 10.0, 10.0, at(OPEN_MS + 110_000)));
        assert_eq!(q.volume, 1_060.0);
        // A stale aggregate does not move the volume back.
        book.aggregate("AAPL", minute(OPEN_MS + 60_000, 1_000.0));
        let q = quote(book.trade("AAPL", 10.0, 5.0, at(OPEN_MS + 121_000)));
        assert_eq!(q.volume, 1_065.0);
    }

    #[test]
    fn a_new_trading_day_starts_from_scratch_but_keeps_the_last_price() {
        let mut book = Book::default();
        book.aggregate("AAPL", minute(OPEN_MS + 60_000, 5_000_000.0));
        book.top(
            "AAPL",
            Top {
                bid: Some(189.0),
                ask: Some(189.1),
            },
            at(OPEN_MS),
        );
        quote(book.trade("AAPL", 189.0, 100.0, at(OPEN_MS + 61_000)));
        // 04:00 Eastern the next morning.
        let premarket = OPEN_MS + DAY_MS - 5 * HOUR_MS - 30 * 60_000;
        let q = quote(book.top(
            "AAPL",
            Top {
                bid: Some(188.0),
                ask: Some(188.2),
            },
            at(premarket),
        ));
        assert_eq!(q.price, 189.0, "the previous close");
        assert_eq!(q.volume, 0.0);
        assert_eq!((q.open, q.high, q.low), (None, None, None));
        assert_eq!(q.bid, Some(188.0));
    }

    #[test]
    fn stale_events_are_out_of_order_and_change_nothing() {
        let mut book = Book::default();
        quote(book.trade("AAPL", 189.0, 100.0, at(OPEN_MS + 1_000)));
        let late = book.trade("AAPL", 150.0, 100.0, at(OPEN_MS));
        assert!(
            matches!(late, Outcome::Malformed("out_of_order", _)),
            "{late:?}"
        );
        let top = Top {
            bid: Some(188.0),
            ask: Some(189.0),
        };
        quote(book.top("AAPL", top, at(OPEN_MS + 2_000)));
        let late = book.top("AAPL", top, at(OPEN_MS + 1_500));
        assert!(
            matches!(late, Outcome::Malformed("out_of_order", _)),
            "{late:?}"
        );
        let q = quote(book.trade("AAPL", 189.5, 1.0, at(OPEN_MS + 3_000)));
        assert_eq!((q.low, q.high), (Some(189.0), Some(189.5)));
    }

    #[test]
    fn insane_prices_reach_validation_once_and_are_not_kept() {
        let mut book = Book::default();
        let bad = quote(book.trade("AAPL", -1.0, 100.0, at(OPEN_MS)));
        assert_eq!(bad.price, -1.0);
        let crossed = Top {
            bid: Some(-5.0),
            ask: Some(10.0),
        };
        assert!(matches!(
            book.top("AAPL", crossed, at(OPEN_MS)),
            Outcome::Malformed("bad_price", _)
        ));
        quote(book.trade("AAPL", 10.0, 100.0, at(OPEN_MS + 1)));
        let q = quote(book.top("AAPL", crossed, at(OPEN_MS + 2)));
        assert_eq!(q.bid, Some(-5.0), "delivered so validation counts it");
        let q = quote(book.trade("AAPL", 10.0, 100.0, at(OPEN_MS + 3)));
        assert_eq!((q.bid, q.ask, q.low), (None, None, Some(10.0)), "not kept");
        assert_eq!(q.volume, 200.0, "the bad trade's size is not counted");
        let agg = Aggregate {
            day_volume: -1.0,
            ..minute(OPEN_MS, 0.0)
        };
        assert!(matches!(
            book.aggregate("AAPL", agg),
            Outcome::Malformed("bad_aggregate", _)
        ));
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = Book::default();
        for i in 0..MAX_TICKERS + 10 {
            let q = quote(book.trade(&format!("T{i}"), 1.0, 1.0, at(OPEN_MS)));
            assert_eq!(q.volume, 1.0);
        }
        assert_eq!(book.tickers.len(), MAX_TICKERS);
    }

    proptest! {
        /// Whatever order trades arrive in, the quotes delivered have non-decreasing times,
        /// low ≤ price ≤ high, and a volume that never shrinks within a day.
        #[test]
        fn delivered_quotes_are_consistent(
            events in proptest::collection::vec((0i64..600_000, 1u32..100_000, 0u32..1000), 1..200)
        ) {
            let mut book = Book::default();
            let mut last: Option<RawQuote> = None;
            for (offset, cents, size) in events {
                let price = f64::from(cents) / 100.0;
                if let Outcome::Quote(q) = book.trade("AAPL", price, f64::from(size), at(OPEN_MS + offset)) {
                    prop_assert!(q.low.unwrap() <= q.price && q.price <= q.high.unwrap());
                    if let Some(prev) = &last {
                        prop_assert!(q.timestamp >= prev.timestamp);
                        prop_assert!(q.volume >= prev.volume);
                    }
                    last = Some(q);
                }
            }
        }
    }
}
