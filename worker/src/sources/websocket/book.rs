//! The per-ticker book of the streaming vendors that send a quote's parts as separate messages
//! (`alpaca`, `polygon`): trades, top-of-book updates and day figures (Alpaca's daily bars,
//! Massive's minute aggregates). The book keeps the latest of each per ticker so that every
//! trade, and every book update once a trade price is known, becomes a complete quote (last
//! trade price + bid/ask + the day's volume, open, high and low).
//!
//! One state machine for both; what really differs between the vendors is a [`Rules`] value
//! each vendor folder defines (`alpaca::BOOK`, `polygon::BOOK`):
//!
//! - **Trades** set the price, extend the day's range and add their size to the day volume;
//!   every trade yields a quote. A trade older than the ticker's last one is `out_of_order`: it
//!   never moves the price nor is published ([`DayFigures`] says whether its size still counts).
//! - **Book updates** set bid/ask and yield a quote only once a trade price is known (the price
//!   is always a real trade). One older than the last one is `out_of_order`.
//! - **Day figures** replace (daily bar) or refresh (minute aggregate) the day's volume, open and
//!   range: the trades one connection sees are only part of the day.
//! - **The trading day** is the calendar day in America/New_York ([`crate::sources::trading_day`]):
//!   the first event of a new day starts volume, open, high and low afresh; the last trade price
//!   stays (pre-market quotes show the previous close). An event of a day older than the one
//!   held is `out_of_order`.
//! - **Unusable prices** (≤ 0, not finite) never enter the state: the quote they arrive in
//!   carries them once so that validation counts them, and the next quote is clean again.
//! - **Bounded**: at most [`Rules::max_tickers`] tickers are remembered, so a server sending
//!   endless symbols cannot grow memory without bound ([`Overflow`] says what happens beyond).

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use super::Decoded;
use crate::quote::RawQuote;
use crate::sources::trading_day::TradingDays;

/// What one message did to the book.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A quote to deliver.
    Quote(RawQuote),
    /// Remembered (or deliberately ignored), nothing to deliver.
    Held,
    /// Not usable: a reason (metric label) and a detail for the log.
    Dropped(&'static str, String),
}

impl Outcome {
    /// Puts what the message gave into `out`; true when it was only remembered, so that a
    /// decoder accounts for every message.
    pub fn record(self, out: &mut Decoded) -> bool {
        match self {
            Self::Quote(quote) => out.quotes.push(quote),
            Self::Held => return true,
            Self::Dropped(reason, detail) => out.malformed(reason, detail),
        }
        false
    }
}

/// What a vendor's book does where the vendors really differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The quotes' `source` (contracts 001 and 004).
    pub source: &'static str,
    /// Tickers remembered at most.
    pub max_tickers: usize,
    pub overflow: Overflow,
    pub day_figures: DayFigures,
    pub book_life: BookLife,
    pub unusable_side: UnusableSide,
}

/// A ticker beyond [`Rules::max_tickers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Dropped as `too_many_symbols` (Alpaca).
    Refuse,
    /// A trade still yields a quote, from the event alone; other events are ignored (Massive:
    /// the connection drops unsubscribed symbols anyway).
    Untracked,
}

/// Where the day's volume and open come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayFigures {
    /// Alpaca's daily bar (`d`) replaces volume, open, high and low whenever one arrives; in
    /// between, trades add to the volume — late ones too (they happened, and no later figure
    /// will include them before the next bar) — and the first trade of the day opens it.
    DailyBars,
    /// Massive's minute aggregates (`AM`): volume is the newest aggregate's `av` plus the trades
    /// after its window (a late trade is in the next `av` already), open is the aggregate's
    /// `op` (the official open) and nothing else.
    MinuteAggregates,
}

/// How long a ticker's bid/ask is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookLife {
    /// Until the connection ends: a book seen before a gap is stale after it (Alpaca).
    Connection,
    /// Until the trading day ends; it survives reconnects (Massive).
    TradingDay,
}

/// A book update with an unusable side (≤ 0, not finite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusableSide {
    /// That side is empty from now on; the other side is kept (Alpaca).
    Empty,
    /// The whole update is ignored and the previous book stays; before any trade it is dropped
    /// as `bad_price`, as there is no quote to carry it to validation (Massive).
    IgnoreUpdate,
}

/// A trade as the vendor sent it (checked for shape by the decoder, not for sense).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    pub price: f64,
    /// Shares (a decoder rejects negative or non-finite sizes).
    pub size: f64,
    pub time: Timestamp,
}

/// A top-of-book update: the best bid and ask (`None`: that side is empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Top {
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub time: Timestamp,
}

/// Alpaca's daily bar: the day's open, high, low and volume so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyBar {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub volume: f64,
    /// The start of the bar's day.
    pub time: Timestamp,
}

