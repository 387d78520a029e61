//! Rollups of the quotes table (docs/store.md, "Rollups"): OHLCV bars per symbol at 1 minute,
//! 1 hour and 1 day, the latest quote per symbol, and a daily summary.
//!
//! The rule, for the quotes of one symbol whose timestamp falls in a bucket (UTC buckets,
//! `date_bin` from 2000-01-01T00:00Z):
//! - open = price of the earliest quote, close = price of the latest, high/low = max/min price,
//!   quotes = how many;
//! - `day_volume` = the cumulative day volume carried by the latest quote of the bucket;
//!   volume = the change of the cumulative day volume since the previous bar of the same UTC
//!   day (for the day's first bar, its `day_volume`), never negative. Daily bars: volume =
//!   `day_volume`.
//!
//! Every stored field merges exactly (first/last by timestamp, max, min, sum), and a symbol
//! has at most one quote per timestamp, so the tables are kept exact at ingest from the rows
//! the INSERT actually inserted: a replayed, late or out-of-order quote gives the same bars as
//! computing them from the raw rows. `volume` depends on the previous bar, so it is computed
//! when read, by the `_ohlcv_*` views.
//!
//! On plain PostgreSQL the ingest transaction queues the partials of the rows it inserted
//! ([`ingest`], [`insert_batch`]) and the store's merger folds the queue into the tables
//! ([`merge`]). Where TimescaleDB is installed with its community license, the same names are
//! hierarchical continuous aggregates with refresh policies instead ([`timescale_rollups`]).

use std::collections::HashMap;

use jiff::Timestamp;

use crate::config::TableName;
use crate::schema::QUOTE_COLUMN_TYPES;
use crate::session::Row;

mod merge;
pub use merge::{Merger, merge};

/// The grains: suffix, bucket width, and the grain a TimescaleDB continuous aggregate of this
/// one is built from (None: from the raw table).
pub const GRAINS: [(&str, &str, Option<&str>); 3] = [
    ("1m", "1 minute", None),
    ("1h", "1 hour", Some("1m")),
    ("1d", "1 day", Some("1h")),
];

/// Origin of the buckets: UTC midnight, so day buckets are UTC days whatever the session's
/// TimeZone (`date_trunc` on timestamptz would follow it).
pub const ORIGIN: &str = "TIMESTAMPTZ '2000-01-01 00:00:00+00'";

/// `"schema"."<table>_<suffix>"`.
pub fn object(t: &TableName, suffix: &str) -> String {
    t.sibling(&format!("{}_{suffix}", t.table()))
}

pub fn bars(t: &TableName, grain: &str) -> String {
    object(t, &format!("bars_{grain}"))
}

pub fn ohlcv(t: &TableName, grain: &str) -> String {
    object(t, &format!("ohlcv_{grain}"))
}

pub fn latest(t: &TableName) -> String {
    object(t, "latest")
}

pub fn daily(t: &TableName) -> String {
    object(t, "daily")
}

/// The queue of migrations 10 and 11: inserted rows, one per quote. Migration 12 folds it
/// into [`partials`] and drops it.
pub fn queue(t: &TableName) -> String {
    object(t, "rollup_queue")
}

/// The queue of migration 12: one partial 1-minute bar per row (per symbol, minute and
/// write). Migration 13 folds it into [`batches`] and drops it.
pub fn partials(t: &TableName) -> String {
    object(t, "rollup_partials")
}

/// The columns of [`partials`]: the bar columns, plus the source of the latest quote (the
/// latest-quote table needs it).
pub const PARTIAL_COLUMNS: &str =
    "symbol, bucket, open, high, low, close, open_time, close_time, day_volume, quotes, source";

/// [`BAR_COLUMNS`] with their types, as the bar tables and [`partials`] declare them.
const BAR_COLUMN_TYPES: &str = "symbol text NOT NULL, \
    bucket timestamptz NOT NULL, \
    open double precision NOT NULL, \
    high double precision NOT NULL, \
    low double precision NOT NULL, \
    close double precision NOT NULL, \
    open_time timestamptz NOT NULL, \
    close_time timestamptz NOT NULL, \
    day_volume bigint NOT NULL, \
    quotes bigint NOT NULL";

fn create_partials(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({BAR_COLUMN_TYPES}, source text NOT NULL)",
        partials(t)
    )
}

