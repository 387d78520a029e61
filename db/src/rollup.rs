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
//! On plain PostgreSQL the tables are written in the ingest transaction ([`ingest`]). Where
//! TimescaleDB is installed with its community license, the same names are hierarchical
//! continuous aggregates with refresh policies instead ([`timescale_plan`]).

use std::collections::HashMap;

use jiff::Timestamp;

use crate::config::TableName;
use crate::schema::QUOTE_COLUMN_TYPES;
use crate::session::Row;

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

/// What is inserted and not yet merged into the rollups: one partial 1-minute bar per symbol,
/// minute and batch (a batch of 1000 quotes over 500 symbols queues ~500 rows, not 1000).
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

/// `COPY` of partials computed by the writer ([`minute_partials`]) into the queue.
pub fn copy_partials(t: &TableName) -> String {
    format!(
        "COPY {} ({PARTIAL_COLUMNS}) FROM STDIN (FORMAT binary)",
        partials(t)
    )
}

fn create_queue(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (symbol text NOT NULL, {QUOTE_COLUMN_TYPES}, source text NOT NULL)",
        queue(t)
    )
}

/// Most queued partials merged in one transaction.
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

/// The aggregate of `source` partials into buckets of `width` (a SELECT of [`BAR_COLUMNS`],
/// named, then `extra` columns): first by open time, last by close time, max, min, sum, so
/// merging partials gives the bar of their quotes. The result is itself a set of partials of
/// the coarser buckets, so a coarser grain can be aggregated from it (1 day from 1 hour from
/// 1 minute) with the same result as from the partials themselves, over far fewer rows.
fn aggregate_partials(source: &str, width: &str, extra: &str) -> String {
    format!(
        "SELECT symbol, date_bin('{width}', bucket, {ORIGIN}) AS bucket, \
         (array_agg(open ORDER BY open_time))[1] AS open, max(high) AS high, min(low) AS low, \
         (array_agg(close ORDER BY close_time DESC))[1] AS close, \
         min(open_time) AS open_time, max(close_time) AS close_time, \
         (array_agg(day_volume ORDER BY close_time DESC))[1] AS day_volume, \
         sum(quotes)::bigint AS quotes{extra} \
         FROM {source} GROUP BY 1, 2"
    )
}

