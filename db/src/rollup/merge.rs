//! The merger's fold of the queue ([`super::batches`]) into the rollups, in one transaction:
//! take queued rows off the queue ([`super::take`]), fold their partials here — per symbol and
//! minute, the hour from the minutes, the day from the hours, the latest quote per symbol — and
//! upsert each grain's bars from arrays ([`super::upsert_bars`], [`super::upsert_latest`]).
//!
//! Why here and not in SQL: the fold is a few hash-map updates per partial in Rust, where
//! PostgreSQL's `array_agg(… ORDER BY …)` sorted and copied per group, and the merger's session
//! shares the cores with ingest. The rule is the SQL's: first by open time, last by close
//! time, max, min, sum — exact, because a symbol has at most one quote per timestamp, so two
//! partials of a symbol never tie on a time.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use futures_util::{TryStreamExt, pin_mut};
use jiff::Timestamp;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::{GRAINS, TableName, bin};
use crate::pg_time::PgTime;

/// Widths of [`GRAINS`] in milliseconds, in their order.
const WIDTHS_MS: [i64; 3] = [60_000, 3_600_000, 86_400_000];

/// The prepared statements of a merge.
#[derive(Debug)]
pub struct Merger {
    take: Statement,
    /// One upsert per grain of [`GRAINS`]; empty where the bars are TimescaleDB continuous
    /// aggregates (the merger then keeps only the latest quotes).
    bars: Vec<Statement>,
    latest: Statement,
}

impl Merger {
    /// Prepares the statements on `client` (`bars`: whether the bar tables are kept here).
    pub async fn prepare(
        client: &Client,
        t: &TableName,
        bars: bool,
    ) -> Result<Self, tokio_postgres::Error> {
        let mut upserts = Vec::new();
        if bars {
            for (grain, _, _) in GRAINS {
                upserts.push(client.prepare(&super::upsert_bars(t, grain)).await?);
            }
        }
        Ok(Self {
            take: client.prepare(&super::take(t)).await?,
            bars: upserts,
            latest: client.prepare(&super::upsert_latest(t)).await?,
        })
    }
}

/// The bar columns of a bar or partial bar, after symbol and bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bar {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    open_time: Timestamp,
    close_time: Timestamp,
    day_volume: i64,
    quotes: i64,
}

impl Bar {
    /// Folds `other` in; true when its close is the later one (its latest quote wins).
    fn fold(&mut self, other: &Bar) -> bool {
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        if other.open_time < self.open_time {
            self.open = other.open;
            self.open_time = other.open_time;
        }
        let later = other.close_time > self.close_time;
        if later {
            self.close = other.close;
            self.close_time = other.close_time;
            self.day_volume = other.day_volume;
        }
        self.quotes += other.quotes;
        later
    }
}

/// Bars by (symbol id, bucket).
type Bars = HashMap<(usize, Timestamp), Bar>;

/// What a merge folded so far.
#[derive(Debug, Default)]
struct Fold {
    /// Symbols by id (the maps key on the id: one allocation per symbol per merge).
    symbols: Vec<String>,
    ids: HashMap<String, usize>,
    /// The 1-minute bars, each with the source of its latest quote.
    minutes: HashMap<(usize, Timestamp), (Bar, String)>,
    quotes: i64,
}

impl Fold {
    fn id(&mut self, symbol: &str) -> usize {
        if let Some(&id) = self.ids.get(symbol) {
            return id;
        }
        let id = self.symbols.len();
        self.symbols.push(symbol.to_owned());
        self.ids.insert(symbol.to_owned(), id);
        id
    }

    fn add(&mut self, symbol: &str, bucket: Timestamp, bar: Bar, source: &str) {
        let id = self.id(symbol);
        self.quotes += bar.quotes;
        match self.minutes.entry((id, bin(bucket, WIDTHS_MS[0]))) {
            Entry::Occupied(mut e) => {
                let (have, have_source) = e.get_mut();
                if have.fold(&bar) {
                    have_source.clear();
                    have_source.push_str(source);
                }
            }
            Entry::Vacant(e) => {
                e.insert((bar, source.to_owned()));
            }
        }
    }

