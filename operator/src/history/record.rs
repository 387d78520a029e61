//! The record of what each ticker has: read from `status.history` (the durable place: Jobs go
//! after a day), updated with what finished Jobs did, written back grouped and bounded.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use quotestream_api::TickerSet;
use quotestream_api::crd::{HistoryDone, HistoryFailure, HistorySource, HistoryStatus};

use crate::resources::conditions::bounded;

/// Longest reason kept per failure (the backfill's line for a ticker, a Job condition).
pub const MAX_REASON_BYTES: usize = 256;
/// Most failure groups kept in the status; beyond, the rest are merged into one (the status of
/// a stream with thousands of failing tickers must stay far below the API server's limit).
pub const MAX_FAILURE_GROUPS: usize = 50;

/// A kind of bars from a vendor: what "done" is tracked for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub interval: String,
    pub source: String,
}

impl SeriesKey {
    pub fn new(interval: &str, source: HistorySource) -> Self {
        Self {
            interval: interval.to_owned(),
            source: source.name().to_owned(),
        }
    }
}

/// The last failed backfill of one ticker's series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub from: Date,
    pub reason: String,
    pub at: Timestamp,
    pub job: String,
    /// The stream generation the Job was made for: a spec change retries at once.
    pub generation: i64,
}

/// Per series and ticker: the first day backfilled, or the last failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    done: BTreeMap<SeriesKey, BTreeMap<String, Date>>,
    failed: BTreeMap<SeriesKey, BTreeMap<String, Failure>>,
}

impl Record {
    /// Reads `status.history`; entries that do not parse (a hand edit) are skipped, which at
    /// worst backfills those tickers again (the backfill is idempotent).
    pub fn from_status(status: Option<&HistoryStatus>) -> Self {
        let mut r = Self::default();
        let Some(s) = status else { return r };
        for d in &s.completed {
            let Ok(from) = d.from.parse::<Date>() else {
                continue;
            };
            let key = key_of(&d.interval, &d.source);
            for t in &d.tickers {
                r.complete(&key, t, from);
            }
        }
        for f in &s.failures {
            let (Ok(from), Ok(at)) = (f.from.parse::<Date>(), f.at.parse::<Timestamp>()) else {
                continue;
            };
            let key = key_of(&f.interval, &f.source);
            for t in &f.tickers {
                r.fail(
                    &key,
                    t,
                    Failure {
                        from,
                        reason: f.reason.clone(),
                        at,
                        job: f.job.clone(),
                        generation: f.generation,
                    },
                );
            }
        }
        r
    }

    pub fn done_from(&self, key: &SeriesKey, ticker: &str) -> Option<Date> {
        self.done.get(key)?.get(ticker).copied()
    }

    pub fn failure(&self, key: &SeriesKey, ticker: &str) -> Option<&Failure> {
        self.failed.get(key)?.get(ticker)
    }

    /// `ticker`'s series is in the database from `from` on: the earlier of this and what was
    /// there already; a failure recorded before is over.
    pub fn complete(&mut self, key: &SeriesKey, ticker: &str, from: Date) {
        let entry = self
            .done
            .entry(key.clone())
            .or_default()
            .entry(ticker.to_owned())
            .or_insert(from);
        *entry = (*entry).min(from);
        if let Some(f) = self.failed.get_mut(key) {
            f.remove(ticker);
        }
    }

    /// `ticker`'s series failed; a later failure replaces an earlier one.
    pub fn fail(&mut self, key: &SeriesKey, ticker: &str, failure: Failure) {
        let slot = self.failed.entry(key.clone()).or_default();
        match slot.get(ticker) {
            Some(old) if old.at > failure.at => {}
            _ => {
                slot.insert(ticker.to_owned(), failure);
            }
        }
    }

    /// Forgets tickers no longer in the stream and series no longer asked for, so the status
    /// stays the size of the stream (a ticker added back is backfilled again: idempotent).
    pub fn retain(&mut self, tickers: &TickerSet, keys: &[SeriesKey]) {
        let keep = |k: &SeriesKey| keys.contains(k);
        self.done.retain(|k, _| keep(k));
        self.failed.retain(|k, _| keep(k));
        let set: std::collections::BTreeSet<&str> = tickers.iter().map(|t| t.as_str()).collect();
        let listed = |t: &String| set.contains(t.as_str());
        for m in self.done.values_mut() {
            m.retain(|t, _| listed(t));
        }
        for m in self.failed.values_mut() {
            m.retain(|t, _| listed(t));
        }
    }

    /// The `completed` and `failures` lists of `status.history`: tickers grouped by what they
    /// share, sorted; at most [`MAX_FAILURE_GROUPS`] failure groups (the rest merged into the
    /// last, which says so).
    pub fn to_lists(&self) -> (Vec<HistoryDone>, Vec<HistoryFailure>) {
        let mut done: BTreeMap<(&SeriesKey, Date), Vec<String>> = BTreeMap::new();
        for (key, tickers) in &self.done {
            for (t, from) in tickers {
                done.entry((key, *from)).or_default().push(t.clone());
            }
        }
        let completed = done
            .into_iter()
            .map(|((key, from), tickers)| HistoryDone {
                interval: key.interval.clone(),
                source: key.source.clone(),
                from: from.to_string(),
                tickers,
            })
            .collect();

        type Group<'a> = (&'a SeriesKey, Date, &'a str, Timestamp, &'a str, i64);
        let mut failed: BTreeMap<Group<'_>, Vec<String>> = BTreeMap::new();
        for (key, tickers) in &self.failed {
            for (t, f) in tickers {
                let group = (
                    key,
                    f.from,
                    f.reason.as_str(),
                    f.at,
                    f.job.as_str(),
                    f.generation,
                );
                failed.entry(group).or_default().push(t.clone());
            }
        }
        let mut failures: Vec<HistoryFailure> = failed
            .into_iter()
            .map(
                |((key, from, reason, at, job, generation), tickers)| HistoryFailure {
                    interval: key.interval.clone(),
                    source: key.source.clone(),
                    from: from.to_string(),
                    reason: reason.to_owned(),
                    at: at.to_string(),
                    job: job.to_owned(),
                    generation,
                    tickers,
                },
            )
            .collect();
        if failures.len() > MAX_FAILURE_GROUPS {
            let rest = failures.split_off(MAX_FAILURE_GROUPS - 1);
            let count = rest.iter().map(|f| f.tickers.len()).sum::<usize>();
            // The merged group keeps the latest failure time (so none is retried early) and the
            // smallest generation (so a spec change retries them all).
            let mut merged = rest[0].clone();
            merged.reason = format!(
                "{count} more tickers failed for {} different reasons; see the Events and kubectl logs of the Jobs",
                rest.len()
            );
            merged.at = rest
                .iter()
                .filter_map(|f| f.at.parse::<Timestamp>().ok())
                .max()
                .map_or(merged.at, |t| t.to_string());
            merged.generation = rest.iter().map(|f| f.generation).min().unwrap_or(0);
            merged.tickers = rest.into_iter().flat_map(|f| f.tickers).collect();
            merged.tickers.sort();
            failures.push(merged);
        }
        (completed, failures)
    }
}

fn key_of(interval: &str, source: &str) -> SeriesKey {
    SeriesKey {
        interval: interval.to_owned(),
        source: source.to_owned(),
    }
}

/// A reason as the status keeps it: one line, bounded.
pub fn reason(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    bounded(line, MAX_REASON_BYTES)
}
