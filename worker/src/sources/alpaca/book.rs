//! What the connector remembers per ticker to turn Alpaca's separate trades, quotes and daily
//! bars into the quote model (last trade price + NBBO bid/ask + cumulative day volume).
//!
//! - A trade sets the price and adds its size to the day's volume; every trade yields a quote.
//! - A quote update sets bid/ask and yields a quote only once a trade price is known (the price
//!   must be a real trade).
//! - A daily bar replaces the day's volume, open, high and low with Alpaca's own (the trades
//!   this connection saw are only part of the day).
//! - The trading day is the calendar day in America/New_York
//!   ([`crate::sources::trading_day`]): the first trade of a new day
//!   starts the volume, open, high and low afresh.
//! - Late reports (a trade or quote older than the last one of its kind) count in the day's
//!   volume but neither move the price nor yield a quote: they are reported as `out_of_order`.

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use crate::quote::RawQuote;
use crate::sources::trading_day::TradingDays;

/// The `source` of the quotes (contracts: `alpaca`).
pub const SOURCE: &str = "alpaca";

/// Tickers remembered at most. A shard streams at most a few thousand; a server sending
/// endless unknown symbols must not grow memory without bound.
pub const MAX_TICKERS: usize = 50_000;

/// What one message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Quote(RawQuote),
    /// Remembered, nothing to publish yet.
    Held,
    /// Not usable: `(reason, detail)`.
    Dropped(&'static str, String),
}

/// Why a message was not usable: `(reason, detail)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped(pub &'static str, pub String);

impl From<Dropped> for Outcome {
    fn from(Dropped(reason, detail): Dropped) -> Self {
        Self::Dropped(reason, detail)
    }
}

