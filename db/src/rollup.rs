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

use crate::config::TableName;

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

/// The rows inserted and not yet merged into the rollups.
pub fn queue(t: &TableName) -> String {
    object(t, "rollup_queue")
}

fn create_queue(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         symbol text NOT NULL, \
         \"timestamp\" timestamptz NOT NULL, \
         price double precision NOT NULL, \
         volume bigint NOT NULL, \
         source text NOT NULL)",
        queue(t)
    )
}

/// Most queued rows merged in one transaction.
pub const MERGE_LIMIT: usize = 100_000;

/// The bar columns, in order.
pub const BAR_COLUMNS: &str =
    "symbol, bucket, open, high, low, close, open_time, close_time, day_volume, quotes";

fn create_bars(t: &TableName, grain: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         symbol text NOT NULL, \
         bucket timestamptz NOT NULL, \
         open double precision NOT NULL, \
         high double precision NOT NULL, \
         low double precision NOT NULL, \
         close double precision NOT NULL, \
         open_time timestamptz NOT NULL, \
         close_time timestamptz NOT NULL, \
         day_volume bigint NOT NULL, \
         quotes bigint NOT NULL, \
         PRIMARY KEY (symbol, bucket))",
        bars(t, grain)
    )
}

fn create_latest(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         symbol text PRIMARY KEY, \
         \"timestamp\" timestamptz NOT NULL, \
         price double precision NOT NULL, \
         volume bigint NOT NULL, \
         source text NOT NULL)",
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
    format!(
        "SELECT symbol, date_bin('{width}', \"timestamp\", {ORIGIN}) AS bucket, \
         (array_agg(price ORDER BY \"timestamp\"))[1], max(price), min(price), \
         (array_agg(price ORDER BY \"timestamp\" DESC))[1], \
         min(\"timestamp\"), max(\"timestamp\"), \
         (array_agg(volume ORDER BY \"timestamp\" DESC))[1], count(*) \
         FROM {source} GROUP BY 1, 2"
    )
}

/// Upsert of aggregated rows into a bars table, merging exactly.
fn merge_into_bars(t: &TableName, grain: &str, width: &str, source: &str) -> String {
    let target = bars(t, grain);
    format!(
        "INSERT INTO {target} AS b ({BAR_COLUMNS}) {} ORDER BY 1, 2 \
         ON CONFLICT (symbol, bucket) DO UPDATE SET \
         open = CASE WHEN EXCLUDED.open_time < b.open_time THEN EXCLUDED.open ELSE b.open END, \
         high = GREATEST(b.high, EXCLUDED.high), \
         low = LEAST(b.low, EXCLUDED.low), \
         close = CASE WHEN EXCLUDED.close_time > b.close_time THEN EXCLUDED.close ELSE b.close END, \
         open_time = LEAST(b.open_time, EXCLUDED.open_time), \
         close_time = GREATEST(b.close_time, EXCLUDED.close_time), \
         day_volume = CASE WHEN EXCLUDED.close_time > b.close_time THEN EXCLUDED.day_volume ELSE b.day_volume END, \
         quotes = b.quotes + EXCLUDED.quotes",
        aggregate_raw(source, width)
    )
}

/// The ingest statement: moves the staged rows into the table (skipping rows already there)
/// and queues exactly the inserted rows for the rollups, in one statement of the write's
/// transaction; returns one row with the number inserted. The queue is append-only, so
/// concurrent batches never wait on each other's bar rows; [`merge`] folds it into the
/// rollups.
pub fn ingest(t: &TableName, stage: &str, columns: &str) -> String {
    format!(
        "WITH ins AS (INSERT INTO {} ({columns}) SELECT {columns} FROM {stage} \
         ON CONFLICT (\"symbol\", \"timestamp\") DO NOTHING \
         RETURNING symbol, \"timestamp\", price, volume, source), \
         q AS (INSERT INTO {} (symbol, \"timestamp\", price, volume, source) \
         SELECT symbol, \"timestamp\", price, volume, source FROM ins RETURNING 1) \
         SELECT count(*) FROM ins",
        t.quoted(),
        queue(t)
    )
}

