//! Bar intervals, named as Yahoo names them (`1m` … `3mo`), and what each means for storage:
//! the timeframe stored (`60m` is stored as `1h`), the bucket a bar is filed under, and when a
//! bar is complete.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

/// Every interval Yahoo's chart API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    M1,
    M2,
    M5,
    M15,
    M30,
    H1,
    M90,
    D1,
    D5,
    W1,
    Mo1,
    Mo3,
}

const DAY: i64 = 86_400;

/// Seconds from the Unix epoch to 2000-01-01T00:00Z, the rollups' bucket origin
/// (`quotestream_db::rollup::ORIGIN`).
const ORIGIN: i64 = 946_684_800;

impl Interval {
    pub const ALL: [Interval; 12] = [
        Self::M1,
        Self::M2,
        Self::M5,
        Self::M15,
        Self::M30,
        Self::H1,
        Self::M90,
        Self::D1,
        Self::D5,
        Self::W1,
        Self::Mo1,
        Self::Mo3,
    ];

    /// Parses Yahoo's spelling; `60m` is the same as `1h`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "60m" {
            return Ok(Self::H1);
        }
        Self::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not an interval; use one of {}",
                    Self::ALL.map(Self::name).join(", ")
                )
            })
    }

    /// The stored timeframe, and the value of Yahoo's `interval` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::M1 => "1m",
            Self::M2 => "2m",
            Self::M5 => "5m",
            Self::M15 => "15m",
            Self::M30 => "30m",
            Self::H1 => "1h",
            Self::M90 => "90m",
            Self::D1 => "1d",
            Self::D5 => "5d",
            Self::W1 => "1wk",
            Self::Mo1 => "1mo",
            Self::Mo3 => "3mo",
        }
    }

    /// The nominal width in seconds (months as their longest: 31 and 92 days).
    pub fn seconds(self) -> i64 {
        match self {
            Self::M1 => 60,
            Self::M2 => 120,
            Self::M5 => 300,
            Self::M15 => 900,
            Self::M30 => 1800,
            Self::H1 => 3600,
            Self::M90 => 5400,
            Self::D1 => DAY,
            Self::D5 => 5 * DAY,
            Self::W1 => 7 * DAY,
            Self::Mo1 => 31 * DAY,
            Self::Mo3 => 92 * DAY,
        }
    }

    pub fn is_intraday(self) -> bool {
        self.seconds() < DAY
    }

    /// The bucket a bar starting at `start` is filed under: intraday bars in the UTC-aligned
    /// bucket of their width that holds their start (as the rollups' `date_bin`), longer ones
    /// under the UTC day of their start. So a stock's daily bar (Yahoo stamps it at the 09:30
    /// New York open) and the live daily rollup share the key of that UTC day.
    pub fn bucket(self, start: Timestamp) -> Timestamp {
        let width = self.seconds().min(DAY);
        let s = start.as_second();
        let binned = ORIGIN + (s - ORIGIN).div_euclid(width) * width;
        Timestamp::from_second(binned).unwrap_or(start)
    }

    /// When a bar starting at `start` is complete at the latest.
    pub fn end_of(self, start: Timestamp) -> Timestamp {
        start
            .checked_add(SignedDuration::from_secs(self.seconds()))
            .unwrap_or(start)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_60m_is_1h() {
        for i in Interval::ALL {
            assert_eq!(Interval::parse(i.name()), Ok(i));
        }
        assert_eq!(Interval::parse("60m"), Ok(Interval::H1));
        let e = Interval::parse("3m").unwrap_err();
        assert!(e.contains("1m, 2m") && e.contains("3mo"), "{e}");
    }

    #[test]
    fn buckets_are_utc_aligned() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        // A daily bar stamped at the New York open belongs to that UTC day.
        assert_eq!(
            Interval::D1.bucket(t("2024-03-11T13:30:00Z")),
            t("2024-03-11T00:00:00Z")
        );
        // Yahoo's hourly bars of US stocks start at :30; they are filed under the UTC hour.
        assert_eq!(
            Interval::H1.bucket(t("2024-03-11T13:30:00Z")),
            t("2024-03-11T13:00:00Z")
        );
        assert_eq!(
            Interval::M1.bucket(t("2024-03-11T13:30:00Z")),
            t("2024-03-11T13:30:00Z")
        );
        assert_eq!(
            Interval::M90.bucket(t("2024-03-11T13:30:00Z")),
            t("2024-03-11T13:30:00Z")
        );
        assert_eq!(
            Interval::W1.bucket(t("2024-03-11T13:30:00Z")),
            t("2024-03-11T00:00:00Z")
        );
    }
}
