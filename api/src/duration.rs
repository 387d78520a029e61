//! Go-style duration strings (`500ms`, `5s`, `1m30s`), the format Kubernetes users already
//! write in manifests and that the API server's CEL `duration()` understands.

use std::time::Duration;

/// The pattern the CRD schema puts on duration fields; [`parse`] accepts exactly these strings.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "{input:?} is not a duration: {why}; write a number followed by a unit (ns, us, ms, s, m, h), e.g. 500ms, 5s, 1m30s"
    )]
    Malformed { input: String, why: &'static str },
    #[error("{input:?} is out of range: use a duration between {} and {}", format(*.min), format(*.max))]
    OutOfRange {
        input: String,
        min: Duration,
        max: Duration,
    },
}

/// The durations a setting accepts, both ends included. Every duration a worker or store acts
/// on goes through one: a zero period panics `tokio::time::interval`, and a duration near
/// `u64::MAX` nanoseconds overflows an `Instant` it is added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

impl Bounds {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// Parses `input` and checks it is within the bounds.
    pub fn parse(&self, input: &str) -> Result<Duration, DurationError> {
        let d = parse(input)?;
        if d < self.min || d > self.max {
            return Err(DurationError::OutOfRange {
                input: input.to_owned(),
                min: self.min,
                max: self.max,
            });
        }
        Ok(d)
    }
}

/// Parses a Go duration string. Negative durations and a bare `0` are rejected: no field of a
/// QuoteStream takes either.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError::Malformed {
        input: input.to_owned(),
        why,
    };
    if input.is_empty() {
        return Err(err("it is empty"));
    }
    let mut rest = input;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("the last number has no unit"))?;
        if number_len == 0 {
            return Err(err("a unit is not preceded by a number"));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let nanos_per_unit: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err("the unit is unknown")),
        };
        let value: f64 = number.parse().map_err(|_| err("a number is malformed"))?;
        let nanos = value * nanos_per_unit;
        if !nanos.is_finite() || nanos > u64::MAX as f64 {
            return Err(err("it is too long"));
        }
        total = total
            .checked_add(Duration::from_nanos(nanos.round() as u64))
            .ok_or_else(|| err("it is too long"))?;
        rest = tail;
    }
    Ok(total)
}

/// Formats a duration the way Go prints it for the common cases (`500ms`, `5s`, `1m30s`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return format!("{}us", d.as_micros());
    }
    if ms < 1000 || !ms.is_multiple_of(1000) {
        return if ms < 1000 {
            format!("{ms}ms")
        } else {
            format!("{}s", d.as_secs_f64())
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn rejects_malformed_input_with_a_hint() {
        for bad in ["", "5", "s", "5x", "-5s", "5 s", "1..5s"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("e.g. 500ms"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn bounds_refuse_zero_and_huge_durations_naming_the_range() {
        let bounds = Bounds::new(Duration::from_millis(1), Duration::from_secs(3600));
        assert_eq!(bounds.parse("5s"), Ok(Duration::from_secs(5)));
        for bad in ["0s", "0ms", "2h", "5000000h"] {
            let err = bounds.parse(bad).unwrap_err().to_string();
            assert!(err.contains("between 1ms and 1h"), "{bad}: {err}");
        }
        assert!(
            bounds
                .parse("-1s")
                .unwrap_err()
                .to_string()
                .contains("e.g. 500ms")
        );
    }

    proptest! {
        #[test]
        fn bounded_parse_never_panics_and_stays_within_bounds(input in "\\PC{0,24}|[0-9.]{1,30}(ns|us|ms|s|m|h)") {
            let bounds = Bounds::new(Duration::from_millis(1), Duration::from_secs(3600));
            if let Ok(d) = bounds.parse(&input) {
                prop_assert!(d >= bounds.min && d <= bounds.max);
            }
        }

        #[test]
        fn format_then_parse_round_trips(ms in 1u64..10_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