/// Migration 12: the queue becomes [`partials`]; rows still queued by an older store are
/// folded into partials first, so nothing waiting for the merger is lost.
pub fn partials_migration(t: &TableName) -> Vec<String> {
    vec![
        create_partials(t),
        format!(
            "INSERT INTO {} ({PARTIAL_COLUMNS}) {}",
            partials(t),
            partials_of_quotes(&queue(t))
        ),
        format!("DROP TABLE {}", queue(t)),
    ]
}

/// What is inserted and not yet merged into the rollups (migration 13 on): one row per write
/// transaction holding its partial 1-minute bars (one per symbol and minute of the rows it
/// inserted) as arrays, one array per column of [`PARTIAL_COLUMNS`]. A write adds one row
/// instead of one per partial, and the merger deletes a few rows per merge instead of
/// thousands: row-per-partial, the merger's `DELETE` alone cost about as much as its upserts.
pub fn batches(t: &TableName) -> String {
    object(t, "rollup_batches")
}

/// The columns of [`batches`]: how many partials the row holds, then the arrays.
pub const BATCH_COLUMNS: &str = "partials, symbol, bucket, open, high, low, close, open_time, close_time, day_volume, quotes, source";

/// The array columns of [`batches`], as [`PARTIAL_COLUMNS`] names them.
const BATCH_ARRAYS: [&str; 11] = [
    "symbol",
    "bucket",
    "open",
    "high",
    "low",
    "close",
    "open_time",
    "close_time",
    "day_volume",
    "quotes",
    "source",
];

fn create_batches(t: &TableName) -> Vec<String> {
    let table = batches(t);
    // Every array holds `partials` elements (the merger reads them side by side).
    let same_length: Vec<String> = BATCH_ARRAYS
        .iter()
        .map(|c| format!("cardinality({c}) = partials"))
        .collect();
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {table} (partials integer NOT NULL CHECK (partials > 0), \
         symbol text[] NOT NULL, bucket timestamptz[] NOT NULL, open double precision[] NOT NULL, \
         high double precision[] NOT NULL, low double precision[] NOT NULL, \
         close double precision[] NOT NULL, open_time timestamptz[] NOT NULL, \
         close_time timestamptz[] NOT NULL, day_volume bigint[] NOT NULL, \
         quotes bigint[] NOT NULL, source text[] NOT NULL, CHECK ({}))",
        same_length.join(" AND ")
    )];
    // Out of line without compression: prices and times barely compress, and compressing
    // every row would cost the writing session CPU for nothing (the row lives until the next merge: at most the store's --rollup-interval).
    out.push(format!(
        "ALTER TABLE {table} {}",
        BATCH_ARRAYS
            .iter()
            .map(|c| format!("ALTER COLUMN {c} SET STORAGE EXTERNAL"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out
}

/// The partials of `source` (a relation of [`PARTIAL_COLUMNS`]) as one row of [`batches`]
/// (none when `source` is empty): a SELECT of [`BATCH_COLUMNS`]. One aggregate node reads
/// every column in the same order, so the arrays line up.
fn batch_of_partials(source: &str) -> String {
    let arrays: Vec<String> = BATCH_ARRAYS
        .iter()
        .map(|c| format!("array_agg({c})"))
        .collect();
    format!(
        "SELECT count(*)::integer, {} FROM {source} HAVING count(*) > 0",
        arrays.join(", ")
    )
}

/// Free space left in each page of the tables the merger updates (percent filled).
/// Every merge updates the current minute's, hour's and day's bar and the latest quote of
/// each symbol it saw, all rows that were written together and share pages; with half of
/// each page free the new versions fit beside the old (HOT updates: no new index entries, the
/// dead versions pruned in place), which halved the merger's upsert time in the store
/// benchmark. The cost is disk: the bar tables take about twice their packed size (the 1-minute
/// bars of 500 symbols over a year of trading hours: ~11 GB instead of ~5.5, beside ~400 GB of
/// raw quotes).
pub const MERGED_FILLFACTOR: u8 = 50;

/// Migration 13: the queue becomes [`batches`]; partials still queued by an older store are
/// folded into one row first, so nothing waiting for the merger is lost. The tables the merger
/// updates get [`MERGED_FILLFACTOR`] (new pages only: rows on full pages move the first time
/// they are updated); `bars`: false where the bars are TimescaleDB continuous aggregates.
pub fn batches_migration(t: &TableName, bars: bool) -> Vec<String> {
    let mut out = create_batches(t);
    let mut updated = vec![latest(t)];
    if bars {
        updated.extend(GRAINS.iter().map(|(g, _, _)| self::bars(t, g)));
    }
    out.extend(
        updated
            .iter()
            .map(|table| format!("ALTER TABLE {table} SET (fillfactor = {MERGED_FILLFACTOR})")),
    );
    out.push(format!(
        "INSERT INTO {} ({BATCH_COLUMNS}) {}",
        batches(t),
        batch_of_partials(&partials(t))
    ));
    out.push(format!("DROP TABLE {}", partials(t)));
    out
}

/// The insert of one write's partials computed by the writer ([`minute_partials`]) as one row
/// of [`batches`]: `$1` the count, `$2`.. the arrays in the order of [`PARTIAL_COLUMNS`].
pub fn insert_batch(t: &TableName) -> String {
    format!(
        "INSERT INTO {} ({BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        batches(t)
    )
}

fn create_queue(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (symbol text NOT NULL, {QUOTE_COLUMN_TYPES}, source text NOT NULL)",
        queue(t)
    )
}

/// Most queued partials merged in one transaction (more only when one row of [`batches`]
/// holds more): a bound on the merger's memory, which reads them as they come.
pub const MERGE_LIMIT: usize = 100_000;

/// The bar columns, in order.
pub const BAR_COLUMNS: &str =
    "symbol, bucket, open, high, low, close, open_time, close_time, day_volume, quotes";

fn create_bars(t: &TableName, grain: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({BAR_COLUMN_TYPES}, PRIMARY KEY (symbol, bucket))",
        bars(t, grain)
    )
}

fn create_latest(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (symbol text PRIMARY KEY, {QUOTE_COLUMN_TYPES}, source text NOT NULL)",
        latest(t)
    )
}

