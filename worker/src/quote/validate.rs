//! Contract validation: what a source produced becomes a [`Quote`] or a [`ValidationError`]
//! that names the field, the value and the rule.

use jiff::{SignedDuration, Timestamp};
use quotestream_api::Ticker;
use quotestream_api::ticker::TickerError;

use super::Quote;

/// A quote as a source decoded it, before validation. Sources map vendor symbols to canonical
/// tickers and vendor times to [`Timestamp`] (UTC by construction); everything else is checked
/// here, once, for every source.
#[derive(Debug, Clone, PartialEq)]
pub struct RawQuote {
    pub ticker: String,
    pub timestamp: Timestamp,
    pub price: f64,
    /// Vendors send volume as a float or an integer; it must be a whole number ≥ 0.
    pub volume: f64,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub source: &'static str,
}

#[cfg(test)]
impl RawQuote {
    /// A quote of a trade alone (no bid, ask, open, high or low), as the unit tests build them.
    pub(crate) fn trade(
        ticker: &str,
        timestamp: Timestamp,
        price: f64,
        volume: f64,
        source: &'static str,
    ) -> Self {
        Self {
            ticker: ticker.into(),
            timestamp,
            price,
            volume,
            bid: None,
            ask: None,
            open: None,
            high: None,
            low: None,
            source,
        }
    }
}

/// Why a quote was dropped. [`ValidationError::reason`] is the metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("ticker: {0}")]
    Ticker(#[from] TickerError),
    #[error("{ticker}: timestamp {timestamp} is {why}")]
    Timestamp {
        ticker: String,
        timestamp: Timestamp,
        why: &'static str,
    },
    #[error("{ticker}: price {value} must be a finite number > 0")]
    Price { ticker: String, value: f64 },
    #[error("{ticker}: volume {value} must be a whole number >= 0")]
    Volume { ticker: String, value: f64 },
    #[error("{ticker}: {field} {value} must be a finite number > 0 when present")]
    Optional {
        ticker: String,
        field: &'static str,
        value: f64,
    },
    #[error("{ticker}: bid {bid} is above ask {ask}")]
    CrossedBook { ticker: String, bid: f64, ask: f64 },
    #[error("{ticker}: high {high} is below low {low}")]
    Range { ticker: String, high: f64, low: f64 },
}

impl ValidationError {
    /// Bounded label for `streamer_validation_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Ticker(_) => "ticker",
            Self::Timestamp { .. } => "timestamp",
            Self::Price { .. } => "price",
            Self::Volume { .. } => "volume",
            Self::Optional { .. } => "optional_field",
            Self::CrossedBook { .. } => "bid_above_ask",
            Self::Range { .. } => "high_below_low",
        }
    }
}

/// Quotes older than this are a unit bug (epoch milliseconds read as seconds land in 1970).
const EARLIEST: Timestamp = Timestamp::constant(631_152_000, 0); // 1990-01-01T00:00:00Z
/// How far into the future a quote may be dated by default: a few seconds of clock skew between
/// a vendor and this node. Anything later is a bad clock or a unit bug (seconds read as
/// milliseconds land in the far future), never a trade: publishing it would store a price
/// from the future (`--max-clock-skew` changes it).
pub const DEFAULT_MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(5);

/// Validates one quote against the contract, as of `now`, allowing the default clock skew.
pub fn validate(raw: RawQuote, now: Timestamp) -> Result<Quote, ValidationError> {
    validate_with_skew(raw, now, DEFAULT_MAX_CLOCK_SKEW)
}

