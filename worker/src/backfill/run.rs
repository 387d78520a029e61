//! One run: for every instrument, the windows not yet checkpointed are fetched (at most
//! `concurrency` at once, each request through the shared budget), cleaned
//! ([`super::clean`]) and stored with their checkpoint in one transaction. A window is
//! checkpointed only when it is wholly in the past and none of its bars was still in progress,
//! so a resumed run refetches exactly what is missing or unfinished.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use jiff::Timestamp;
use quotestream_api::Instrument;
use quotestream_db::{HistoryStore, PostgresConfig, PostgresError, Window, WriteCounts};
use tokio::sync::Mutex;

use super::clean::{Counts, clean};
use super::http::HistoryHttp;
use super::interval::Interval;
use super::plan::Range;
use super::progress::Progress;
use super::sources::HistorySource;

/// What a run needs.
#[derive(Debug)]
pub struct Plan {
    pub instruments: Vec<Instrument>,
    pub range: Range,
    pub interval: Interval,
    pub source: HistorySource,
    pub http: HistoryHttp,
    pub concurrency: usize,
    /// Database sessions writing at once.
    pub writers: usize,
    /// The clock (tests and reproducible runs pin it).
    pub now: Option<Timestamp>,
}

/// The outcome of one instrument.
#[derive(Debug, Clone, Default)]
pub struct TickerReport {
    pub symbol: String,
    pub counts: Counts,
    pub writes: WriteCounts,
    pub windows: usize,
    /// Windows a previous run had stored already (skipped).
    pub resumed: usize,
    pub failed_windows: usize,
    /// Why the instrument is not done (the first failure).
    pub error: Option<String>,
    pub null_starts: Vec<Timestamp>,
}

impl TickerReport {
    pub fn done(&self) -> bool {
        self.error.is_none()
    }

    /// The line a person reads.
    pub fn line(&self) -> String {
        let c = &self.counts;
        let w = &self.writes;
        let head = match &self.error {
            None => format!("{}: done", self.symbol),
            Some(e) => format!("{}: FAILED ({e})", self.symbol),
        };
        format!(
            "{head}; {} bars stored ({} new, {} changed, {} unchanged); {} null bars (gaps), {} duplicates, {} outside the range, {} in progress, {} invalid; windows: {} fetched, {} already stored, {} failed",
            c.stored,
            w.inserted,
            w.updated,
            w.unchanged,
            c.nulls,
            c.duplicates,
            c.outside,
            c.partial,
            c.invalid,
            self.windows - self.resumed - self.failed_windows,
            self.resumed,
            self.failed_windows
        )
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub tickers: Vec<TickerReport>,
    pub elapsed: Duration,
    pub rate_limit_waits: u64,
}

impl Report {
    pub fn failed(&self) -> Vec<&TickerReport> {
        self.tickers.iter().filter(|t| !t.done()).collect()
    }
}

/// Why a run could not start (a failing ticker is not this: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Database(#[from] PostgresError),
}

struct Task {
    index: usize,
    start: Timestamp,
    end: Timestamp,
}

/// Runs the plan against the database of `db`, showing `progress`.
pub async fn run(
    plan: Plan,
    db: &PostgresConfig,
    progress_mode: super::progress::ProgressMode,
) -> Result<Report, RunError> {
    let began = Instant::now();
    let writers = plan.writers.max(1);
    let mut stores = Vec::with_capacity(writers);
    for _ in 0..writers {
        stores.push(Mutex::new(HistoryStore::open(db).await?));
    }
    let source_name = plan.source.vendor().name();
    let timeframe = plan.interval.name();
    let mut reports: Vec<TickerReport> = plan
        .instruments
        .iter()
        .map(|i| TickerReport {
            symbol: i.to_string(),
            ..TickerReport::default()
        })
        .collect();
    let symbols: Vec<String> = reports.iter().map(|r| r.symbol.clone()).collect();
    let done: HashSet<Window> = stores[0]
        .lock()
        .await
        .done_windows(source_name, timeframe, &symbols)
        .await?
        .into_iter()
        .collect();
    let windows = plan
        .range
        .windows(plan.source.limits(plan.interval).max_window_secs);
    let mut tasks = Vec::new();
    for (index, instrument) in plan.instruments.iter().enumerate() {
        let report = &mut reports[index];
        report.windows = windows.len();
        if let Err(e) = instrument.vendor_symbol(plan.source.vendor()) {
            report.error = Some(e.to_string());
            report.failed_windows = windows.len();
            continue;
        }
        for &(start, end) in &windows {
            let key = Window {
                symbol: report.symbol.clone(),
                start,
                end,
            };
            if done.contains(&key) {
                report.resumed += 1;
            } else {
                tasks.push(Task { index, start, end });
            }
        }
    }
    let progress = Progress::new(progress_mode, tasks.len() as u64);
    let mut remaining: Vec<usize> = reports
        .iter()
        .map(|r| r.windows - r.resumed - r.failed_windows)
        .collect();
    for (i, r) in reports.iter().enumerate() {
        if remaining[i] == 0 {
            progress.line(&r.line());
        }
    }
    let plan = &plan;
    let stores = &stores;
    let mut results = stream::iter(tasks.into_iter().enumerate())
        .map(|(n, task)| async move {
            let outcome = window(plan, stores, n, &task, source_name).await;
            (task.index, outcome)
        })
        .buffer_unordered(plan.concurrency.max(1));
    while let Some((index, outcome)) = results.next().await {
        let report = &mut reports[index];
        match outcome {
            Ok((counts, writes, nulls)) => {
                report.counts += counts;
                report.writes.inserted += writes.inserted;
                report.writes.updated += writes.updated;
                report.writes.unchanged += writes.unchanged;
                report.null_starts.extend(nulls);
            }
            Err(e) => {
                report.failed_windows += 1;
                tracing::warn!(symbol = %report.symbol, error = %e, "backfill: a window failed");
                report.error.get_or_insert(e);
            }
        }
        progress.window_done(&report.symbol);
        remaining[index] -= 1;
        if remaining[index] == 0 {
            report.null_starts.sort();
            progress.line(&report.line());
        }
    }
    drop(results);
    progress.finish();
    Ok(Report {
        tickers: reports,
        elapsed: began.elapsed(),
        rate_limit_waits: plan.http.rate_limit_waits(),
    })
}

/// Fetches, cleans and stores one window; the error is the line the report shows.
async fn window(
    plan: &Plan,
    stores: &[Mutex<HistoryStore>],
    n: usize,
    task: &Task,
    source_name: &str,
) -> Result<(Counts, WriteCounts, Vec<Timestamp>), String> {
    let instrument = &plan.instruments[task.index];
    let raw = plan
        .source
        .fetch(&plan.http, instrument, task.start, task.end, plan.interval)
        .await
        .map_err(|e| e.to_string())?;
    let now = plan.now.unwrap_or_else(Timestamp::now);
    let symbol = instrument.to_string();
    let cleaned = clean(raw, &symbol, plan.interval, task.start, task.end, now);
    let complete = task.end <= now && cleaned.counts.partial == 0;
    let key = Window {
        symbol,
        start: task.start,
        end: task.end,
    };
    let writes = stores[n % stores.len()]
        .lock()
        .await
        .write(
            source_name,
            &key,
            plan.interval.name(),
            &cleaned.bars,
            complete,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((cleaned.counts, writes, cleaned.null_starts))
}
