//! What history the spec asks for, what the stream already has, and what is left to run: a
//! plain function of the spec, the ticker set, the record (from `status.history`), the running
//! Jobs and the clock.

use std::collections::BTreeSet;

use jiff::civil::Date;
use jiff::{Span, Timestamp};
use quotestream_api::TickerSet;
use quotestream_api::crd::{HistorySource, HistorySpec, depth_days};

use super::record::{Record, SeriesKey};

/// The interval of daily bars (the backfill's `--interval`).
pub const DAILY: &str = "1d";
/// A failed ticker is tried again this long after its Job failed (sooner when the spec changes).
pub const RETRY_FAILED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// One kind of bars the spec asks for: an interval and how far back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub key: SeriesKey,
    /// First day wanted (UTC), `depth` days before today.
    pub from: Date,
}

/// The series `history` asks for on `today` (UTC). A depth the CRD's pattern should have kept
/// out is an error naming its field.
pub fn wanted(
    history: &HistorySpec,
    today: Date,
) -> Result<Vec<Series>, quotestream_api::crd::DepthError> {
    let mut series = Vec::new();
    if let Some(d) = &history.daily {
        series.push(Series {
            key: SeriesKey::new(DAILY, history.source),
            from: back(today, depth_days("spec.history.daily", d)?),
        });
    }
    if let Some(i) = &history.intraday {
        let days = depth_days("spec.history.intraday.depth", &i.depth)?;
        // Yahoo serves intraday bars only so many days back, counted from the moment of each
        // request (the CRD keeps the depth within it). A Job may start a while after it is
        // made, so it asks for two whole days less than the limit at most: a depth at the
        // limit would otherwise be refused by the backfill (its first day too old).
        let days = match history.source {
            HistorySource::Yahoo => days.min(i.interval.yahoo_max_days().saturating_sub(2)),
            _ => days,
        };
        series.push(Series {
            key: SeriesKey::new(i.interval.name(), history.source),
            from: back(today, days),
        });
    }
    Ok(series)
}

/// `days` before `today`, clamped to the earliest date jiff knows (never reached: depths are at
/// most 100 years).
fn back(today: Date, days: u32) -> Date {
    today
        .checked_sub(Span::new().days(i64::from(days)))
        .unwrap_or(Date::MIN)
}

/// A Job that has not finished: its series and tickers are in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub name: String,
    pub key: SeriesKey,
    pub tickers: Vec<String>,
}

/// One Job to create: a batch of tickers of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub series: Series,
    pub tickers: Vec<String>,
}

/// Where every ticker of the stream stands, and the Jobs to start now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assessment {
    /// Tickers with every series done.
    pub done: usize,
    /// Tickers with some series failed (and not retried yet).
    pub failed: usize,
    /// Tickers neither done nor failed: queued or running.
    pub pending: usize,
    /// Of the pending, those in a running Job.
    pub running: usize,
    /// The Jobs to create now (at most `parallelism` minus the running Jobs).
    pub start: Vec<Batch>,
    /// The earliest time a failed ticker is due for a retry, if any is waiting for one.
    pub next_retry: Option<Timestamp>,
}

/// What is left to do. A ticker's series is done when the record has it from `from` or earlier
/// (a deeper backfill covers a shallower one; a deeper spec runs again), in flight when a
/// running Job has it, failed when its last Job failed for at least this depth less than
/// [`RETRY_FAILED_AFTER`] ago under the current spec `generation`; otherwise it is due. Due
/// tickers are batched per series, `batch_size` to a Job, in ticker order.
pub fn assess(
    history: &HistorySpec,
    series: &[Series],
    tickers: &TickerSet,
    record: &Record,
    running: &[Running],
    generation: i64,
    now: Timestamp,
) -> Assessment {
    let mut a = Assessment::default();
    let in_flight: BTreeSet<(&SeriesKey, &str)> = running
        .iter()
        .flat_map(|r| r.tickers.iter().map(move |t| (&r.key, t.as_str())))
        .collect();
    let mut due: Vec<Vec<String>> = vec![Vec::new(); series.len()];
    for ticker in tickers.iter() {
        let t = ticker.as_str();
        let (mut all_done, mut any_failed, mut any_running) = (true, false, false);
        for (i, s) in series.iter().enumerate() {
            if record
                .done_from(&s.key, t)
                .is_some_and(|from| from <= s.from)
            {
                continue;
            }
            all_done = false;
            if in_flight.contains(&(&s.key, t)) {
                any_running = true;
                continue;
            }
            match record.failure(&s.key, t) {
                Some(f) if f.from <= s.from && f.generation == generation => {
                    let retry =
                        f.at.checked_add(RETRY_FAILED_AFTER)
                            .unwrap_or(Timestamp::MAX);
                    if retry > now {
                        any_failed = true;
                        a.next_retry = Some(a.next_retry.map_or(retry, |r| r.min(retry)));
                        continue;
                    }
                    due[i].push(t.to_owned());
                }
                _ => due[i].push(t.to_owned()),
            }
        }
        if all_done {
            a.done += 1;
        } else if any_failed && !any_running {
            a.failed += 1;
        } else {
            a.pending += 1;
            if any_running {
                a.running += 1;
            }
        }
    }
    let batch = usize::try_from(history.batch_size.max(1)).unwrap_or(1);
    let slots = usize::try_from(history.parallelism.max(1))
        .unwrap_or(1)
        .saturating_sub(running.len());
    a.start = series
        .iter()
        .zip(due)
        .flat_map(|(s, list)| {
            list.chunks(batch)
                .map(|chunk| Batch {
                    series: s.clone(),
                    tickers: chunk.to_vec(),
                })
                .collect::<Vec<_>>()
        })
        .take(slots)
        .collect();
    a
}

/// The one-line summary of the History column: `3/5 done, 1 running, 1 failed`.
pub fn progress(a: &Assessment, total: usize) -> String {
    let mut parts = vec![format!("{}/{total} done", a.done)];
    if a.running > 0 {
        parts.push(format!("{} running", a.running));
    }
    let queued = a.pending - a.running;
    if queued > 0 {
        parts.push(format!("{queued} queued"));
    }
    if a.failed > 0 {
        parts.push(format!("{} failed", a.failed));
    }
    parts.join(", ")
}
