//! The SQL of the storage schema (seed 002: `quotes.real_time`, primary key (symbol, timestamp),
//! a TimescaleDB hypertable compressed after 30 days and kept 2 years) and of the sink's
//! writes. Pure functions of the validated table name, so the exact text is unit-tested.
//! Identifiers are only ever interpolated through [`TableName::quoted`] (validated, quoted).

use crate::config::TableName;
use crate::rollup::License;

/// Version table of the migrations, in the target schema. One row per (table, version), so
/// several tables in one schema migrate independently.
pub(crate) const MIGRATIONS_TABLE: &str = "quotestream_migrations";

/// Columns the sink writes, in COPY order. `received_at` is left to its default.
pub(crate) const COLUMNS: [&str; 10] = [
    "symbol",
    "timestamp",
    "price",
    "volume",
    "bid",
    "ask",
    "open",
    "high",
    "low",
    "source",
];

/// The type of each of [`COLUMNS`] (`format_type` spelling) that a binary COPY straight into
/// the table needs; a table the migrations did not create may differ, and then takes every
/// batch through the staging table (whose INSERT casts).
pub(crate) const COLUMN_TYPES: [&str; 10] = [
    "text",
    "timestamp with time zone",
    "double precision",
    "bigint",
    "double precision",
    "double precision",
    "double precision",
    "double precision",
    "double precision",
    "text",
];

/// The per-session staging table the COPY goes to.
pub const STAGE: &str = "pg_temp.quotestream_stage";

pub(crate) fn create_schema(t: &TableName) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", t.schema())
}

pub(crate) fn create_migrations_table(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         target_table text NOT NULL, \
         version integer NOT NULL, \
         name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now(), \
         PRIMARY KEY (target_table, version))",
        t.sibling(MIGRATIONS_TABLE)
    )
}

/// The time, price and volume of a quote as the quotes table declares them (and the rollups'
/// per-symbol tables that keep a quote's).
pub(crate) const QUOTE_COLUMN_TYPES: &str = "\"timestamp\" timestamptz NOT NULL, \
    price double precision NOT NULL, \
    volume bigint NOT NULL";

/// Migration 1: the table. `price` is the last trade; `volume` the day's cumulative volume;
/// share-class tickers (BRK.B) are stored as they are in `symbol`.
pub(crate) fn create_table(t: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         symbol text NOT NULL, {QUOTE_COLUMN_TYPES}, \
         bid double precision, \
         ask double precision, \
         open double precision, \
         high double precision, \
         low double precision, \
         source text NOT NULL, \
         received_at timestamptz NOT NULL DEFAULT now(), \
         PRIMARY KEY (symbol, \"timestamp\"))",
        t.quoted()
    )
}

/// Whether the server can install TimescaleDB.
pub(crate) const TIMESCALE_AVAILABLE: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')";

/// Migration 2, run only where TimescaleDB is available, after `CREATE EXTENSION` and with the
/// edition read from `timescaledb.license` (detected, not assumed): the table becomes a
/// hypertable on `timestamp` in 1-day chunks (rows already there move into chunks); with the
/// community license, chunks are also compressed after 30 days (segmented by symbol, so one
/// symbol's range decompresses alone) and dropped after 2 years. The Apache edition has no
/// compression or policies: the hypertable only.
pub fn timescale(t: &TableName, license: License) -> Vec<String> {
    // regclass arguments as string literals: the name is validated, so it holds no quote.
    let reg = t.quoted();
    let mut out = vec![format!(
        "SELECT create_hypertable('{reg}', 'timestamp', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE, migrate_data => TRUE)"
    )];
    if license == License::Community {
        out.push(format!(
            "ALTER TABLE {reg} SET (timescaledb.compress, \
             timescaledb.compress_segmentby = 'symbol', \
             timescaledb.compress_orderby = '\"timestamp\" DESC')"
        ));
        out.push(format!(
            "SELECT add_compression_policy('{reg}', INTERVAL '30 days', if_not_exists => TRUE)"
        ));
        out.push(format!(
            "SELECT add_retention_policy('{reg}', INTERVAL '2 years', if_not_exists => TRUE)"
        ));
    }
    out
}