/// The bars with their volume (see the module docs).
fn create_ohlcv_view(t: &TableName, grain: &str) -> String {
    let volume = if grain == "1d" {
        "day_volume".to_owned()
    } else {
        format!(
            "GREATEST(day_volume - COALESCE(lag(day_volume) OVER (PARTITION BY symbol, \
             date_bin('1 day', bucket, {ORIGIN}) ORDER BY bucket), 0), 0)"
        )
    };
    format!(
        "CREATE OR REPLACE VIEW {} AS SELECT symbol, bucket, open, high, low, close, \
         {volume} AS volume, quotes FROM {}",
        ohlcv(t, grain),
        bars(t, grain)
    )
}

/// The daily summary: the day's bar with its range.
fn create_daily_view(t: &TableName) -> String {
    format!(
        "CREATE OR REPLACE VIEW {} AS SELECT symbol, bucket AS day, open, high, low, close, \
         day_volume AS volume, high - low AS range, quotes, close_time AS last_quote FROM {}",
        daily(t),
        bars(t, "1d")
    )
}

/// Migration 10 on plain PostgreSQL: the rollup tables and views.
pub fn plain_tables(t: &TableName) -> Vec<String> {
    let mut out: Vec<String> = GRAINS.iter().map(|(g, _, _)| create_bars(t, g)).collect();
    out.push(create_latest(t));
    out.push(create_queue(t));
    out.extend(GRAINS.iter().map(|(g, _, _)| create_ohlcv_view(t, g)));
    out.push(create_daily_view(t));
    out
}

/// The aggregate of `source` rows into one grain's buckets (a SELECT of [`BAR_COLUMNS`]).
fn aggregate_raw(source: &str, width: &str) -> String {
    aggregate_quotes(source, width, "")
}

/// The 1-minute partial bars of `source` quote rows (a SELECT of [`PARTIAL_COLUMNS`]): what
/// [`minute_partials`] computes in the writer, as SQL.
fn partials_of_quotes(source: &str) -> String {
    aggregate_quotes(
        source,
        "1 minute",
        ", (array_agg(source ORDER BY \"timestamp\" DESC))[1]",
    )
}