/// One trade, quote or daily bar as Alpaca sent it (checked for shape, not for sense).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    pub price: f64,
    pub size: u64,
    pub time: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nbbo {
    pub bid: f64,
    pub ask: f64,
    pub time: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyBar {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub volume: u64,
    pub time: Timestamp,
}

#[derive(Debug, Default)]
struct TickerState {
    // Kept across reconnects: facts about the trading day.
    day: Option<Date>,
    price: Option<f64>,
    last_trade: Option<Timestamp>,
    volume: u64,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    // Belong to the connection: a book seen before a gap is stale after it.
    bid: Option<f64>,
    ask: Option<f64>,
    last_quote: Option<Timestamp>,
}

impl TickerState {
    /// Moves to `day`, forgetting the previous day's totals. Returns false when `day` is older
    /// than the one already held.
    fn enter(&mut self, day: Date) -> bool {
        match self.day {
            Some(current) if current > day => false,
            Some(current) if current == day => true,
            _ => {
                self.day = Some(day);
                self.volume = 0;
                self.open = None;
                self.high = None;
                self.low = None;
                true
            }
        }
    }

    fn quote(
        &self,
        ticker: &str,
        time: Timestamp,
        price: f64,
        bid: Option<f64>,
        ask: Option<f64>,
    ) -> RawQuote {
        RawQuote {
            ticker: ticker.to_owned(),
            timestamp: time,
            price,
            volume: self.volume as f64,
            bid,
            ask,
            open: self.open,
            high: self.high,
            low: self.low,
            source: SOURCE,
        }
    }
}

/// Per-ticker state of one Alpaca stream.
#[derive(Debug)]
pub struct Book {
    tickers: HashMap<String, TickerState>,
    days: TradingDays,
}

impl Book {
    pub fn new() -> Self {
        Self {
            tickers: HashMap::new(),
            days: TradingDays::default(),
        }
    }

    /// A new connection: forget the quote book, keep the day's trades and volume.
    pub fn reset_connection(&mut self) {
        for state in self.tickers.values_mut() {
            state.bid = None;
            state.ask = None;
            state.last_quote = None;
        }
    }

    fn state(&mut self, ticker: &str) -> Result<&mut TickerState, Dropped> {
        if !self.tickers.contains_key(ticker) {
            if self.tickers.len() >= MAX_TICKERS {
                return Err(Dropped(
                    "too_many_symbols",
                    format!("{ticker}: already {MAX_TICKERS} symbols remembered"),
                ));
            }
            self.tickers
                .insert(ticker.to_owned(), TickerState::default());
        }
        // Just inserted when absent.
        self.tickers
            .get_mut(ticker)
            .ok_or_else(|| Dropped("too_many_symbols", ticker.to_owned()))
    }

    pub fn trade(&mut self, ticker: &str, trade: Trade) -> Outcome {
        if !(trade.price.is_finite() && trade.price > 0.0) {
            // Not a price anyone traded at: validation counts it (reason `price`); it changes
            // nothing here.
            let Ok(state) = self.state(ticker) else {
                return Outcome::Dropped("too_many_symbols", ticker.to_owned());
            };
            return Outcome::Quote(state.quote(
                ticker,
                trade.time,
                trade.price,
                state.bid,
                state.ask,
            ));
        }
        let day = self.days.of(trade.time);
        let state = match self.state(ticker) {
            Ok(state) => state,
            Err(dropped) => return dropped.into(),
        };
        if let Some(last) = state.last_trade
            && trade.time < last
        {
            // A late report: it happened, so it counts in the volume of its day.
            if state.day == Some(day) {
                state.volume = state.volume.saturating_add(trade.size);
            }
            return Outcome::Dropped(
                "out_of_order",
                format!(
                    "{ticker}: trade at {} after one at {last} (kept in the day volume, not published)",
                    trade.time
                ),
            );
        }
        if !state.enter(day) {
            return Outcome::Dropped(
                "out_of_order",
                format!(
                    "{ticker}: trade of {day} after the {} bar",
                    state.day.map(|d| d.to_string()).unwrap_or_default()
                ),
            );
        }
        state.last_trade = Some(trade.time);
        state.price = Some(trade.price);
        state.volume = state.volume.saturating_add(trade.size);
        state.open.get_or_insert(trade.price);
        state.high = Some(state.high.map_or(trade.price, |h| h.max(trade.price)));
        state.low = Some(state.low.map_or(trade.price, |l| l.min(trade.price)));
        Outcome::Quote(state.quote(ticker, trade.time, trade.price, state.bid, state.ask))
    }

    pub fn nbbo(&mut self, ticker: &str, nbbo: Nbbo) -> Outcome {
        let day = self.days.of(nbbo.time);
        let state = match self.state(ticker) {
            Ok(state) => state,
            Err(dropped) => return dropped.into(),
        };
        if let Some(last) = state.last_quote
            && nbbo.time < last
        {
            return Outcome::Dropped(
                "out_of_order",
                format!("{ticker}: quote at {} after one at {last}", nbbo.time),
            );
        }
        // A new day without a trade yet: yesterday's volume does not belong to it.
        if !state.enter(day) {
            return Outcome::Dropped(
                "out_of_order",
                format!(
                    "{ticker}: quote of {day} after the {} bar",
                    state.day.map(|d| d.to_string()).unwrap_or_default()
                ),
            );
        }
        state.last_quote = Some(nbbo.time);
        // Alpaca sends 0 for an empty side of the book. Anything else unusable is kept out of
        // the state but passed on once, so validation counts it.
        let (bid, ask) = (side(nbbo.bid), side(nbbo.ask));
        state.bid = bid.filter(|v| v.is_finite() && *v > 0.0);
        state.ask = ask.filter(|v| v.is_finite() && *v > 0.0);
        match state.price {
            None => Outcome::Held,
            Some(price) => Outcome::Quote(state.quote(ticker, nbbo.time, price, bid, ask)),
        }
    }

    pub fn daily_bar(&mut self, ticker: &str, bar: DailyBar) -> Outcome {
        let prices = [bar.open, bar.high, bar.low];
        if prices.iter().any(|p| !(p.is_finite() && *p > 0.0)) || bar.high < bar.low {
            return Outcome::Dropped(
                "bad_bar",
                format!(
                    "{ticker}: daily bar o {} h {} l {}",
                    bar.open, bar.high, bar.low
                ),
            );
        }
        // Alpaca stamps a day's bar with the start of the day; 12 hours later is inside that
        // day whether the stamp is midnight in New York or in UTC.
        let noon = bar
            .time
            .saturating_add(SignedDuration::from_hours(12))
            .unwrap_or(bar.time);
        let day = self.days.of(noon);
        let state = match self.state(ticker) {
            Ok(state) => state,
            Err(dropped) => return dropped.into(),
        };
        if !state.enter(day) {
            return Outcome::Dropped(
                "out_of_order",
                format!(
                    "{ticker}: daily bar of {day} after trades of {}",
                    state.day.map(|d| d.to_string()).unwrap_or_default()
                ),
            );
        }
        state.volume = bar.volume;
        state.open = Some(bar.open);
        state.high = Some(bar.high);
        state.low = Some(bar.low);
        Outcome::Held
    }
}

/// 0 is an empty side of the book.
fn side(value: f64) -> Option<f64> {
    (value != 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn trade(price: f64, size: u64, time: &str) -> Trade {
        Trade {
            price,
            size,
            time: at(time),
        }
    }

    fn quote_of(outcome: Outcome) -> RawQuote {
        match outcome {
            Outcome::Quote(q) => q,
            other => panic!("expected a quote, got {other:?}"),
        }
    }

    #[test]
    fn trades_set_the_price_and_sum_the_day_volume() {
        let mut book = Book::new();
        let q = quote_of(book.trade("AAPL", trade(189.5, 100, "2026-01-20T14:30:00.000000001Z")));
        assert_eq!(
            (q.price, q.volume, q.bid, q.open),
            (189.5, 100.0, None, Some(189.5))
        );
        let q = quote_of(book.trade("AAPL", trade(190.0, 50, "2026-01-20T14:30:01Z")));
        assert_eq!(
            (q.volume, q.high, q.low, q.open),
            (150.0, Some(190.0), Some(189.5), Some(189.5))
        );
        assert_eq!(q.source, "alpaca");
        assert_eq!(q.timestamp, at("2026-01-20T14:30:01Z"));
    }

    #[test]
    fn a_quote_update_needs_a_real_trade_first() {
        let mut book = Book::new();
        let nbbo = |bid, ask, time| Nbbo {
            bid,
            ask,
            time: at(time),
        };
        assert_eq!(
            book.nbbo("AAPL", nbbo(189.4, 189.6, "2026-01-20T14:30:00Z")),
            Outcome::Held
        );
        let q = quote_of(book.trade("AAPL", trade(189.5, 10, "2026-01-20T14:30:01Z")));
        assert_eq!(
            (q.bid, q.ask),
            (Some(189.4), Some(189.6)),
            "the trade carries the book"
        );
        let q = quote_of(book.nbbo("AAPL", nbbo(189.45, 0.0, "2026-01-20T14:30:02Z")));
        assert_eq!(
            (q.price, q.bid, q.ask),
            (189.5, Some(189.45), None),
            "0 is an empty side"
        );
        assert_eq!(q.timestamp, at("2026-01-20T14:30:02Z"));
    }

    #[test]
    fn the_day_rolls_over_at_midnight_in_new_york() {
        let mut book = Book::new();
        // 23:59 New York time (EST, UTC-5) on the 20th, then 00:01 on the 21st.
        quote_of(book.trade("AAPL", trade(100.0, 500, "2026-01-21T04:59:00Z")));
        let q = quote_of(book.trade("AAPL", trade(101.0, 7, "2026-01-21T05:01:00Z")));
        assert_eq!((q.volume, q.open), (7.0, Some(101.0)));
        // Summer time (EDT, UTC-4): 03:30 UTC is still the previous day.
        let mut book = Book::new();
        quote_of(book.trade("MSFT", trade(400.0, 1, "2026-07-01T03:30:00Z")));
        let q = quote_of(book.trade("MSFT", trade(400.0, 1, "2026-07-01T03:59:59Z")));
        assert_eq!(q.volume, 2.0);
        let q = quote_of(book.trade("MSFT", trade(400.0, 1, "2026-07-01T04:00:00Z")));
        assert_eq!(q.volume, 1.0);
    }

    #[test]
    fn a_daily_bar_replaces_volume_and_range() {
        let mut book = Book::new();
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:00Z")));
        for stamp in ["2026-01-20T05:00:00Z", "2026-01-20T00:00:00Z"] {
            let bar = DailyBar {
                open: 187.0,
                high: 191.0,
                low: 186.5,
                volume: 42_000_000,
                time: at(stamp),
            };
            assert_eq!(book.daily_bar("AAPL", bar), Outcome::Held, "{stamp}");
        }
        let q = quote_of(book.trade("AAPL", trade(190.5, 100, "2026-01-20T15:01:00Z")));
        assert_eq!(
            (q.volume, q.open, q.high, q.low),
            (42_000_100.0, Some(187.0), Some(191.0), Some(186.5))
        );
        let old = DailyBar {
            open: 1.0,
            high: 1.0,
            low: 1.0,
            volume: 1,
            time: at("2026-01-19T05:00:00Z"),
        };
        assert!(matches!(
            book.daily_bar("AAPL", old),
            Outcome::Dropped("out_of_order", _)
        ));
        let bad = DailyBar {
            open: 1.0,
            high: 0.5,
            low: 1.0,
            volume: 1,
            time: at("2026-01-20T05:00:00Z"),
        };
        assert!(matches!(
            book.daily_bar("AAPL", bad),
            Outcome::Dropped("bad_bar", _)
        ));
    }

    #[test]
    fn late_reports_count_in_the_volume_but_do_not_move_the_price() {
        let mut book = Book::new();
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:01Z")));
        assert!(matches!(
            book.trade("AAPL", trade(150.0, 30, "2026-01-20T15:00:00Z")),
            Outcome::Dropped("out_of_order", _)
        ));
        let q = quote_of(book.trade("AAPL", trade(190.1, 1, "2026-01-20T15:00:02Z")));
        assert_eq!((q.volume, q.low), (131.0, Some(190.0)));
    }

    #[test]
    fn bad_prices_pass_to_validation_and_change_nothing() {
        let mut book = Book::new();
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:01Z")));
        let q = quote_of(book.trade("AAPL", trade(-1.0, 100, "2026-01-20T15:00:02Z")));
        assert_eq!(q.price, -1.0);
        let q = quote_of(book.nbbo(
            "AAPL",
            Nbbo {
                bid: -3.0,
                ask: 190.2,
                time: at("2026-01-20T15:00:03Z"),
            },
        ));
        assert_eq!((q.price, q.volume, q.bid), (190.0, 100.0, Some(-3.0)));
        let q = quote_of(book.trade("AAPL", trade(190.1, 1, "2026-01-20T15:00:04Z")));
        assert_eq!(
            (q.bid, q.ask, q.low),
            (None, Some(190.2), Some(190.0)),
            "the bad bid is not kept"
        );
    }

    #[test]
    fn a_new_connection_forgets_the_book_but_not_the_day() {
        let mut book = Book::new();
        book.nbbo(
            "AAPL",
            Nbbo {
                bid: 189.9,
                ask: 190.1,
                time: at("2026-01-20T15:00:00Z"),
            },
        );
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:01Z")));
        book.reset_connection();
        let q = quote_of(book.trade("AAPL", trade(190.2, 5, "2026-01-20T15:05:00Z")));
        assert_eq!(
            (q.volume, q.bid, q.ask, q.open),
            (105.0, None, None, Some(190.0))
        );
        // The new connection's first quote update may be older than the old connection's last.
        let q = quote_of(book.nbbo(
            "AAPL",
            Nbbo {
                bid: 190.0,
                ask: 190.3,
                time: at("2026-01-20T14:59:00Z"),
            },
        ));
        assert_eq!(q.bid, Some(190.0));
    }

    proptest! {
        /// Within one day and in order, the volume is the sum of the sizes and the range holds
        /// every price.
        #[test]
        fn volume_sums_sizes_and_the_range_holds_every_price(
            trades in proptest::collection::vec((1u32..100_000, 0u64..10_000, 0i64..3_600_000_000), 1..50)
        ) {
            let mut book = Book::new();
            let start = at("2026-01-20T15:00:00Z");
            let mut times: Vec<i64> = trades.iter().map(|t| t.2).collect();
            times.sort_unstable();
            let mut sum = 0;
            for ((cents, size, _), micros) in trades.iter().zip(times) {
                let price = f64::from(*cents) / 100.0;
                sum += size;
                let time = start.saturating_add(SignedDuration::from_micros(micros)).unwrap();
                let q = quote_of(book.trade("AAPL", Trade { price, size: *size, time }));
                prop_assert_eq!(q.volume, sum as f64);
                prop_assert!(q.low.unwrap() <= price && price <= q.high.unwrap());
            }
        }
    }
}
