//! The read API's query parameters, parsed by hand so that every mistake is a 400 naming the
//! parameter, the value given and what is allowed ([`QueryError::invalid`]); an unknown or
//! repeated parameter is refused too (a misspelt `timeframe` must not silently mean the
//! default).

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use quotestream_api::Instrument;

use super::error::QueryError;

/// The query string of one request, checked against the parameters its endpoint takes.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `raw` (the part after `?`). Empty values count as absent (`page_token=` is what
    /// many clients send on the first page).
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, QueryError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(QueryError::invalid(
                    k.as_ref(),
                    v.as_ref(),
                    if allowed.is_empty() {
                        "left out: this endpoint takes no parameters".to_owned()
                    } else {
                        format!("left out: this endpoint takes {}", allowed.join(", "))
                    },
                ));
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(QueryError::invalid(
                    k.as_ref(),
                    v.as_ref(),
                    "given once (it was repeated); list several symbols comma-separated in one `symbols`",
                ));
            }
            if !v.is_empty() {
                pairs.push((k.into_owned(), v.into_owned()));
            }
        }
        Ok(Self { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: `default` when absent, 1..=`max` otherwise.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, QueryError> {
        let Some(v) = self.get("limit") else {
            return Ok(default);
        };
        match v.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(QueryError::invalid(
                "limit",
                v,
                format!("a whole number from 1 to {max} (default {default})"),
            )),
        }
    }

    /// `sort`: `asc` (default) or `desc`.
    pub fn sort(&self) -> Result<Sort, QueryError> {
        match self.get("sort") {
            None | Some("asc") => Ok(Sort::Asc),
            Some("desc") => Ok(Sort::Desc),
            Some(v) => Err(QueryError::invalid("sort", v, "asc or desc (default asc)")),
        }
    }

    /// `timeframe`, required for bars.
    pub fn timeframe(&self) -> Result<Timeframe, QueryError> {
        let v = self.get("timeframe").unwrap_or(Timeframe::DEFAULT.name());
        Timeframe::ALL
            .into_iter()
            .find(|t| t.name() == v)
            .ok_or_else(|| QueryError::invalid("timeframe", v, Timeframe::allowed()))
    }

    /// `start` and `end` (both inclusive), defaulted and checked against `window`.
    pub fn range(&self, window: Window, now: Timestamp) -> Result<Range, QueryError> {
        let end = match self.get("end") {
            Some(v) => parse_time("end", v, Edge::End)?,
            None => now,
        };
        let start = match self.get("start") {
            Some(v) => parse_time("start", v, Edge::Start)?,
            None => end
                .checked_sub(window.default)
                .unwrap_or(LOWEST)
                .max(LOWEST),
        };
        if start > end {
            return Err(QueryError::invalid(
                "end",
                self.get("end")
                    .map_or_else(|| end.to_string(), str::to_owned),
                format!("at or after start ({start})"),
            ));
        }
        if end.duration_since(start) > window.max {
            return Err(QueryError::range_too_large(
                window.what,
                &format!("{start} .. {end}"),
                window.max_label,
            ));
        }
        Ok(Range { start, end })
    }

    /// `start` and `end` without a window (count): absent means unbounded.
    pub fn open_range(&self) -> Result<Range, QueryError> {
        let start = match self.get("start") {
            Some(v) => parse_time("start", v, Edge::Start)?,
            None => LOWEST,
        };
        let end = match self.get("end") {
            Some(v) => parse_time("end", v, Edge::End)?,
            None => Timestamp::MAX,
        };
        if start > end {
            return Err(QueryError::invalid(
                "end",
                self.get("end").unwrap_or_default(),
                format!("at or after start ({start})"),
            ));
        }
        Ok(Range { start, end })
    }

    /// `symbols=A,B,…` (required unless `optional`), upper case, at most `max`, sorted and
    /// without repeats.
    pub fn symbols(&self, optional: bool, max: usize) -> Result<Option<Vec<String>>, QueryError> {
        let Some(v) = self.get("symbols") else {
            if optional {
                return Ok(None);
            }
            return Err(QueryError::invalid(
                "symbols",
                "",
                "a comma-separated list of symbols, e.g. symbols=AAPL,MSFT",
            ));
        };
        let mut out = Vec::new();
        for s in v.split(',').map(str::trim) {
            out.push(symbol("symbols", s)?);
        }
        out.sort();
        out.dedup();
        if out.len() > max {
            return Err(QueryError::invalid(
                "symbols",
                v,
                format!("at most {max} symbols per request ({} given)", out.len()),
            ));
        }
        Ok(Some(out))
    }
}

/// Earlier than any stored quote (the contract refuses quotes before 1990), and a time
/// PostgreSQL can take (jiff's own minimum, year -9999, is outside timestamptz).
pub const LOWEST: Timestamp = Timestamp::constant(-2_208_988_800, 0); // 1900-01-01T00:00:00Z