/// Upsert of the aggregated partials `source` (a relation of [`BAR_COLUMNS`]) into a bars
/// table, merging exactly.
fn merge_into_bars(t: &TableName, grain: &str, source: &str) -> String {
    let target = bars(t, grain);
    format!(
        "INSERT INTO {target} AS b ({BAR_COLUMNS}) SELECT {BAR_COLUMNS} FROM {source} ORDER BY 1, 2 \
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

/// The ingest statement of a batch that may hold rows already stored: moves the staged rows
/// into the table (skipping rows already there) and queues the partials of exactly the
/// inserted rows for the rollups, in one statement of the write's transaction; returns one
/// row with the number inserted. The queue is append-only, so concurrent batches never wait
/// on each other's bar rows; [`merge`] folds it into the rollups. (A batch of new rows takes
/// the writer's faster path: COPY into the table, partials computed by [`minute_partials`].)
pub fn ingest(t: &TableName, stage: &str, columns: &str) -> String {
    format!(
        "WITH ins AS (INSERT INTO {} ({columns}) SELECT {columns} FROM {stage} \
         ON CONFLICT (\"symbol\", \"timestamp\") DO NOTHING \
         RETURNING symbol, \"timestamp\", price, volume, source), \
         q AS (INSERT INTO {} ({PARTIAL_COLUMNS}) {} RETURNING 1) \
         SELECT count(*) FROM ins",
        t.quoted(),
        partials(t),
        partials_of_quotes("ins")
    )
}

/// The merge statement: takes up to [`MERGE_LIMIT`] queued partials off the queue and merges
/// them exactly into every bar table (`bars`: false where they are continuous aggregates) and
/// the latest quotes, in one statement (so one transaction: a partial leaves the queue exactly
/// when it is merged); returns one row with the number of quotes merged.
pub fn merge(t: &TableName, bars: bool) -> String {
    let q = partials(t);
    // The queued partials, then their 1-minute aggregate (partials of several batches of one
    // symbol and minute become one row; it keeps the latest source for the latest quotes),
    // each coarser grain aggregated from the one below it.
    let mut sql = format!(
        "WITH d AS (DELETE FROM {q} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {q} LIMIT {MERGE_LIMIT})) \
         RETURNING {PARTIAL_COLUMNS}), g_1m AS ({})",
        aggregate_partials(
            "d",
            "1 minute",
            ", (array_agg(source ORDER BY close_time DESC))[1] AS source"
        )
    );
    if bars {
        for pair in GRAINS.windows(2) {
            let [(below, _, _), (grain, width, _)] = pair else {
                continue;
            };
            sql.push_str(&format!(
                ", g_{grain} AS ({})",
                aggregate_partials(&format!("g_{below}"), width, "")
            ));
        }
        for (grain, _, _) in GRAINS {
            sql.push_str(&format!(
                ", b_{grain} AS ({} RETURNING 1)",
                merge_into_bars(t, grain, &format!("g_{grain}"))
            ));
        }
    }
    sql.push_str(&format!(
        ", l AS (INSERT INTO {latest} AS l (symbol, \"timestamp\", price, volume, source) \
         SELECT DISTINCT ON (symbol) symbol, close_time, close, day_volume, source FROM g_1m \
         ORDER BY symbol, close_time DESC \
         ON CONFLICT (symbol) DO UPDATE SET \"timestamp\" = EXCLUDED.\"timestamp\", \
         price = EXCLUDED.price, volume = EXCLUDED.volume, source = EXCLUDED.source \
         WHERE EXCLUDED.\"timestamp\" > l.\"timestamp\" RETURNING 1) \
         SELECT COALESCE(sum(quotes), 0)::bigint FROM d",
        latest = latest(t)
    ));
    sql
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
    let ms = t.as_millisecond();
    Timestamp::from_millisecond(ms - ms.rem_euclid(60_000)).unwrap_or(t)
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
    fn ingest_queues_only_inserted_rows_and_merge_folds_them_in() {
        let sql = ingest(
            &TableName::example(),
            "pg_temp.stage",
            "\"symbol\", \"timestamp\"",
        );
        assert!(sql.starts_with(r#"WITH ins AS (INSERT INTO "quotes"."real_time""#));
        assert!(sql.contains("ON CONFLICT (\"symbol\", \"timestamp\") DO NOTHING RETURNING"));
        assert!(sql.contains(r#"q AS (INSERT INTO "quotes"."real_time_rollup_partials""#));
        assert!(sql.contains("FROM ins GROUP BY 1, 2"));
        assert!(sql.ends_with("SELECT count(*) FROM ins"));
        let sql = merge(&TableName::example(), true);
        assert!(sql.starts_with(r#"WITH d AS (DELETE FROM "quotes"."real_time_rollup_partials""#));
        for g in ["1m", "1h", "1d"] {
            assert!(
                sql.contains(&format!(
                    "b_{g} AS (INSERT INTO \"quotes\".\"real_time_bars_{g}\""
                )),
                "{g}"
            );
        }
        assert!(sql.contains("FROM d GROUP BY 1, 2"));
        assert!(
            sql.contains(
                "date_bin('1 hour', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket"
            ) && sql.contains("FROM g_1m GROUP BY 1, 2")
                && sql.contains("FROM g_1h GROUP BY 1, 2"),
            "each grain is aggregated from the one below: {sql}"
        );
        assert!(sql.ends_with("SELECT COALESCE(sum(quotes), 0)::bigint FROM d"));
        let latest_only = merge(&TableName::example(), false);
        assert!(!latest_only.contains("bars_1m"), "{latest_only}");
        assert!(latest_only.contains(r#"INSERT INTO "quotes"."real_time_latest""#));
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