/// The merge statement: takes up to [`MERGE_LIMIT`] queued rows off the queue and merges them
/// exactly into every bar table (`bars`: false where they are continuous aggregates) and the
/// latest quotes, in one statement (so one transaction: a row leaves the queue exactly when
/// it is merged); returns one row with the number merged.
pub fn merge(t: &TableName, bars: bool) -> String {
    let q = queue(t);
    let mut sql = format!(
        "WITH d AS (DELETE FROM {q} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {q} LIMIT {MERGE_LIMIT})) \
         RETURNING symbol, \"timestamp\", price, volume, source)"
    );
    if bars {
        for (grain, width, _) in GRAINS {
            sql.push_str(&format!(
                ", b_{grain} AS ({} RETURNING 1)",
                merge_into_bars(t, grain, width, "d")
            ));
        }
    }
    sql.push_str(&format!(
        ", l AS (INSERT INTO {latest} AS l (symbol, \"timestamp\", price, volume, source) \
         SELECT DISTINCT ON (symbol) symbol, \"timestamp\", price, volume, source FROM d \
         ORDER BY symbol, \"timestamp\" DESC \
         ON CONFLICT (symbol) DO UPDATE SET \"timestamp\" = EXCLUDED.\"timestamp\", \
         price = EXCLUDED.price, volume = EXCLUDED.volume, source = EXCLUDED.source \
         WHERE EXCLUDED.\"timestamp\" > l.\"timestamp\" RETURNING 1) \
         SELECT count(*) FROM d",
        latest = latest(t)
    ));
    sql
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

    fn table() -> TableName {
        TableName::parse("quotes.real_time").unwrap()
    }

    #[test]
    fn names_derive_from_the_table() {
        assert_eq!(bars(&table(), "1m"), r#""quotes"."real_time_bars_1m""#);
        assert_eq!(latest(&table()), r#""quotes"."real_time_latest""#);
        assert_eq!(daily(&table()), r#""quotes"."real_time_daily""#);
    }

    #[test]
    fn the_license_is_read_not_assumed() {
        assert_eq!(License::from_setting(Some("apache")), License::Apache);
        assert_eq!(License::from_setting(None), License::Apache);
        assert_eq!(License::from_setting(Some("timescale")), License::Community);
    }

    #[test]
    fn the_community_edition_gets_hierarchical_aggregates_with_refresh_policies() {
        let plan = timescale_rollups(&table());
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
        let sql = ingest(&table(), "pg_temp.stage", "\"symbol\", \"timestamp\"");
        assert!(sql.starts_with(r#"WITH ins AS (INSERT INTO "quotes"."real_time""#));
        assert!(sql.contains("ON CONFLICT (\"symbol\", \"timestamp\") DO NOTHING RETURNING"));
        assert!(sql.contains(r#"q AS (INSERT INTO "quotes"."real_time_rollup_queue""#));
        assert!(sql.ends_with("SELECT count(*) FROM ins"));
        let sql = merge(&table(), true);
        assert!(sql.starts_with(r#"WITH d AS (DELETE FROM "quotes"."real_time_rollup_queue""#));
        for g in ["1m", "1h", "1d"] {
            assert!(
                sql.contains(&format!(
                    "b_{g} AS (INSERT INTO \"quotes\".\"real_time_bars_{g}\""
                )),
                "{g}"
            );
        }
        assert!(sql.contains("FROM d GROUP BY 1, 2"));
        assert!(sql.ends_with("SELECT count(*) FROM d"));
        let latest_only = merge(&table(), false);
        assert!(!latest_only.contains("bars_1m"), "{latest_only}");
        assert!(latest_only.contains(r#"INSERT INTO "quotes"."real_time_latest""#));
    }
}