/// The bar columns of `source` quote rows in buckets of `width`, then `extra` columns.
fn aggregate_quotes(source: &str, width: &str, extra: &str) -> String {
    format!(
        "SELECT symbol, date_bin('{width}', \"timestamp\", {ORIGIN}) AS bucket, \
         (array_agg(price ORDER BY \"timestamp\"))[1], max(price), min(price), \
         (array_agg(price ORDER BY \"timestamp\" DESC))[1], \
         min(\"timestamp\"), max(\"timestamp\"), \
         (array_agg(volume ORDER BY \"timestamp\" DESC))[1], count(*){extra} \
         FROM {source} GROUP BY 1, 2"
    )
}

/// Upsert into a bars table of the bars given as arrays (`$1`.. in the order of
/// [`BAR_COLUMNS`], one bar per (symbol, bucket)), merging exactly: first by open time, last by
/// close time, max, min, sum.
pub fn upsert_bars(t: &TableName, grain: &str) -> String {
    let target = bars(t, grain);
    format!(
        "INSERT INTO {target} AS b ({BAR_COLUMNS}) SELECT * FROM unnest($1::text[], \
         $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], \
         $7::timestamptz[], $8::timestamptz[], $9::int8[], $10::int8[]) ORDER BY 1, 2 \
         ON CONFLICT (symbol, bucket) DO UPDATE SET \
         open = CASE WHEN EXCLUDED.open_time < b.open_time THEN EXCLUDED.open ELSE b.open END, \
         high = GREATEST(b.high, EXCLUDED.high), \
         low = LEAST(b.low, EXCLUDED.low), \
         close = CASE WHEN EXCLUDED.close_time > b.close_time THEN EXCLUDED.close ELSE b.close END, \
         open_time = LEAST(b.open_time, EXCLUDED.open_time), \
         close_time = GREATEST(b.close_time, EXCLUDED.close_time), \
         day_volume = CASE WHEN EXCLUDED.close_time > b.close_time THEN EXCLUDED.day_volume ELSE b.day_volume END, \
         quotes = b.quotes + EXCLUDED.quotes"
    )
}

/// Upsert of the latest quotes given as arrays (`$1` symbol, `$2` timestamp, `$3` price, `$4`
/// volume, `$5` source; one per symbol): a stored later quote wins.
pub fn upsert_latest(t: &TableName) -> String {
    format!(
        "INSERT INTO {} AS l (symbol, \"timestamp\", price, volume, source) \
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::int8[], $5::text[]) \
         ON CONFLICT (symbol) DO UPDATE SET \"timestamp\" = EXCLUDED.\"timestamp\", \
         price = EXCLUDED.price, volume = EXCLUDED.volume, source = EXCLUDED.source \
         WHERE EXCLUDED.\"timestamp\" > l.\"timestamp\"",
        latest(t)
    )
}

/// The ingest statement of a batch that may hold rows already stored: moves the staged rows
/// into the table (skipping rows already there) and queues the partials of exactly the
/// inserted rows for the rollups (one row of [`batches`], none when nothing was inserted), in
/// one statement of the write's transaction; returns one row with the number inserted. The
/// queue is append-only, so concurrent batches never wait on each other's bar rows; the merger
/// ([`merge`]) folds it into the rollups. (A batch of new rows takes the writer's faster
/// path: COPY into the table, partials computed by [`minute_partials`].)
pub fn ingest(t: &TableName, stage: &str, columns: &str) -> String {
    format!(
        "WITH ins AS (INSERT INTO {} ({columns}) SELECT {columns} FROM {stage} \
         ON CONFLICT (\"symbol\", \"timestamp\") DO NOTHING \
         RETURNING symbol, \"timestamp\", price, volume, source), \
         q AS (INSERT INTO {} ({BATCH_COLUMNS}) {} RETURNING 1) \
         SELECT count(*) FROM ins",
        t.quoted(),
        batches(t),
        batch_of_partials(&format!(
            "({}) p ({PARTIAL_COLUMNS})",
            partials_of_quotes("ins")
        ))
    )
}

/// The merger's first statement: takes queued rows of [`batches`] off the queue, oldest
/// first, until they hold at least [`MERGE_LIMIT`] partials (at least one row), returning
/// their arrays (the columns of [`PARTIAL_COLUMNS`]). [`merge`] runs it and the upserts in
/// one transaction, so a partial leaves the queue exactly when it is merged.
pub fn take(t: &TableName) -> String {
    let q = batches(t);
    format!(
        "DELETE FROM {q} WHERE ctid = ANY (ARRAY(SELECT ctid FROM (SELECT ctid, \
         sum(partials) OVER (ROWS UNBOUNDED PRECEDING) - partials AS before FROM {q}) s \
         WHERE before < {MERGE_LIMIT})) RETURNING {PARTIAL_COLUMNS}"
    )
}