    /// Folds every row the take statement returned.
    fn add_row(&mut self, row: &tokio_postgres::Row) -> Result<(), tokio_postgres::Error> {
        let symbol: Vec<&str> = row.try_get(0)?;
        let bucket: Vec<PgTime> = row.try_get(1)?;
        let open: Vec<f64> = row.try_get(2)?;
        let high: Vec<f64> = row.try_get(3)?;
        let low: Vec<f64> = row.try_get(4)?;
        let close: Vec<f64> = row.try_get(5)?;
        let open_time: Vec<PgTime> = row.try_get(6)?;
        let close_time: Vec<PgTime> = row.try_get(7)?;
        let day_volume: Vec<i64> = row.try_get(8)?;
        let quotes: Vec<i64> = row.try_get(9)?;
        let source: Vec<&str> = row.try_get(10)?;
        // The table's CHECK holds every array to the same length.
        for i in 0..symbol.len() {
            let (Some(&PgTime(bucket)), Some(&open), Some(&high), Some(&low), Some(&close)) = (
                bucket.get(i),
                open.get(i),
                high.get(i),
                low.get(i),
                close.get(i),
            ) else {
                break;
            };
            let (
                Some(&PgTime(open_time)),
                Some(&PgTime(close_time)),
                Some(&day_volume),
                Some(&quotes),
            ) = (
                open_time.get(i),
                close_time.get(i),
                day_volume.get(i),
                quotes.get(i),
            )
            else {
                break;
            };
            let (Some(symbol), Some(source)) = (symbol.get(i), source.get(i)) else {
                break;
            };
            let bar = Bar {
                open,
                high,
                low,
                close,
                open_time,
                close_time,
                day_volume,
                quotes,
            };
            self.add(symbol, bucket, bar, source);
        }
        Ok(())
    }

    /// The bars of the next coarser grain (`width_ms`) from `finer`: aggregates of partials
    /// are partials of the coarser bucket, so this equals folding the partials themselves.
    fn coarser<'a>(
        finer: impl Iterator<Item = (&'a (usize, Timestamp), &'a Bar)>,
        width_ms: i64,
    ) -> Bars {
        let mut out = Bars::new();
        for (&(id, bucket), bar) in finer {
            match out.entry((id, bin(bucket, width_ms))) {
                Entry::Occupied(mut e) => {
                    e.get_mut().fold(bar);
                }
                Entry::Vacant(e) => {
                    e.insert(*bar);
                }
            }
        }
        out
    }
}

/// A grain's bars as the upsert's arrays, sorted by (symbol, bucket) so that concurrent
/// mergers (one per store replica) lock bar rows in the same order.
struct Columns<'a> {
    symbol: Vec<&'a str>,
    bucket: Vec<PgTime>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    open_time: Vec<PgTime>,
    close_time: Vec<PgTime>,
    day_volume: Vec<i64>,
    quotes: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of<'b>(
        symbols: &'a [String],
        bars: impl Iterator<Item = (&'b (usize, Timestamp), &'b Bar)>,
    ) -> Self {
        let mut sorted: Vec<(&'a str, Timestamp, &'b Bar)> = bars
            .filter_map(|(&(id, bucket), bar)| Some((symbols.get(id)?.as_str(), bucket, bar)))
            .collect();
        sorted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut c = Self {
            symbol: Vec::with_capacity(sorted.len()),
            bucket: Vec::with_capacity(sorted.len()),
            open: Vec::with_capacity(sorted.len()),
            high: Vec::with_capacity(sorted.len()),
            low: Vec::with_capacity(sorted.len()),
            close: Vec::with_capacity(sorted.len()),
            open_time: Vec::with_capacity(sorted.len()),
            close_time: Vec::with_capacity(sorted.len()),
            day_volume: Vec::with_capacity(sorted.len()),
            quotes: Vec::with_capacity(sorted.len()),
        };
        for (symbol, bucket, bar) in sorted {
            c.symbol.push(symbol);
            c.bucket.push(PgTime(bucket));
            c.open.push(bar.open);
            c.high.push(bar.high);
            c.low.push(bar.low);
            c.close.push(bar.close);
            c.open_time.push(PgTime(bar.open_time));
            c.close_time.push(PgTime(bar.close_time));
            c.day_volume.push(bar.day_volume);
            c.quotes.push(bar.quotes);
        }
        c
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.symbol,
            &self.bucket,
            &self.open,
            &self.high,
            &self.low,
            &self.close,
            &self.open_time,
            &self.close_time,
            &self.day_volume,
            &self.quotes,
        ]
    }
}

