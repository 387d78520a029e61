//! Where every quote went: the conservation law a stopped worker's counters obey, read once at
//! exit and logged as one summary line per sink and one for the worker.
//!
//! - the pipeline: `fetched = invalid + duplicates + accepted` — every quote a source handed
//!   over was refused by validation (`streamer_validation_errors_total{reason}`, out-of-order
//!   stragglers included), was a repeat (`streamer_duplicate_quotes_total`), or went to every
//!   sink;
//! - each sink: `accepted{sink} = published{sink} + Σ dropped{sink,reason}` — what the pipeline
//!   handed it was confirmed or counted as dropped with a reason.
//!
//! Together: `fetched × sinks = Σ published + Σ dropped + sinks × (invalid + duplicates)`.
//! While the worker runs, the difference is what is queued or in flight; once it has stopped
//! it is 0 (docs/worker.md, Reliability).

use std::time::Duration;

use prometheus::IntCounterVec;
use prometheus::core::Collector;

use crate::metrics::{DropReason, Metrics};

/// One sink's side of the law.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkAccount {
    pub sink: &'static str,
    /// Quotes the pipeline handed to the sink.
    pub accepted: u64,
    /// Quotes the sink's destination confirmed.
    pub published: u64,
    /// Quotes given up, by reason (every reason, zeros included).
    pub dropped: Vec<(DropReason, u64)>,
}

impl SinkAccount {
    fn read(metrics: &Metrics, sink: &'static str) -> Self {
        Self {
            sink,
            accepted: metrics.quotes_accepted.with_label_values(&[sink]).get(),
            published: metrics.quotes_published.with_label_values(&[sink]).get(),
            dropped: DropReason::ALL
                .iter()
                .map(|&r| (r, metrics.dropped(sink, r).get()))
                .collect(),
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    /// Quotes neither confirmed nor dropped: queued or in flight while the sink runs, 0 once
    /// it has stopped (negative would mean a quote counted twice).
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.accepted) - i128::from(self.published) - i128::from(self.dropped_total())
    }

    /// `reason=count` for every reason with quotes, e.g. `shutdown=120 queue_full=3`.
    fn dropped_text(&self) -> String {
        let parts: Vec<String> = self
            .dropped
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        if parts.is_empty() {
            return "none".to_owned();
        }
        parts.join(" ")
    }
}

/// The whole worker's side of the law.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// Quotes the source handed to the pipeline.
    pub fetched: u64,
    /// Refused by validation (every reason, out-of-order included).
    pub invalid: u64,
    /// Repeats of a published (ticker, timestamp).
    pub duplicates: u64,
    pub sinks: Vec<SinkAccount>,
}