/// Massive's minute (or second) aggregate: its day-level fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// `av`: the day's accumulated volume up to the window's end.
    pub day_volume: f64,
    /// `op`: the day's official open.
    pub day_open: Option<f64>,
    /// The bar's `h` and `l`.
    pub high: Option<f64>,
    pub low: Option<f64>,
    /// `e`: the window's end.
    pub end: Timestamp,
}

fn usable(price: f64) -> bool {
    price.is_finite() && price > 0.0
}

#[derive(Debug, Clone, Default)]
struct TickerState {
    // Facts about the trading day.
    day: Option<Date>,
    price: Option<f64>,
    last_trade: Option<Timestamp>,
    volume: f64,
    /// End of the aggregate window `volume` was last set from; trades after it add to it.
    volume_as_of: Option<Timestamp>,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    // The book (see [`BookLife`]).
    bid: Option<f64>,
    ask: Option<f64>,
    last_top: Option<Timestamp>,
}

impl TickerState {
    /// Moves to `day`, forgetting the previous day's figures. False when `day` is older than
    /// the one held.
    fn enter(&mut self, day: Date, book_life: BookLife) -> bool {
        match self.day {
            Some(current) if current > day => false,
            Some(current) if current == day => true,
            _ => {
                self.day = Some(day);
                self.volume = 0.0;
                self.volume_as_of = None;
                self.open = None;
                self.high = None;
                self.low = None;
                if book_life == BookLife::TradingDay {
                    self.forget_book();
                }
                true
            }
        }
    }

    fn forget_book(&mut self) {
        self.bid = None;
        self.ask = None;
        self.last_top = None;
    }

    fn extend_range(&mut self, high: f64, low: f64) {
        self.high = Some(self.high.map_or(high, |h| h.max(high)));
        self.low = Some(self.low.map_or(low, |l| l.min(low)));
    }

    fn older_day(&self, ticker: &str, what: &str, day: Date) -> Outcome {
        Outcome::Dropped(
            "out_of_order",
            format!(
                "{ticker}: {what} of {day} after events of {}",
                self.day.map(|d| d.to_string()).unwrap_or_default()
            ),
        )
    }

    fn quote(
        &self,
        source: &'static str,
        ticker: &str,
        timestamp: Timestamp,
        price: f64,
        (bid, ask): (Option<f64>, Option<f64>),
    ) -> RawQuote {
        RawQuote {
            ticker: ticker.to_owned(),
            timestamp,
            price,
            volume: self.volume,
            bid,
            ask,
            open: self.open,
            high: self.high,
            low: self.low,
            source,
        }
    }
}

/// Every ticker's state for one streaming source.
pub struct Book {
    rules: Rules,
    tickers: HashMap<String, TickerState>,
    days: TradingDays,
}

// Thousands of entries are no use in a debug print.
impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book")
            .field("rules", &self.rules)
            .field("tickers", &self.tickers.len())
            .finish()
    }
}

/// The ticker's state, or what to answer when there is no room for it.
enum Slot<'a> {
    Tracked(&'a mut TickerState),
    Full,
}