/// Merges up to [`super::MERGE_LIMIT`] queued partials into the rollups in one transaction;
/// returns how many quotes they held (0: the rollups are current).
pub async fn merge(client: &mut Client, merger: &Merger) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let mut fold = Fold::default();
    {
        // Streamed: the memory held is the fold's, not every taken row's.
        let rows = tx
            .query_raw(&merger.take, std::iter::empty::<i32>())
            .await?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await? {
            fold.add_row(&row)?;
        }
    }
    if fold.minutes.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    if let [m, h, d] = merger.bars.as_slice() {
        let minutes = || fold.minutes.iter().map(|(k, (bar, _))| (k, bar));
        let hours = Fold::coarser(minutes(), WIDTHS_MS[1]);
        let days = Fold::coarser(hours.iter(), WIDTHS_MS[2]);
        for (statement, columns) in [
            (m, Columns::of(&fold.symbols, minutes())),
            (h, Columns::of(&fold.symbols, hours.iter())),
            (d, Columns::of(&fold.symbols, days.iter())),
        ] {
            tx.execute(statement, &columns.params()).await?;
        }
    }
    // The latest quote of each symbol: its minute bar with the latest close.
    let mut latest: HashMap<usize, (&Bar, &str)> = HashMap::new();
    for (&(id, _), (bar, source)) in &fold.minutes {
        match latest.entry(id) {
            Entry::Occupied(mut e) => {
                if bar.close_time > e.get().0.close_time {
                    e.insert((bar, source));
                }
            }
            Entry::Vacant(e) => {
                e.insert((bar, source));
            }
        }
    }
    let mut latest: Vec<(&str, &Bar, &str)> = latest
        .into_iter()
        .filter_map(|(id, (bar, source))| Some((fold.symbols.get(id)?.as_str(), bar, source)))
        .collect();
    latest.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let symbol: Vec<&str> = latest.iter().map(|l| l.0).collect();
    let time: Vec<PgTime> = latest.iter().map(|l| PgTime(l.1.close_time)).collect();
    let price: Vec<f64> = latest.iter().map(|l| l.1.close).collect();
    let volume: Vec<i64> = latest.iter().map(|l| l.1.day_volume).collect();
    let source: Vec<&str> = latest.iter().map(|l| l.2).collect();
    tx.execute(&merger.latest, &[&symbol, &time, &price, &volume, &source])
        .await?;
    tx.commit().await?;
    Ok(u64::try_from(fold.quotes).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    fn bar(open_ms: i64, close_ms: i64, price: f64, day_volume: i64, quotes: i64) -> Bar {
        Bar {
            open: price,
            high: price,
            low: price,
            close: price,
            open_time: t(open_ms),
            close_time: t(close_ms),
            day_volume,
            quotes,
        }
    }

    #[test]
    fn partials_fold_first_by_open_last_by_close_with_the_latest_source() {
        // 2026-01-20T14:30:00Z
        let m = 1_768_919_400_000;
        let mut fold = Fold::default();
        fold.add("AAPL", t(m), bar(m + 20_000, m + 30_000, 11.0, 300, 2), "b");
        fold.add("AAPL", t(m), bar(m + 1_000, m + 10_000, 10.0, 100, 3), "a");
        fold.add("AAPL", t(m), bar(m + 40_000, m + 59_999, 9.0, 900, 1), "c");
        fold.add(
            "AAPL",
            t(m + 60_000),
            bar(m + 60_000, m + 60_000, 12.0, 1000, 1),
            "d",
        );
        fold.add("MSFT", t(m), bar(m + 5_000, m + 5_000, 50.0, 7, 1), "a");
        assert_eq!(fold.quotes, 8);
        assert_eq!(fold.symbols, ["AAPL", "MSFT"]);
        let (aapl, source) = &fold.minutes[&(0, t(m))];
        assert_eq!(
            (aapl.open, aapl.high, aapl.low, aapl.close),
            (10.0, 11.0, 9.0, 9.0)
        );
        assert_eq!(
            (aapl.open_time, aapl.close_time),
            (t(m + 1_000), t(m + 59_999))
        );
        assert_eq!(
            (aapl.day_volume, aapl.quotes, source.as_str()),
            (900, 6, "c")
        );
        let hours = Fold::coarser(fold.minutes.iter().map(|(k, (b, _))| (k, b)), WIDTHS_MS[1]);
        let days = Fold::coarser(hours.iter(), WIDTHS_MS[2]);
        // 14:30 lies in the hour from 14:00.
        let hour = hours[&(0, t(m - 1_800_000))];
        assert_eq!(
            (hour.open, hour.close, hour.quotes, hour.day_volume),
            (10.0, 12.0, 7, 1000)
        );
        // The day of 2026-01-20 starts at 1_768_867_200_000.
        assert_eq!(days[&(0, t(1_768_867_200_000))].quotes, 7);
        let columns = Columns::of(&fold.symbols, fold.minutes.iter().map(|(k, (b, _))| (k, b)));
        assert_eq!(
            columns.symbol,
            ["AAPL", "AAPL", "MSFT"],
            "sorted by symbol, bucket"
        );
        assert_eq!(
            columns.bucket,
            [PgTime(t(m)), PgTime(t(m + 60_000)), PgTime(t(m))]
        );
    }
}
