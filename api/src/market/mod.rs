//! Trading hours: when a stream with `spec.schedule` streams. The calendar ([`calendar`]) says
//! which New York days trade and which close early; this module turns a day into its sessions
//! and answers the two questions the worker and the operator ask: is the stream's window open
//! at an instant, and when does that change.
//!
//! Sessions (New York time, America/New_York with its daylight-saving switches):
//! pre-market 04:00–09:30, regular 09:30–16:00 (13:00 on an early close), post-market from
//! the close for four hours (16:00–20:00, or 13:00–17:00). A schedule streams the regular
//! session plus the extended sessions it enables; the window of a day is one span.

pub mod calendar;

use std::sync::LazyLock;

use jiff::civil::{Date, Time, time};
use jiff::tz::{self, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

pub use calendar::{DayKind, Holiday, day_kind};

use crate::crd::Schedule;

/// America/New_York. The workspace bundles the time-zone database (`tzdb-bundle-always`), so
/// the lookup cannot fail in practice; should it, the fixed UTC−5 (EST) keeps every session on
/// its Eastern date, an hour off in summer.
static NEW_YORK: LazyLock<TimeZone> = LazyLock::new(|| {
    TimeZone::get("America/New_York").unwrap_or_else(|_| TimeZone::fixed(tz::offset(-5)))
});

/// The exchanges' time zone.
pub fn new_york() -> &'static TimeZone {
    &NEW_YORK
}

const PRE_MARKET_OPEN: Time = time(4, 0, 0, 0);
const REGULAR_OPEN: Time = time(9, 30, 0, 0);
const FULL_CLOSE: Time = time(16, 0, 0, 0);
const EARLY_CLOSE: Time = time(13, 0, 0, 0);
/// The post-market session lasts this long after the close.
const POST_MARKET: SignedDuration = SignedDuration::from_hours(4);
/// How far ahead to look for the next trading day. The longest run of closed days since 1900
/// outside wartime is 4 (a weekend with a holiday and a special closure on each side); two
/// weeks is plenty and bounds the search.
const SEARCH_DAYS: i64 = 14;

/// What the market is doing at an instant (whatever the stream streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketState {
    Closed,
    PreMarket,
    Open,
    PostMarket,
}

impl MarketState {
    /// As written in `status.market.state` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "Closed",
            Self::PreMarket => "PreMarket",
            Self::Open => "Open",
            Self::PostMarket => "PostMarket",
        }
    }
}

/// The sessions of one trading day, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Day {
    pre_open: Timestamp,
    open: Timestamp,
    close: Timestamp,
    post_close: Timestamp,
}

impl Day {
    /// The sessions of `date`, None when it does not trade.
    fn of(date: Date) -> Option<Day> {
        let close = match day_kind(date) {
            DayKind::Full => FULL_CLOSE,
            DayKind::EarlyClose => EARLY_CLOSE,
            DayKind::Weekend | DayKind::Holiday(_) => return None,
        };
        let at = |t: Time| {
            date.to_datetime(t)
                .to_zoned(NEW_YORK.clone())
                .ok()
                .map(|z| z.timestamp())
        };
        let close = at(close)?;
        Some(Day {
            pre_open: at(PRE_MARKET_OPEN)?,
            open: at(REGULAR_OPEN)?,
            close,
            post_close: close.checked_add(POST_MARKET).ok()?,
        })
    }

    fn state_at(&self, t: Timestamp) -> MarketState {
        if t < self.pre_open || t >= self.post_close {
            MarketState::Closed
        } else if t < self.open {
            MarketState::PreMarket
        } else if t < self.close {
            MarketState::Open
        } else {
            MarketState::PostMarket
        }
    }
}

/// One span during which a stream streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

impl Schedule {
    /// The NYSE regular session only.
    pub fn nyse_regular() -> Self {
        Self {
            calendar: crate::crd::ExchangeCalendar::Nyse,
            pre_market: false,
            post_market: false,
        }
    }

    /// The market's state at `t`.
    pub fn market_state(&self, t: Timestamp) -> MarketState {
        Day::of(date_of(t)).map_or(MarketState::Closed, |day| day.state_at(t))
    }

    /// The streaming window of `date`: the regular session widened by the extended sessions
    /// this schedule enables. None when the day does not trade.
    fn window_of(&self, date: Date) -> Option<Window> {
        let day = Day::of(date)?;
        Some(Window {
            start: if self.pre_market {
                day.pre_open
            } else {
                day.open
            },
            end: if self.post_market {
                day.post_close
            } else {
                day.close
            },
        })
    }

    /// The window open at `t`, if any.
    pub fn window_at(&self, t: Timestamp) -> Option<Window> {
        self.window_of(date_of(t)).filter(|w| w.contains(t))
    }

    /// The next instant after `t` at which the market's state or this schedule's window
    /// changes: when a status that shows them must be refreshed.
    pub fn next_transition(&self, t: Timestamp) -> Option<Timestamp> {
        let today = date_of(t);
        (0..=SEARCH_DAYS)
            .filter_map(|offset| today.checked_add(offset.days()).ok())
            .filter_map(Day::of)
            .flat_map(|day| [day.pre_open, day.open, day.close, day.post_close])
            .find(|instant| *instant > t)
    }

    /// The first window starting after `t` (the current one excluded).
    pub fn next_window(&self, t: Timestamp) -> Option<Window> {
        let today = date_of(t);
        (0..=SEARCH_DAYS)
            .filter_map(|offset| today.checked_add(offset.days()).ok())
            .filter_map(|date| self.window_of(date))
            .find(|w| w.start > t)
    }
}

/// The New York date of `t`.
pub fn date_of(t: Timestamp) -> Date {
    t.to_zoned(NEW_YORK.clone()).date()
}

#[cfg(test)]
mod tests;