/// Validates one quote against the contract, as of `now`; its timestamp may be up to
/// `max_skew` ahead of `now`.
pub fn validate_with_skew(
    raw: RawQuote,
    now: Timestamp,
    max_skew: SignedDuration,
) -> Result<Quote, ValidationError> {
    let ticker = Ticker::parse(&raw.ticker)?;
    let name = || raw.ticker.clone();
    let bad_time = |why| ValidationError::Timestamp {
        ticker: name(),
        timestamp: raw.timestamp,
        why,
    };
    if raw.timestamp < EARLIEST {
        return Err(bad_time(
            "before 1990 (epoch milliseconds read as seconds?)",
        ));
    }
    if raw.timestamp > now.saturating_add(max_skew).unwrap_or(now) {
        return Err(bad_time(
            "further in the future than the allowed clock skew (--max-clock-skew, default 5s; a vendor clock ahead, or epoch seconds read as milliseconds?)",
        ));
    }
    if !(raw.price.is_finite() && raw.price > 0.0) {
        return Err(ValidationError::Price {
            ticker: name(),
            value: raw.price,
        });
    }
    if !(raw.volume.is_finite() && raw.volume >= 0.0 && raw.volume.fract() == 0.0)
        || raw.volume > u64::MAX as f64
    {
        return Err(ValidationError::Volume {
            ticker: name(),
            value: raw.volume,
        });
    }
    for (field, value) in [
        ("bid", raw.bid),
        ("ask", raw.ask),
        ("open", raw.open),
        ("high", raw.high),
        ("low", raw.low),
    ] {
        if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(ValidationError::Optional {
                ticker: name(),
                field,
                value: v,
            });
        }
    }
    if let (Some(bid), Some(ask)) = (raw.bid, raw.ask)
        && bid > ask
    {
        return Err(ValidationError::CrossedBook {
            ticker: name(),
            bid,
            ask,
        });
    }
    if let (Some(high), Some(low)) = (raw.high, raw.low)
        && high < low
    {
        return Err(ValidationError::Range {
            ticker: name(),
            high,
            low,
        });
    }
    Ok(Quote {
        ticker,
        timestamp: raw.timestamp,
        price: raw.price,
        volume: raw.volume as u64,
        bid: raw.bid,
        ask: raw.ask,
        open: raw.open,
        high: raw.high,
        low: raw.low,
        source: raw.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> Timestamp {
        "2026-01-20T15:00:00Z".parse().unwrap()
    }

    fn raw() -> RawQuote {
        RawQuote {
            ticker: "AAPL".into(),
            timestamp: "2026-01-20T14:30:15.123Z".parse().unwrap(),
            price: 185.50,
            volume: 45_000_000.0,
            bid: Some(185.48),
            ask: Some(185.52),
            open: None,
            high: None,
            low: None,
            source: "yfinance",
        }
    }

    fn reason(q: RawQuote) -> &'static str {
        validate(q, now()).unwrap_err().reason()
    }

    #[test]
    fn the_contract_example_is_valid() {
        let q = validate(raw(), now()).unwrap();
        assert_eq!(q.volume, 45_000_000);
        assert_eq!(q.ticker.as_str(), "AAPL");
    }

    #[test]
    fn each_rule_has_its_reason() {
        assert_eq!(
            reason(RawQuote {
                ticker: "aapl".into(),
                ..raw()
            }),
            "ticker"
        );
        assert_eq!(
            reason(RawQuote {
                price: 0.0,
                ..raw()
            }),
            "price"
        );
        assert_eq!(
            reason(RawQuote {
                price: f64::NAN,
                ..raw()
            }),
            "price"
        );
        assert_eq!(
            reason(RawQuote {
                price: f64::INFINITY,
                ..raw()
            }),
            "price"
        );
        assert_eq!(
            reason(RawQuote {
                volume: -1.0,
                ..raw()
            }),
            "volume"
        );
        assert_eq!(
            reason(RawQuote {
                volume: 1.5,
                ..raw()
            }),
            "volume"
        );
        assert_eq!(
            reason(RawQuote {
                bid: Some(186.0),
                ..raw()
            }),
            "bid_above_ask"
        );
        assert_eq!(
            reason(RawQuote {
                ask: Some(-1.0),
                ..raw()
            }),
            "optional_field"
        );
        assert_eq!(
            reason(RawQuote {
                high: Some(1.0),
                low: Some(2.0),
                ..raw()
            }),
            "high_below_low"
        );
        let epoch_ms_as_s = Timestamp::from_second(1_768_919_415).unwrap();
        assert_eq!(
            reason(RawQuote {
                timestamp: epoch_ms_as_s
                    .checked_add(SignedDuration::from_hours(24 * 365 * 30))
                    .unwrap(),
                ..raw()
            }),
            "timestamp"
        );
        assert_eq!(
            reason(RawQuote {
                timestamp: Timestamp::from_millisecond(1_768_919).unwrap(),
                ..raw()
            }),
            "timestamp"
        );
    }

    #[test]
    fn the_future_window_is_a_few_seconds_of_skew_by_default_and_configurable() {
        let at = |secs| RawQuote {
            timestamp: now().checked_add(SignedDuration::from_secs(secs)).unwrap(),
            ..raw()
        };
        assert!(validate(at(5), now()).is_ok(), "5 s of skew is allowed");
        assert_eq!(reason(at(6)), "timestamp");
        assert_eq!(
            reason(at(3599)),
            "timestamp",
            "an hour ahead is not a trade"
        );
        let wider = SignedDuration::from_secs(60);
        assert!(validate_with_skew(at(59), now(), wider).is_ok());
        assert!(validate_with_skew(at(1), now(), SignedDuration::ZERO).is_err());
    }

    #[test]
    fn errors_name_field_and_value() {
        let err = validate(
            RawQuote {
                bid: Some(186.0),
                ..raw()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "AAPL: bid 186 is above ask 185.52");
        let err = validate(
            RawQuote {
                price: -3.0,
                ..raw()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "AAPL: price -3 must be a finite number > 0"
        );
    }

    proptest! {
        #[test]
        fn accepted_quotes_satisfy_every_invariant(
            price in prop::num::f64::ANY, volume in prop::num::f64::ANY,
            bid in prop::option::of(prop::num::f64::ANY), ask in prop::option::of(prop::num::f64::ANY),
            ticker in "[A-Za-z.]{0,7}",
        ) {
            if let Ok(q) = validate(RawQuote { ticker, price, volume, bid, ask, ..raw() }, now()) {
                prop_assert!(q.price.is_finite() && q.price > 0.0);
                prop_assert!(q.bid.is_none_or(|b| b.is_finite() && b > 0.0));
                if let (Some(b), Some(a)) = (q.bid, q.ask) { prop_assert!(b <= a); }
                prop_assert!(Ticker::parse(q.ticker.as_str()).is_ok());
            }
        }
    }
}