impl Book {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            tickers: HashMap::new(),
            days: TradingDays::default(),
        }
    }

    /// A new connection begins: forget what belonged to the previous one ([`BookLife`]).
    pub fn reset_connection(&mut self) {
        if self.rules.book_life == BookLife::Connection {
            self.tickers.values_mut().for_each(TickerState::forget_book);
        }
    }

    /// The ticker's state, created on first sight while there is room.
    fn slot(&mut self, ticker: &str) -> Slot<'_> {
        if !self.tickers.contains_key(ticker) {
            if self.tickers.len() >= self.rules.max_tickers {
                return Slot::Full;
            }
            self.tickers
                .insert(ticker.to_owned(), TickerState::default());
        }
        match self.tickers.get_mut(ticker) {
            Some(state) => Slot::Tracked(state),
            None => Slot::Full,
        }
    }

    /// The answer for a ticker there is no room for, when the event is not a trade.
    fn full(&self, ticker: &str) -> Outcome {
        match self.rules.overflow {
            Overflow::Refuse => self.refused(ticker),
            Overflow::Untracked => Outcome::Held,
        }
    }

    fn refused(&self, ticker: &str) -> Outcome {
        Outcome::Dropped(
            "too_many_symbols",
            format!(
                "{ticker}: already {} symbols remembered",
                self.rules.max_tickers
            ),
        )
    }

    /// A trade: a quote, unless it is late or there is no room for its ticker.
    pub fn trade(&mut self, ticker: &str, trade: Trade) -> Outcome {
        let rules = self.rules;
        let day = self.days.of(trade.time);
        let mut untracked = TickerState::default();
        let state = match self.slot(ticker) {
            Slot::Tracked(state) => state,
            Slot::Full if rules.overflow == Overflow::Untracked => &mut untracked,
            Slot::Full => return self.refused(ticker),
        };
        if !usable(trade.price) {
            // Not a price anyone traded at: validation counts it (reason `price`); it changes
            // nothing here.
            return Outcome::Quote(state.quote(
                rules.source,
                ticker,
                trade.time,
                trade.price,
                (state.bid, state.ask),
            ));
        }
        if let Some(last) = state.last_trade
            && trade.time < last
        {
            let counted = rules.day_figures == DayFigures::DailyBars && state.day == Some(day);
            if counted {
                state.volume += trade.size;
            }
            return Outcome::Dropped(
                "out_of_order",
                format!(
                    "{ticker}: trade at {} after one at {last} ({}, not published)",
                    trade.time,
                    if counted {
                        "kept in the day volume"
                    } else {
                        "not counted"
                    }
                ),
            );
        }
        if !state.enter(day, rules.book_life) {
            return state.older_day(ticker, "trade", day);
        }
        state.last_trade = Some(trade.time);
        state.price = Some(trade.price);
        if state.volume_as_of.is_none_or(|end| trade.time >= end) {
            state.volume += trade.size;
        }
        if rules.day_figures == DayFigures::DailyBars {
            state.open.get_or_insert(trade.price);
        }
        state.extend_range(trade.price, trade.price);
        Outcome::Quote(state.quote(
            rules.source,
            ticker,
            trade.time,
            trade.price,
            (state.bid, state.ask),
        ))
    }

    /// A book update: a quote once a trade price is known, otherwise kept for the next trade.
    pub fn top(&mut self, ticker: &str, top: Top) -> Outcome {
        let rules = self.rules;
        let day = self.days.of(top.time);
        let state = match self.slot(ticker) {
            Slot::Tracked(state) => state,
            Slot::Full => return self.full(ticker),
        };
        if let Some(last) = state.last_top
            && top.time < last
        {
            return Outcome::Dropped(
                "out_of_order",
                format!("{ticker}: book update at {} after one at {last}", top.time),
            );
        }
        // A new day without a trade yet: yesterday's figures do not belong to it.
        if !state.enter(day, rules.book_life) {
            return state.older_day(ticker, "book update", day);
        }
        let sane = top.bid.is_none_or(usable) && top.ask.is_none_or(usable);
        match rules.unusable_side {
            UnusableSide::Empty => {
                state.bid = top.bid.filter(|p| usable(*p));
                state.ask = top.ask.filter(|p| usable(*p));
                state.last_top = Some(top.time);
            }
            UnusableSide::IgnoreUpdate if sane => {
                state.bid = top.bid;
                state.ask = top.ask;
                state.last_top = Some(top.time);
            }
            UnusableSide::IgnoreUpdate => {}
        }
        match state.price {
            // An unusable side is delivered once, so validation names and counts it.
            Some(price) => Outcome::Quote(state.quote(
                rules.source,
                ticker,
                top.time,
                price,
                (top.bid, top.ask),
            )),
            None if sane || rules.unusable_side == UnusableSide::Empty => Outcome::Held,
            None => Outcome::Dropped(
                "bad_price",
                format!("{ticker}: bid {:?} / ask {:?}", top.bid, top.ask),
            ),
        }
    }

    /// Alpaca's daily bar: replaces the day's volume, open, high and low.
    pub fn daily_bar(&mut self, ticker: &str, bar: DailyBar) -> Outcome {
        let prices = [bar.open, bar.high, bar.low];
        if !prices.into_iter().all(usable)
            || bar.high < bar.low
            || !(bar.volume.is_finite() && bar.volume >= 0.0)
        {
            return Outcome::Dropped(
                "bad_bar",
                format!(
                    "{ticker}: daily bar o {} h {} l {} v {}",
                    bar.open, bar.high, bar.low, bar.volume
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
        let book_life = self.rules.book_life;
        let state = match self.slot(ticker) {
            Slot::Tracked(state) => state,
            Slot::Full => return self.full(ticker),
        };
        if !state.enter(day, book_life) {
            return state.older_day(ticker, "daily bar", day);
        }
        state.volume = bar.volume;
        state.open = Some(bar.open);
        state.high = Some(bar.high);
        state.low = Some(bar.low);
        Outcome::Held
    }

    /// Massive's minute aggregate: the day's volume as of the window's end, the official open,
    /// and the bar's range.
    pub fn aggregate(&mut self, ticker: &str, agg: Aggregate) -> Outcome {
        let sane = agg.day_volume.is_finite()
            && agg.day_volume >= 0.0
            && [agg.day_open, agg.high, agg.low]
                .into_iter()
                .flatten()
                .all(usable);
        if !sane {
            return Outcome::Dropped("bad_aggregate", format!("{ticker}: {agg:?}"));
        }
        let day = self.days.of(agg.end);
        let book_life = self.rules.book_life;
        let state = match self.slot(ticker) {
            Slot::Tracked(state) => state,
            Slot::Full => return self.full(ticker),
        };
        if !state.enter(day, book_life) {
            // Yesterday's bar arriving late describes a day that is over.
            return Outcome::Held;
        }
        if state.volume_as_of.is_none_or(|end| agg.end >= end) {
            state.volume = agg.day_volume;
            state.volume_as_of = Some(agg.end);
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
mod tests;