/// One symbol (a path segment or an item of `symbols`): a canonical instrument id — a stock
/// (`AAPL`, `BRK.B`), an index (`^GSPC`) or a crypto pair (`BTC-USD`), see
/// `quotestream_api::instrument`.
pub fn symbol(parameter: &str, s: &str) -> Result<String, QueryError> {
    match Instrument::parse(s) {
        Ok(i) => Ok(i.to_string()),
        Err(e) => {
            let upper = s.to_ascii_uppercase();
            let hint = if upper != s && Instrument::parse(&upper).is_ok() {
                format!(" (write {upper})")
            } else {
                format!(" ({e})")
            };
            Err(QueryError::invalid(
                parameter.to_owned(),
                s,
                format!(
                    "a symbol of 1-5 upper-case letters with an optional share class, an index or a crypto pair, e.g. AAPL, BRK.B, ^GSPC or BTC-USD{hint}"
                ),
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Start,
    End,
}

const TIME_ALLOWED: &str = "an RFC 3339 time such as 2026-01-20T14:30:00Z (an offset is converted to UTC) or a date such as 2026-01-20 (a UTC day: its start for start, its end for end)";

/// An RFC 3339 time, or a UTC date: its first instant as a start, its last as an end (so
/// `start=2026-01-20&end=2026-01-20` is that whole day).
fn parse_time(parameter: &'static str, v: &str, edge: Edge) -> Result<Timestamp, QueryError> {
    if let Ok(t) = v.parse::<Timestamp>() {
        return Ok(t);
    }
    // An unencoded `+02:00` arrives as ` 02:00` (a `+` in a query string is a space).
    let b = v.as_bytes();
    if b.len() > 6 && b[b.len() - 6] == b' ' && b[b.len() - 3] == b':' {
        let fixed = format!("{}+{}", &v[..v.len() - 6], &v[v.len() - 5..]);
        if let Ok(t) = fixed.parse::<Timestamp>() {
            return Ok(t);
        }
    }
    let bad = || QueryError::invalid(parameter, v, TIME_ALLOWED);
    if v.len() == 10 {
        let date: Date = v.parse().map_err(|_| bad())?;
        let start = date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|_| bad())?
            .timestamp();
        return Ok(match edge {
            Edge::Start => start,
            Edge::End => start
                .checked_add(SignedDuration::from_hours(24))
                .ok()
                .and_then(|t| t.checked_sub(SignedDuration::from_nanos(1)).ok())
                .ok_or_else(bad)?,
        });
    }
    Err(bad())
}

/// A time range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// `sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Asc,
    Desc,
}

impl Sort {
    pub fn sql(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
}

/// How wide a range may be, and how wide it is when `start` is not given (from `end`).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub what: &'static str,
    pub default: SignedDuration,
    pub max: SignedDuration,
    pub max_label: &'static str,
}

const fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// Raw quotes: a day by default, a month at most per request (pages go on within it).
pub const QUOTES_WINDOW: Window = Window {
    what: "raw quotes",
    default: days(1),
    max: days(31),
    max_label: "31 days",
};

/// Bar timeframes (Alpaca's names). Stored: 1Min, 1Hour, 1Day (the rollups); 5Min and 15Min
/// are computed from the 1-minute rollup in SQL, never from raw quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeframe {
    Min1,
    Min5,
    Min15,
    Hour1,
    Day1,
}

impl Timeframe {
    pub const ALL: [Self; 5] = [Self::Min1, Self::Min5, Self::Min15, Self::Hour1, Self::Day1];
    pub const DEFAULT: Self = Self::Min1;

    pub fn name(self) -> &'static str {
        match self {
            Self::Min1 => "1Min",
            Self::Min5 => "5Min",
            Self::Min15 => "15Min",
            Self::Hour1 => "1Hour",
            Self::Day1 => "1Day",
        }
    }

    pub fn allowed() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|t| t.name()).collect();
        format!("one of {} (default 1Min)", names.join(", "))
    }

    /// The rollup the bars are read from (`quotestream_db::rollup::GRAINS`).
    pub fn source_grain(self) -> &'static str {
        match self {
            Self::Min1 | Self::Min5 | Self::Min15 => "1m",
            Self::Hour1 => "1h",
            Self::Day1 => "1d",
        }
    }

    /// Whether the bars are the rollup's rows as they are (no regrouping).
    pub fn stored(self) -> bool {
        matches!(self, Self::Min1 | Self::Hour1 | Self::Day1)
    }

    /// The bucket width as a SQL interval.
    pub fn interval(self) -> &'static str {
        match self {
            Self::Min1 => "1 minute",
            Self::Min5 => "5 minutes",
            Self::Min15 => "15 minutes",
            Self::Hour1 => "1 hour",
            Self::Day1 => "1 day",
        }
    }

    pub fn width(self) -> SignedDuration {
        match self {
            Self::Min1 => SignedDuration::from_mins(1),
            Self::Min5 => SignedDuration::from_mins(5),
            Self::Min15 => SignedDuration::from_mins(15),
            Self::Hour1 => SignedDuration::from_hours(1),
            Self::Day1 => days(1),
        }
    }

    /// Widest range per request (about 45 000 minute rollup rows at most per page scan) and
    /// the range when `start` is left out.
    pub fn window(self) -> Window {
        let (what, default, max, max_label) = match self {
            Self::Min1 => ("timeframe=1Min", days(1), days(31), "31 days"),
            Self::Min5 => ("timeframe=5Min", days(5), days(93), "93 days"),
            Self::Min15 => ("timeframe=15Min", days(15), days(366), "366 days"),
            Self::Hour1 => (
                "timeframe=1Hour",
                days(31),
                days(1096),
                "1096 days (3 years)",
            ),
            Self::Day1 => (
                "timeframe=1Day",
                days(366),
                days(36_525),
                "36525 days (100 years)",
            ),
        };
        Window {
            what,
            default,
            max,
            max_label,
        }
    }
}