impl Accounts {
    /// The counters of `metrics` for the sinks named.
    pub fn read(metrics: &Metrics, sinks: &[&'static str]) -> Self {
        Self {
            fetched: metrics.quotes_fetched.get(),
            invalid: sum(&metrics.validation_errors),
            duplicates: metrics.duplicates.get(),
            sinks: sinks
                .iter()
                .map(|s| SinkAccount::read(metrics, s))
                .collect(),
        }
    }

    /// Whether every quote is accounted for: the pipeline's law and each sink's.
    pub fn balanced(&self) -> bool {
        self.sinks.iter().all(|s| {
            s.unaccounted() == 0 && self.fetched == self.invalid + self.duplicates + s.accepted
        })
    }

    /// The summary an operator reads after a stop: one line per sink, then one for the worker
    /// (`worker stopped`), each with flat fields (JSON logs keep them as numbers).
    pub fn log(&self, shutdown_took: Duration) {
        for s in &self.sinks {
            let reason = |r: DropReason| {
                s.dropped
                    .iter()
                    .find(|(x, _)| *x == r)
                    .map_or(0, |(_, n)| *n)
            };
            tracing::info!(
                sink = s.sink,
                accepted = s.accepted,
                published = s.published,
                dropped = s.dropped_total(),
                dropped_queue_full = reason(DropReason::QueueFull),
                dropped_unavailable = reason(DropReason::Unavailable),
                dropped_shutdown = reason(DropReason::Shutdown),
                dropped_rejected = reason(DropReason::Rejected),
                dropped_contract = reason(DropReason::Contract),
                dropped_encode = reason(DropReason::Encode),
                dropped_abandoned = reason(DropReason::Abandoned),
                unaccounted = u64::try_from(s.unaccounted().unsigned_abs()).unwrap_or(u64::MAX),
                "sink stopped: {} accepted = {} published + {} dropped ({})",
                s.accepted,
                s.published,
                s.dropped_total(),
                s.dropped_text(),
            );
        }
        let balanced = self.balanced();
        let sinks: Vec<&str> = self.sinks.iter().map(|s| s.sink).collect();
        let published: u64 = self.sinks.iter().map(|s| s.published).sum();
        let dropped: u64 = self.sinks.iter().map(SinkAccount::dropped_total).sum();
        let shutdown_ms = u64::try_from(shutdown_took.as_millis()).unwrap_or(u64::MAX);
        if balanced {
            tracing::info!(
                fetched = self.fetched,
                invalid = self.invalid,
                duplicates = self.duplicates,
                sinks = %sinks.join(","),
                published,
                dropped,
                balanced,
                shutdown_ms,
                "worker stopped: every quote accounted for"
            );
        } else {
            tracing::error!(
                fetched = self.fetched,
                invalid = self.invalid,
                duplicates = self.duplicates,
                sinks = %sinks.join(","),
                published,
                dropped,
                balanced,
                shutdown_ms,
                "worker stopped: quotes unaccounted for (a bug: see the sink lines above)"
            );
        }
    }
}

/// The sum of a counter family over all its label values.
fn sum(vec: &IntCounterVec) -> u64 {
    let total: f64 = vec
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|m| m.get_counter().get_value())
        .sum();
    // Counters are whole numbers far below 2^53: the f64 of the exposition is exact.
    total as u64
}

/// Counts as dropped (`abandoned`) what a sink stopped at the hard deadline neither confirmed
/// nor dropped itself (the quotes it held). Returns how many.
pub fn settle_abandoned(metrics: &Metrics, sink: &'static str) -> u64 {
    let left = SinkAccount::read(metrics, sink).unaccounted();
    let Ok(left) = u64::try_from(left) else {
        return 0;
    };
    if left > 0 {
        metrics.dropped(sink, DropReason::Abandoned).inc_by(left);
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_law_holds_only_when_every_quote_is_confirmed_or_dropped() {
        let m = Metrics::new("t", 0).unwrap();
        m.quotes_fetched.inc_by(10);
        m.validation_errors.with_label_values(&["price"]).inc();
        m.validation_errors
            .with_label_values(&["out_of_order"])
            .inc();
        m.duplicates.inc();
        for sink in ["redis", "storage"] {
            m.quotes_accepted.with_label_values(&[sink]).inc_by(7);
        }
        m.quotes_published.with_label_values(&["redis"]).inc_by(7);
        m.quotes_published.with_label_values(&["storage"]).inc_by(4);
        m.dropped("storage", DropReason::Shutdown).inc_by(2);
        let accounts = Accounts::read(&m, &["redis", "storage"]);
        assert_eq!(accounts.invalid, 2);
        assert!(!accounts.balanced(), "one storage quote is neither");
        assert_eq!(accounts.sinks[1].unaccounted(), 1);
        assert_eq!(settle_abandoned(&m, "storage"), 1);
        let accounts = Accounts::read(&m, &["redis", "storage"]);
        assert!(accounts.balanced());
        assert_eq!(accounts.sinks[1].dropped_text(), "shutdown=2 abandoned=1");
        assert_eq!(settle_abandoned(&m, "storage"), 0, "settled once");
    }
}