/// One partial 1-minute bar: the quotes of one symbol in one minute of one batch (the
/// columns of [`PARTIAL_COLUMNS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Partial<'a> {
    pub symbol: &'a str,
    pub bucket: Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub open_time: Timestamp,
    pub close_time: Timestamp,
    pub day_volume: i64,
    pub quotes: i64,
    pub source: &'a str,
}

impl<'a> Partial<'a> {
    fn of(row: &Row<'a>, bucket: Timestamp) -> Self {
        Self {
            symbol: row.symbol,
            bucket,
            open: row.price,
            high: row.price,
            low: row.price,
            close: row.price,
            open_time: row.timestamp,
            close_time: row.timestamp,
            day_volume: row.volume,
            quotes: 1,
            source: row.source,
        }
    }

    fn add(&mut self, row: &Row<'a>) {
        self.high = self.high.max(row.price);
        self.low = self.low.min(row.price);
        if row.timestamp < self.open_time {
            self.open = row.price;
            self.open_time = row.timestamp;
        }
        if row.timestamp > self.close_time {
            self.close = row.price;
            self.close_time = row.timestamp;
            self.day_volume = row.volume;
            self.source = row.source;
        }
        self.quotes += 1;
    }
}

/// The 1-minute bucket of `t` (`date_bin('1 minute', t, ORIGIN)`: the origin is on a minute,
/// so this is the minute of `t`, in UTC).
fn minute_of(t: Timestamp) -> Timestamp {
    bin(t, 60_000)
}

/// `date_bin(width, t, ORIGIN)` for a width of whole milliseconds dividing a day: the origin
/// is a UTC midnight, so the buckets are those of the Unix epoch.
fn bin(t: Timestamp, width_ms: i64) -> Timestamp {
    let ms = t.as_millisecond();
    Timestamp::from_millisecond(ms - ms.rem_euclid(width_ms)).unwrap_or(t)
}

/// The partials of `rows`, which must all be new and have distinct (symbol, timestamp) (the
/// writer's fast path: the COPY into the table succeeded). Same result as the SQL the slower
/// path runs over the rows it inserted ([`ingest`]).
pub fn minute_partials<'a>(rows: &[Row<'a>]) -> Vec<Partial<'a>> {
    let mut by_key: HashMap<(&str, Timestamp), usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<Partial<'a>> = Vec::new();
    for row in rows {
        let bucket = minute_of(row.timestamp);
        match by_key
            .get(&(row.symbol, bucket))
            .and_then(|&i| out.get_mut(i))
        {
            Some(partial) => partial.add(row),
            None => {
                by_key.insert((row.symbol, bucket), out.len());
                out.push(Partial::of(row, bucket));
            }
        }
    }
    out
}

/// The bars of one grain computed from scratch from the raw table (the reference the rollup
/// tables must equal; also what a rebuild would insert).
pub fn from_scratch(t: &TableName, grain: &str) -> Option<String> {
    let (_, width, _) = GRAINS.iter().find(|(g, _, _)| *g == grain)?;
    Some(aggregate_raw(&t.quoted(), width))
}

/// The TimescaleDB edition, as `timescaledb.license` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum License {
    /// `timescale` (community): compression, continuous aggregates and policies.
    Community,
    /// `apache`: hypertables only.
    Apache,
}

impl License {
    /// From `current_setting('timescaledb.license', true)`.
    pub fn from_setting(value: Option<&str>) -> Self {
        match value {
            Some("timescale") => Self::Community,
            _ => Self::Apache,
        }
    }
}

/// Reads the edition.
pub const LICENSE_QUERY: &str = "SELECT current_setting('timescaledb.license', true)";

