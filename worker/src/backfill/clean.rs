//! One rule, for every source, from what a vendor sent to the bars stored — nothing dropped
//! without being counted:
//! - a bar with a null price (Yahoo's nulls: no trade in the bar, a halt) is not stored, and is
//!   listed as an explained gap (`nulls`); a null volume alone is stored as 0;
//! - a bar whose prices are not finite and > 0, or whose high is below its low or open/close
//!   outside [low, high], is not stored (`invalid`, logged);
//! - a bar starting outside the window (Yahoo appends the bar in progress after `period2`) is
//!   not stored (`outside`);
//! - a bar not yet complete at the time of the fetch is not stored (`partial`): a later run
//!   stores it whole;
//! - two bars in one bucket (Yahoo sends revisions of a bar twice): the later one in the
//!   answer is kept (`duplicates`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use quotestream_db::VendorBar;

use super::interval::Interval;
use super::sources::RawBar;

/// What happened to the bars of one answer (or a sum of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub received: u64,
    pub stored: u64,
    pub nulls: u64,
    pub invalid: u64,
    pub outside: u64,
    pub partial: u64,
    pub duplicates: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.received += o.received;
        self.stored += o.stored;
        self.nulls += o.nulls;
        self.invalid += o.invalid;
        self.outside += o.outside;
        self.partial += o.partial;
        self.duplicates += o.duplicates;
    }
}

/// The bars to store and the counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleaned {
    pub bars: Vec<VendorBar>,
    pub counts: Counts,
    /// Starts of the null bars (the explained gaps).
    pub null_starts: Vec<Timestamp>,
}

pub fn clean(
    raw: Vec<RawBar>,
    symbol: &str,
    interval: Interval,
    start: Timestamp,
    end: Timestamp,
    now: Timestamp,
) -> Cleaned {
    let mut counts = Counts {
        received: raw.len() as u64,
        ..Counts::default()
    };
    let mut null_starts = Vec::new();
    let mut kept: BTreeMap<Timestamp, VendorBar> = BTreeMap::new();
    for bar in raw {
        if bar.start < start || bar.start >= end {
            counts.outside += 1;
            continue;
        }
        let (Some(open), Some(high), Some(low), Some(close)) =
            (bar.open, bar.high, bar.low, bar.close)
        else {
            counts.nulls += 1;
            null_starts.push(bar.start);
            continue;
        };
        if interval.end_of(bar.start) > now {
            counts.partial += 1;
            continue;
        }
        let volume = bar.volume.unwrap_or(0.0);
        let prices_ok = [open, high, low, close]
            .iter()
            .all(|p| p.is_finite() && *p > 0.0)
            && low <= high
            && (low..=high).contains(&open)
            && (low..=high).contains(&close);
        let volume_ok = (0.0..9.2e18).contains(&volume);
        if !prices_ok || !volume_ok {
            counts.invalid += 1;
            tracing::warn!(symbol, start = %bar.start, open, high, low, close, volume, "backfill: a bar with impossible values is not stored");
            continue;
        }
        let bucket = interval.bucket(bar.start);
        let stored = VendorBar {
            symbol: symbol.to_owned(),
            timeframe: interval.name().to_owned(),
            bucket,
            open,
            high,
            low,
            close,
            volume: volume.round() as i64,
            trades: bar.trades,
            vwap: bar.vwap,
        };
        if kept.insert(bucket, stored).is_some() {
            counts.duplicates += 1;
        }
    }
    counts.stored = kept.len() as u64;
    Cleaned {
        bars: kept.into_values().collect(),
        counts,
        null_starts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(start: i64, close: Option<f64>) -> RawBar {
        RawBar {
            start: Timestamp::from_second(start).unwrap(),
            open: close,
            high: close.map(|c| c + 1.0),
            low: close.map(|c| c - 1.0),
            close,
            volume: Some(10.0),
            trades: None,
            vwap: None,
        }
    }

    #[test]
    fn every_bar_is_stored_or_counted() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let raw = vec![
            bar(0, Some(10.0)),
            bar(60, None),
            bar(120, Some(11.0)),
            bar(120, Some(12.0)),
            bar(180, Some(-1.0)),
            bar(600, Some(13.0)),
            bar(290, Some(13.0)),
        ];
        let c = clean(raw, "AAPL", Interval::M1, t(0), t(600), t(300));
        assert_eq!(c.bars.len(), 2);
        assert_eq!(c.bars[1].close, 12.0, "the later copy of a bar wins");
        assert_eq!(c.null_starts, vec![t(60)]);
        let n = c.counts;
        assert_eq!(
            (n.nulls, n.duplicates, n.invalid, n.outside, n.partial),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(
            n.received,
            n.stored + n.nulls + n.duplicates + n.invalid + n.outside + n.partial
        );
    }
}
