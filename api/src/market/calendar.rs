//! The NYSE/NASDAQ trading calendar: which days the US equity market trades and which of them
//! close early. Both exchanges follow the same holiday schedule (NYSE Rule 7.2 and NASDAQ's
//! published calendar), so one calendar serves both.
//!
//! The regular holidays are computed from their rules rather than listed, so the calendar does
//! not expire at the end of a table; closures that no rule predicts (national days of mourning,
//! weather) are listed in [`SPECIAL_CLOSURES`], the one place to add a new one.

use jiff::civil::{Date, Weekday, date};

/// Why the market is closed on a weekday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holiday {
    NewYearsDay,
    MartinLutherKingJrDay,
    WashingtonsBirthday,
    GoodFriday,
    MemorialDay,
    Juneteenth,
    IndependenceDay,
    LaborDay,
    ThanksgivingDay,
    Christmas,
    /// A one-off closure from [`SPECIAL_CLOSURES`].
    Special(&'static str),
}

impl Holiday {
    pub fn name(self) -> &'static str {
        match self {
            Self::NewYearsDay => "New Year's Day",
            Self::MartinLutherKingJrDay => "Martin Luther King Jr. Day",
            Self::WashingtonsBirthday => "Washington's Birthday",
            Self::GoodFriday => "Good Friday",
            Self::MemorialDay => "Memorial Day",
            Self::Juneteenth => "Juneteenth National Independence Day",
            Self::IndependenceDay => "Independence Day",
            Self::LaborDay => "Labor Day",
            Self::ThanksgivingDay => "Thanksgiving Day",
            Self::Christmas => "Christmas Day",
            Self::Special(why) => why,
        }
    }
}

/// Closures no rule predicts, as announced by the exchanges. Add new ones here.
pub const SPECIAL_CLOSURES: &[(Date, &str)] = &[
    (date(2012, 10, 29), "Hurricane Sandy"),
    (date(2012, 10, 30), "Hurricane Sandy"),
    (
        date(2018, 12, 5),
        "National Day of Mourning for George H. W. Bush",
    ),
    (
        date(2025, 1, 9),
        "National Day of Mourning for Jimmy Carter",
    ),
];

/// What kind of day `day` is for the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// Saturday or Sunday.
    Weekend,
    Holiday(Holiday),
    /// Regular session 09:30–13:00, post-market until 17:00 (New York time).
    EarlyClose,
    /// Regular session 09:30–16:00.
    Full,
}

impl DayKind {
    pub fn trades(self) -> bool {
        matches!(self, Self::EarlyClose | Self::Full)
    }
}

/// The kind of `day` (a New York calendar date).
pub fn day_kind(day: Date) -> DayKind {
    if matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
        return DayKind::Weekend;
    }
    if let Some(holiday) = holiday(day) {
        return DayKind::Holiday(holiday);
    }
    if early_close(day) {
        return DayKind::EarlyClose;
    }
    DayKind::Full
}

/// The holiday observed on the weekday `day`, if any.
fn holiday(day: Date) -> Option<Holiday> {
    if let Some((_, why)) = SPECIAL_CLOSURES.iter().find(|(d, _)| *d == day) {
        return Some(Holiday::Special(why));
    }
    let year = day.year();
    let fixed = [
        (Holiday::NewYearsDay, observed_new_year(year)),
        (
            Holiday::Juneteenth,
            (year >= 2022).then(|| observed(date(year, 6, 19))),
        ),
        (Holiday::IndependenceDay, Some(observed(date(year, 7, 4)))),
        (Holiday::Christmas, Some(observed(date(year, 12, 25)))),
    ];
    let floating = [
        (
            Holiday::MartinLutherKingJrDay,
            nth_weekday(year, 1, Weekday::Monday, 3),
        ),
        (
            Holiday::WashingtonsBirthday,
            nth_weekday(year, 2, Weekday::Monday, 3),
        ),
        (
            Holiday::GoodFriday,
            easter(year).checked_sub(jiff::Span::new().days(2)).ok(),
        ),
        (Holiday::MemorialDay, last_weekday(year, 5, Weekday::Monday)),
        (Holiday::LaborDay, nth_weekday(year, 9, Weekday::Monday, 1)),
        (
            Holiday::ThanksgivingDay,
            nth_weekday(year, 11, Weekday::Thursday, 4),
        ),
    ];
    fixed
        .into_iter()
        .chain(floating)
        .find(|(_, d)| *d == Some(day))
        .map(|(h, _)| h)
}

/// The 13:00 closes: the day before Independence Day, the day after Thanksgiving and Christmas
/// Eve, each only when it is a trading weekday that is not itself the observed holiday (July 3
/// on a Friday is the observed Independence Day when July 4 is a Saturday; December 24 on a
/// Friday is the observed Christmas).
fn early_close(day: Date) -> bool {
    let year = day.year();
    let mon_to_thu = |d: Date| {
        matches!(
            d.weekday(),
            Weekday::Monday | Weekday::Tuesday | Weekday::Wednesday | Weekday::Thursday
        )
    };
    let july_3 = date(year, 7, 3);
    let christmas_eve = date(year, 12, 24);
    let after_thanksgiving =
        nth_weekday(year, 11, Weekday::Thursday, 4).and_then(|t| t.tomorrow().ok());
    (day == july_3 && mon_to_thu(day))
        || (day == christmas_eve && mon_to_thu(day))
        || Some(day) == after_thanksgiving
}

