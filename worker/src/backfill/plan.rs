//! What to fetch: the range cut into the windows a vendor accepts per request. Windows are a
//! fixed grid from `--from` (the same arguments give the same windows on every run), which is
//! what the checkpoints record: a resumed run skips the windows already stored.

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::interval::Interval;

const DAY: i64 = 86_400;

/// A vendor's limits for one interval: the longest range one request may ask for, and how far
/// back the vendor keeps bars of that interval at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_window_secs: i64,
    pub max_age_secs: Option<i64>,
}

/// Yahoo's chart API: 1m within the last 30 days in windows of at most 7 days, 2m–90m within
/// the last 60 days, 1h within the last 730 days; daily and longer without a limit (one
/// request per ten years).
pub fn yahoo_limits(interval: Interval) -> Limits {
    let (window, age) = match interval {
        Interval::M1 => (7, Some(30)),
        Interval::M2 | Interval::M5 | Interval::M15 | Interval::M30 | Interval::M90 => {
            (60, Some(60))
        }
        Interval::H1 => (730, Some(730)),
        _ => (3653, None),
    };
    Limits {
        max_window_secs: window * DAY,
        max_age_secs: age.map(|d| d * DAY),
    }
}

/// Alpaca: no range limit per request (answers are paged by `next_page_token`), bars as far
/// back as the plan has them; one request chain per ten years.
pub fn alpaca_limits(_interval: Interval) -> Limits {
    Limits {
        max_window_secs: 3653 * DAY,
        max_age_secs: None,
    }
}

/// Polygon: `limit` (at most 50 000) counts base bars — minutes for minute and hour
/// aggregates — so intraday windows stay under 50 000 minutes (30 days); daily and longer
/// aggregates count days (one window per ten years). `next_url` is followed all the same.
pub fn polygon_limits(interval: Interval) -> Limits {
    Limits {
        max_window_secs: if interval.is_intraday() {
            30 * DAY
        } else {
            3653 * DAY
        },
        max_age_secs: None,
    }
}

/// The requested range, [from 00:00Z, the day after `to` 00:00Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Why the arguments cannot be fetched; names the flag and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "--to {to} is before --from {from}; give --from first, e.g. --from 2024-01-01 --to 2025-12-31"
    )]
    Reversed { from: Date, to: Date },
    #[error(
        "--from {from}: {vendor} keeps {interval} bars for the last {days} days only (since {oldest}); use a later --from, or a longer --interval ({hint})"
    )]
    TooOld {
        from: Date,
        vendor: &'static str,
        interval: Interval,
        days: i64,
        oldest: Date,
        hint: &'static str,
    },
    #[error("--from/--to: {0}")]
    Date(String),
}

impl Range {
    pub fn new(from: Date, to: Date) -> Result<Self, PlanError> {
        if to < from {
            return Err(PlanError::Reversed { from, to });
        }
        let utc = |d: Date| {
            d.to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp())
                .map_err(|e| PlanError::Date(e.to_string()))
        };
        let after = to
            .checked_add(1.day())
            .map_err(|e| PlanError::Date(e.to_string()))?;
        Ok(Self {
            start: utc(from)?,
            end: utc(after)?,
        })
    }

    /// Refuses a range that starts before the vendor keeps bars of `interval` (a few minutes
    /// of margin: the vendor checks against its clock when the request arrives).
    pub fn check_age(
        &self,
        limits: Limits,
        interval: Interval,
        vendor: &'static str,
        now: Timestamp,
    ) -> Result<(), PlanError> {
        let Some(age) = limits.max_age_secs else {
            return Ok(());
        };
        let oldest = now.as_second() - age + 600;
        if self.start.as_second() >= oldest {
            return Ok(());
        }
        let date = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC).date();
        Err(PlanError::TooOld {
            from: date(self.start),
            vendor,
            interval,
            days: age / DAY,
            oldest: date(Timestamp::from_second(oldest + DAY).unwrap_or(now)),
            hint: match interval {
                Interval::M1 => "2m-90m reach back 60 days, 1h 730 days, 1d without limit",
                Interval::H1 => "1d reaches back without limit",
                _ => "1h reaches back 730 days, 1d without limit",
            },
        })
    }

    /// The windows of at most `max_secs` that cover the range, from its start.
    pub fn windows(&self, max_secs: i64) -> Vec<(Timestamp, Timestamp)> {
        let step = SignedDuration::from_secs(max_secs.max(60));
        let mut out = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let end = start
                .checked_add(step)
                .map_or(self.end, |e| e.min(self.end));
            out.push((start, end));
            start = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn one_minute_bars_come_in_week_windows_within_thirty_days() {
        let r = Range::new(date("2026-11-10"), date("2026-12-05")).unwrap();
        let w = r.windows(yahoo_limits(Interval::M1).max_window_secs);
        assert_eq!(w.len(), 4, "26 days in windows of 7: {w:?}");
        assert!(
            w.iter()
                .all(|(s, e)| e.as_second() - s.as_second() <= 7 * DAY)
        );
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        r.check_age(yahoo_limits(Interval::M1), Interval::M1, "yahoo", now)
            .unwrap();
        let old = Range::new(date("2026-10-01"), date("2026-12-05")).unwrap();
        let e = old
            .check_age(yahoo_limits(Interval::M1), Interval::M1, "yahoo", now)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--from 2026-10-01: yahoo keeps 1m bars for the last 30 days"),
            "{e}"
        );
        assert!(
            old.check_age(yahoo_limits(Interval::D1), Interval::D1, "yahoo", now)
                .is_ok()
        );
    }

    #[test]
    fn reversed_ranges_name_both_flags() {
        let e = Range::new(date("2025-01-02"), date("2025-01-01")).unwrap_err();
        assert!(
            e.to_string()
                .contains("--to 2025-01-01 is before --from 2025-01-02")
        );
    }

    proptest! {
        #[test]
        fn windows_tile_the_range_exactly(days in 1i64..2000, max_days in 1i64..800) {
            let from = date("2020-01-01");
            let to = from.checked_add((days - 1).days()).unwrap();
            let r = Range::new(from, to).unwrap();
            let w = r.windows(max_days * DAY);
            prop_assert_eq!(w.first().map(|x| x.0), Some(r.start));
            prop_assert_eq!(w.last().map(|x| x.1), Some(r.end));
            for pair in w.windows(2) {
                prop_assert_eq!(pair[0].1, pair[1].0);
            }
            prop_assert!(w.iter().all(|(s, e)| s < e && e.as_second() - s.as_second() <= max_days * DAY));
            prop_assert_eq!(r.windows(max_days * DAY), w, "deterministic");
        }
    }
}