/// Migration 11, where TimescaleDB is installed with the community license (see
/// [`crate::schema::timescale`] for the hypertable, compression and retention of migration 2):
/// the bars as hierarchical continuous aggregates 1m → 1h → 1d (each built on the one below,
/// real-time aggregation on) with refresh policies, the latest-quote table (kept at ingest on
/// every edition) and the views. With the Apache edition, which has no continuous aggregates,
/// the plain tables of migration 10 are used instead.
pub fn timescale_rollups(t: &TableName) -> Vec<String> {
    let reg = t.quoted();
    let mut out = Vec::new();
    // (grain, refresh start offset, end offset, schedule)
    let policies = [
        ("1m", "2 hours", "1 minute", "1 minute"),
        ("1h", "2 days", "1 hour", "10 minutes"),
        ("1d", "7 days", "1 day", "1 hour"),
    ];
    for ((grain, width, from), (_, start, end, every)) in GRAINS.iter().zip(policies) {
        let select = match from {
            None => format!(
                "SELECT symbol, time_bucket(INTERVAL '{width}', \"timestamp\") AS bucket, \
                 first(price, \"timestamp\") AS open, max(price) AS high, min(price) AS low, \
                 last(price, \"timestamp\") AS close, min(\"timestamp\") AS open_time, \
                 max(\"timestamp\") AS close_time, last(volume, \"timestamp\") AS day_volume, \
                 count(*) AS quotes FROM {reg} GROUP BY symbol, bucket"
            ),
            Some(below) => format!(
                "SELECT symbol, time_bucket(INTERVAL '{width}', bucket) AS bucket, \
                 first(open, open_time) AS open, max(high) AS high, min(low) AS low, \
                 last(close, close_time) AS close, min(open_time) AS open_time, \
                 max(close_time) AS close_time, last(day_volume, close_time) AS day_volume, \
                 sum(quotes)::bigint AS quotes FROM {} GROUP BY symbol, time_bucket(INTERVAL '{width}', bucket)",
                bars(t, below)
            ),
        };
        let name = bars(t, grain);
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {name} WITH (timescaledb.continuous, \
             timescaledb.materialized_only = false) AS {select} WITH NO DATA"
        ));
        out.push(format!(
            "SELECT add_continuous_aggregate_policy('{name}', start_offset => INTERVAL '{start}', \
             end_offset => INTERVAL '{end}', schedule_interval => INTERVAL '{every}', if_not_exists => TRUE)"
        ));
    }
    out.push(create_latest(t));
    out.push(create_queue(t));
    out.extend(GRAINS.iter().map(|(g, _, _)| create_ohlcv_view(t, g)));
    out.push(create_daily_view(t));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_derive_from_the_table() {
        assert_eq!(
            bars(&TableName::example(), "1m"),
            r#""quotes"."real_time_bars_1m""#
        );
        assert_eq!(
            latest(&TableName::example()),
            r#""quotes"."real_time_latest""#
        );
        assert_eq!(
            daily(&TableName::example()),
            r#""quotes"."real_time_daily""#
        );
    }

    #[test]
    fn the_license_is_read_not_assumed() {
        assert_eq!(License::from_setting(Some("apache")), License::Apache);
        assert_eq!(License::from_setting(None), License::Apache);
        assert_eq!(License::from_setting(Some("timescale")), License::Community);
    }

    #[test]
    fn the_community_edition_gets_hierarchical_aggregates_with_refresh_policies() {
        let plan = timescale_rollups(&TableName::example());
        let text = plan.join(";\n");
        for expected in [
            r#"CREATE MATERIALIZED VIEW IF NOT EXISTS "quotes"."real_time_bars_1m" WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT symbol, time_bucket(INTERVAL '1 minute', "timestamp") AS bucket"#,
            r#"FROM "quotes"."real_time_bars_1m" GROUP BY symbol, time_bucket(INTERVAL '1 hour', bucket) WITH NO DATA"#,
            r#"FROM "quotes"."real_time_bars_1h" GROUP BY symbol, time_bucket(INTERVAL '1 day', bucket) WITH NO DATA"#,
            r#"SELECT add_continuous_aggregate_policy('"quotes"."real_time_bars_1d"', start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE)"#,
        ] {
            assert!(text.contains(expected), "missing {expected}\nin\n{text}");
        }
        // Each aggregate exists before the one built on it, and before its policy.
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("real_time_bars_1m\" WITH") < pos("real_time_bars_1h\" WITH"));
        assert!(pos("real_time_bars_1h\" WITH") < pos("real_time_bars_1d\" WITH"));
        assert!(
            pos("real_time_bars_1d\" WITH")
                < pos("CREATE OR REPLACE VIEW \"quotes\".\"real_time_daily\"")
        );
    }

    #[test]
    fn ingest_queues_only_inserted_rows_and_the_merger_takes_them_off_the_queue() {
        let sql = ingest(
            &TableName::example(),
            "pg_temp.stage",
            "\"symbol\", \"timestamp\"",
        );
        assert!(sql.starts_with(r#"WITH ins AS (INSERT INTO "quotes"."real_time""#));
        assert!(sql.contains("ON CONFLICT (\"symbol\", \"timestamp\") DO NOTHING RETURNING"));
        assert!(sql.contains(r#"q AS (INSERT INTO "quotes"."real_time_rollup_batches""#));
        assert!(sql.contains("FROM ins GROUP BY 1, 2) p (symbol, bucket,"));
        assert!(
            sql.contains("HAVING count(*) > 0"),
            "nothing inserted, nothing queued: {sql}"
        );
        assert!(sql.ends_with("SELECT count(*) FROM ins"));
        let take = take(&TableName::example());
        assert!(take.starts_with(r#"DELETE FROM "quotes"."real_time_rollup_batches""#));
        assert!(take.contains("WHERE before < 100000"), "{take}");
        for g in ["1m", "1h", "1d"] {
            assert!(
                upsert_bars(&TableName::example(), g)
                    .starts_with(&format!("INSERT INTO \"quotes\".\"real_time_bars_{g}\"")),
                "{g}"
            );
        }
        assert!(
            upsert_latest(&TableName::example())
                .contains("WHERE EXCLUDED.\"timestamp\" > l.\"timestamp\"")
        );
        let migration = batches_migration(&TableName::example(), true).join(";\n");
        assert!(
            migration.contains(r#"ALTER TABLE "quotes"."real_time_bars_1d" SET (fillfactor = 50)"#),
            "{migration}"
        );
        let aggregates = batches_migration(&TableName::example(), false).join(";\n");
        assert!(
            !aggregates.contains("bars_1m"),
            "continuous aggregates are views: {aggregates}"
        );
        assert!(
            aggregates.contains(r#"ALTER TABLE "quotes"."real_time_latest" SET (fillfactor = 50)"#)
        );
        assert!(
            migration.contains("cardinality(source) = partials"),
            "{migration}"
        );
        assert!(migration.ends_with(r#"DROP TABLE "quotes"."real_time_rollup_partials""#));
    }

    fn row(
        symbol: &'static str,
        ms: i64,
        price: f64,
        volume: i64,
        source: &'static str,
    ) -> Row<'static> {
        Row {
            symbol,
            timestamp: Timestamp::from_millisecond(ms).unwrap(),
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

    #[test]
    fn partials_group_by_symbol_and_minute_with_first_and_last_by_time() {
        // 2026-01-20T14:30:00Z; rows out of order inside the minute.
        let m = 1_768_919_400_000;
        let rows = [
            row("AAPL", m + 30_000, 11.0, 300, "b"),
            row("AAPL", m + 1_000, 10.0, 100, "a"),
            row("AAPL", m + 59_999, 9.0, 900, "c"),
            row("MSFT", m + 5_000, 50.0, 7, "a"),
            row("AAPL", m + 60_000, 12.0, 1000, "d"),
        ];
        let p = minute_partials(&rows);
        assert_eq!(p.len(), 3);
        let aapl = &p[0];
        assert_eq!((aapl.symbol, aapl.bucket.as_millisecond()), ("AAPL", m));
        assert_eq!(
            (aapl.open, aapl.high, aapl.low, aapl.close),
            (10.0, 11.0, 9.0, 9.0)
        );
        assert_eq!(aapl.open_time.as_millisecond(), m + 1_000);
        assert_eq!(aapl.close_time.as_millisecond(), m + 59_999);
        assert_eq!((aapl.day_volume, aapl.quotes, aapl.source), (900, 3, "c"));
        assert_eq!((p[1].symbol, p[1].quotes), ("MSFT", 1));
        assert_eq!(
            (p[2].bucket.as_millisecond(), p[2].close),
            (m + 60_000, 12.0)
        );
    }

    #[test]
    fn minutes_before_the_epoch_floor_down() {
        let t = Timestamp::from_millisecond(-1).unwrap();
        assert_eq!(minute_of(t).as_millisecond(), -60_000);
    }
}