/// Creates the extension (first statement of migration 2).
pub const CREATE_TIMESCALE: &str = "CREATE EXTENSION IF NOT EXISTS timescaledb";

/// The columns the table has (to check a table the migrations did not create).
pub(crate) const TABLE_COLUMNS: &str = "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
     WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped";

/// Whether a unique index covers exactly (symbol, timestamp), as ON CONFLICT needs.
pub(crate) const HAS_KEY: &str = "SELECT EXISTS (SELECT 1 FROM pg_index i \
     WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indpred IS NULL \
     AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a \
          WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) \
         = ARRAY['symbol', 'timestamp'])";

/// The session's staging table: plain columns of the written types, no constraints (the
/// target's key decides), emptied by every commit. Declared rather than `LIKE target` so a
/// target with extra NOT NULL columns (received_at) still takes the COPY.
pub(crate) const CREATE_STAGE: &str = "CREATE TEMP TABLE IF NOT EXISTS quotestream_stage (\
     symbol text, \"timestamp\" timestamptz, price double precision, volume bigint, \
     bid double precision, ask double precision, open double precision, \
     high double precision, low double precision, source text) ON COMMIT DELETE ROWS";

/// The written columns, quoted, comma-separated.
pub fn column_list() -> String {
    COLUMNS
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn copy_into_stage() -> String {
    format!(
        "COPY {STAGE} ({}) FROM STDIN (FORMAT binary)",
        column_list()
    )
}

/// COPY straight into the table: the writer's fast path for a batch of new rows (a row stored
/// already fails it with a unique violation, and the batch takes the staged path).
pub(crate) fn copy_into_table(t: &TableName) -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        t.quoted(),
        column_list()
    )
}

/// Moves the staged rows into the table; rows whose (symbol, timestamp) is there already are
/// skipped, so a replayed batch adds nothing (duplicates inside one batch are skipped too:
/// DO NOTHING, unlike DO UPDATE, accepts them).
pub(crate) fn insert_from_stage(t: &TableName) -> String {
    let cols = column_list();
    format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {STAGE} \
         ON CONFLICT (\"symbol\", \"timestamp\") DO NOTHING",
        t.quoted()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timescale_sql_is_the_seed_policy_where_the_edition_allows_it() {
        let hypertable = r#"SELECT create_hypertable('"quotes"."real_time"', 'timestamp', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE, migrate_data => TRUE)"#;
        assert_eq!(
            timescale(&TableName::example(), License::Apache),
            [hypertable]
        );
        assert_eq!(
            timescale(&TableName::example(), License::Community),
            [
                hypertable,
                r#"ALTER TABLE "quotes"."real_time" SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = '"timestamp" DESC')"#,
                r#"SELECT add_compression_policy('"quotes"."real_time"', INTERVAL '30 days', if_not_exists => TRUE)"#,
                r#"SELECT add_retention_policy('"quotes"."real_time"', INTERVAL '2 years', if_not_exists => TRUE)"#,
            ]
        );
    }

    #[test]
    fn writes_name_every_column_and_the_key() {
        assert_eq!(
            copy_into_stage(),
            r#"COPY pg_temp.quotestream_stage ("symbol", "timestamp", "price", "volume", "bid", "ask", "open", "high", "low", "source") FROM STDIN (FORMAT binary)"#
        );
        let insert = insert_from_stage(&TableName::example());
        assert!(
            insert.starts_with(r#"INSERT INTO "quotes"."real_time" ("symbol", "#),
            "{insert}"
        );
        assert!(
            insert.ends_with(r#"ON CONFLICT ("symbol", "timestamp") DO NOTHING"#),
            "{insert}"
        );
    }

    #[test]
    fn the_table_has_the_seed_key() {
        let ddl = create_table(&TableName::example());
        assert!(
            ddl.starts_with(r#"CREATE TABLE IF NOT EXISTS "quotes"."real_time" ("#),
            "{ddl}"
        );
        assert!(
            ddl.ends_with(r#"PRIMARY KEY (symbol, "timestamp"))"#),
            "{ddl}"
        );
        for c in COLUMNS {
            assert!(ddl.contains(c), "{c} missing from {ddl}");
        }
    }
}