/// A fixed-date holiday on a Saturday is observed the Friday before, on a Sunday the Monday
/// after.
fn observed(day: Date) -> Date {
    let shifted = match day.weekday() {
        Weekday::Saturday => day.yesterday(),
        Weekday::Sunday => day.tomorrow(),
        _ => Ok(day),
    };
    shifted.unwrap_or(day)
}

/// New Year's Day on a Saturday is not observed at all (NYSE Rule 7.2: the Friday before would
/// close the year's last day of trading); on a Sunday it moves to Monday.
fn observed_new_year(year: i16) -> Option<Date> {
    let day = date(year, 1, 1);
    match day.weekday() {
        Weekday::Saturday => None,
        _ => Some(observed(day)),
    }
}

/// The `n`th `weekday` of `month` (1-based).
fn nth_weekday(year: i16, month: i8, weekday: Weekday, n: i8) -> Option<Date> {
    date(year, month, 1).nth_weekday_of_month(n, weekday).ok()
}

/// The last `weekday` of `month`.
fn last_weekday(year: i16, month: i8, weekday: Weekday) -> Option<Date> {
    date(year, month, 1).nth_weekday_of_month(-1, weekday).ok()
}

/// Easter Sunday (Gregorian), by the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
fn easter(year: i16) -> Date {
    let y = i32::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    // month is 3 or 4 and day 1..=31 by construction, so both fit an i8.
    date(year, month as i8, day as i8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        text.parse().unwrap()
    }

    /// The exchanges' published holiday lists (nyse.com/markets/hours-calendars), for the
    /// current and next year and the years with the unusual cases.
    #[test]
    fn the_published_holidays() {
        let published: &[(&str, &[&str])] = &[
            (
                "2025",
                &[
                    "2025-01-01",
                    "2025-01-09",
                    "2025-01-20",
                    "2025-02-17",
                    "2025-04-18",
                    "2025-05-26",
                    "2025-06-19",
                    "2025-07-04",
                    "2025-09-01",
                    "2025-11-27",
                    "2025-12-25",
                ],
            ),
            (
                "2026",
                &[
                    "2026-01-01",
                    "2026-01-19",
                    "2026-02-16",
                    "2026-04-03",
                    "2026-05-25",
                    "2026-06-19",
                    "2026-07-03",
                    "2026-09-07",
                    "2026-11-26",
                    "2026-12-25",
                ],
            ),
            (
                "2027",
                &[
                    "2027-01-01",
                    "2027-01-18",
                    "2027-02-15",
                    "2027-03-26",
                    "2027-05-31",
                    "2027-06-18",
                    "2027-07-05",
                    "2027-09-06",
                    "2027-11-25",
                    "2027-12-24",
                ],
            ),
        ];
        for (year, days) in published {
            let year: i16 = year.parse().unwrap();
            let computed: Vec<Date> = every_day(year)
                .filter(|day| matches!(day_kind(*day), DayKind::Holiday(_)))
                .collect();
            let expected: Vec<Date> = days.iter().map(|t| d(t)).collect();
            assert_eq!(computed, expected, "holidays of {year}");
        }
    }

    #[test]
    fn the_published_early_closes() {
        let published: &[(i16, &[&str])] = &[
            (2024, &["2024-07-03", "2024-11-29", "2024-12-24"]),
            (2025, &["2025-07-03", "2025-11-28", "2025-12-24"]),
            // July 4 on a Saturday: the Friday is the holiday and Thursday trades a full day.
            (2026, &["2026-11-27", "2026-12-24"]),
            // Christmas on a Saturday: the Friday is the holiday, no early close before it.
            (2027, &["2027-11-26"]),
        ];
        for (year, days) in published {
            let computed: Vec<Date> = every_day(*year)
                .filter(|day| day_kind(*day) == DayKind::EarlyClose)
                .collect();
            let expected: Vec<Date> = days.iter().map(|t| d(t)).collect();
            assert_eq!(computed, expected, "early closes of {year}");
        }
    }

    #[test]
    fn the_unusual_cases() {
        // New Year's Day 2022 was a Saturday: not observed, Friday 2021-12-31 traded.
        assert_eq!(day_kind(d("2021-12-31")), DayKind::Full);
        // 2028 too.
        assert_eq!(day_kind(d("2027-12-31")), DayKind::Full);
        // New Year's Day 2023 was a Sunday: Monday closed.
        assert_eq!(
            day_kind(d("2023-01-02")),
            DayKind::Holiday(Holiday::NewYearsDay)
        );
        // Juneteenth only from 2022.
        assert_eq!(day_kind(d("2021-06-18")), DayKind::Full);
        assert_eq!(
            day_kind(d("2022-06-20")),
            DayKind::Holiday(Holiday::Juneteenth)
        );
        // Good Friday follows Easter.
        assert_eq!(
            day_kind(d("2024-03-29")),
            DayKind::Holiday(Holiday::GoodFriday)
        );
        assert_eq!(
            day_kind(d("2019-04-19")),
            DayKind::Holiday(Holiday::GoodFriday)
        );
        assert_eq!(day_kind(d("2026-12-05")), DayKind::Weekend);
        assert!(
            !day_kind(d("2025-01-09")).trades(),
            "the Carter day of mourning"
        );
    }

    fn every_day(year: i16) -> impl Iterator<Item = Date> {
        let first = date(year, 1, 1);
        first
            .series(jiff::Span::new().days(1))
            .take_while(move |d| d.year() == year)
    }
}
