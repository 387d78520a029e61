//! The US trading day of an instant: its calendar date in America/New_York, daylight saving
//! time included. The one rule for every source that keeps per-day state (the streaming
//! vendors' books reset volume, open, high and low when a new trading day begins).

use jiff::Timestamp;
use jiff::civil::Date;
use quotestream_api::market::new_york;

/// The trading day of `time` (uncached; see [`TradingDays`] for the per-event path).
pub fn trading_day(time: Timestamp) -> Date {
    quotestream_api::market::date_of(time)
}

/// [`trading_day`] with the current day's span cached: nearly every event falls into the same
/// day as the one before, and a time-zone lookup per event is not free.
#[derive(Debug, Clone, Default)]
pub struct TradingDays {
    today: Option<Span>,
}

/// A day in New York and the instants it spans.
#[derive(Debug, Clone, Copy)]
struct Span {
    date: Date,
    start: Timestamp,
    end: Timestamp,
}

impl TradingDays {
    /// The trading day of `time`.
    pub fn of(&mut self, time: Timestamp) -> Date {
        if let Some(span) = self.today
            && span.start <= time
            && time < span.end
        {
            return span.date;
        }
        let zoned = time.to_zoned(new_york().clone());
        let span = zoned.start_of_day().ok().and_then(|start| {
            let end = zoned.tomorrow().ok()?.start_of_day().ok()?;
            Some(Span {
                date: zoned.date(),
                start: start.timestamp(),
                end: end.timestamp(),
            })
        });
        // Without a span (the ends of jiff's range) the date is still right, just not cached.
        self.today = span;
        zoned.date()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_new_york_date_in_winter_and_in_summer() {
        let mut days = TradingDays::default();
        let day = |text: &str| text.parse::<Date>().unwrap();
        // EST (UTC−5): 04:59 UTC is still the previous evening.
        assert_eq!(days.of(at("2026-01-20T04:59:59Z")), day("2026-01-19"));
        assert_eq!(days.of(at("2026-01-20T05:00:00Z")), day("2026-01-20"));
        // EDT (UTC−4): the day begins an hour earlier in UTC; a fixed UTC−5 would be wrong here.
        assert_eq!(days.of(at("2026-07-20T04:30:00Z")), day("2026-07-20"));
        assert_eq!(days.of(at("2026-07-20T03:59:59Z")), day("2026-07-19"));
        // The cache answers like the uncached rule, across a DST change too.
        for t in [
            "2026-03-08T06:59:59Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T04:00:00Z",
        ] {
            assert_eq!(days.of(at(t)), trading_day(at(t)), "{t}");
        }
    }
}