/// Buckets start at UTC midnight of 2000-01-01, as the rollups' `date_bin` does.
pub fn floor_to(t: Timestamp, width: SignedDuration) -> Timestamp {
    let w = width.as_nanos();
    let origin: i128 = 946_684_800 * 1_000_000_000;
    let n = t.as_nanosecond() - origin;
    let floored = n - n.rem_euclid(w);
    Timestamp::from_nanosecond(floored + origin).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn params(q: &str, allowed: &[&str]) -> Result<Params, QueryError> {
        Params::parse(Some(q), allowed)
    }

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        let e = params("timeFrame=1Day", &["timeframe"]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("timeFrame"));
        assert!(e.allowed.as_deref().unwrap().contains("timeframe"));
        let e = params("limit=1&limit=2", &["limit"]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("limit"));
        assert!(
            params("page_token=", &["page_token"])
                .unwrap()
                .get("page_token")
                .is_none()
        );
    }

    #[test]
    fn every_bad_value_names_parameter_value_and_what_is_allowed() {
        let all = &["limit", "sort", "timeframe", "start", "end", "symbols"];
        let now: Timestamp = "2026-01-20T00:00:00Z".parse().unwrap();
        for (q, param) in [
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=ten", "limit"),
            ("sort=up", "sort"),
            ("timeframe=2Min", "timeframe"),
            ("start=yesterday", "start"),
            ("end=2026-13-01", "end"),
            ("start=2026-01-20&end=2026-01-19", "end"),
            ("symbols=aapl", "symbols"),
            ("symbols=AAPL,,MSFT", "symbols"),
        ] {
            let p = params(q, all).unwrap();
            let e = p
                .limit(1000, 10_000)
                .and_then(|_| p.sort())
                .and_then(|_| p.timeframe())
                .and_then(|_| p.range(QUOTES_WINDOW, now))
                .and_then(|_| p.symbols(true, 100))
                .unwrap_err();
            assert_eq!(e.parameter.as_deref(), Some(param), "{q}");
            assert!(e.value.is_some() && e.allowed.is_some(), "{q}: {e:?}");
            assert_eq!(e.status, 400);
        }
        let e = symbol("symbol", "aapl").unwrap_err();
        assert!(e.allowed.as_deref().unwrap().contains("write AAPL"));
    }

    #[test]
    fn ranges_default_from_end_and_are_bounded_by_the_window() {
        let now: Timestamp = "2026-01-20T12:00:00Z".parse().unwrap();
        let r = params("", &[]).unwrap().range(QUOTES_WINDOW, now).unwrap();
        assert_eq!(r.end, now);
        assert_eq!(r.start, "2026-01-19T12:00:00Z".parse().unwrap());
        let day = params("start=2026-01-20&end=2026-01-20", &["start", "end"])
            .unwrap()
            .range(QUOTES_WINDOW, now)
            .unwrap();
        assert_eq!(day.start, "2026-01-20T00:00:00Z".parse().unwrap());
        assert_eq!(day.end, "2026-01-20T23:59:59.999999999Z".parse().unwrap());
        let offset = params("start=2026-01-20T16:30:00+02:00", &["start"])
            .unwrap()
            .range(QUOTES_WINDOW, "2026-01-21T00:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(offset.start, "2026-01-20T14:30:00Z".parse().unwrap());
        let e = params("start=2025-01-01&end=2026-01-01", &["start", "end"])
            .unwrap()
            .range(Timeframe::Min1.window(), now)
            .unwrap_err();
        assert_eq!(e.code, "range_too_large");
        assert!(
            e.allowed.as_deref().unwrap().contains("31 days"),
            "names the window"
        );
        assert!(
            params("start=2024-01-01&end=2026-01-01", &["start", "end"])
                .unwrap()
                .range(Timeframe::Day1.window(), now)
                .is_ok()
        );
    }

    #[test]
    fn buckets_floor_like_date_bin() {
        let t: Timestamp = "2026-01-20T14:37:15.5Z".parse().unwrap();
        assert_eq!(
            floor_to(t, Timeframe::Min15.width()),
            "2026-01-20T14:30:00Z".parse().unwrap()
        );
        assert_eq!(
            floor_to(t, Timeframe::Day1.width()),
            "2026-01-20T00:00:00Z".parse().unwrap()
        );
        let before: Timestamp = "1999-12-31T23:59:00Z".parse().unwrap();
        assert_eq!(
            floor_to(before, Timeframe::Hour1.width()),
            "1999-12-31T23:00:00Z".parse().unwrap()
        );
    }
}
