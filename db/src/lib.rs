//! The database side of quotestream, one definition shared by the worker's PostgreSQL sink and
//! the storage service `quotestream-store`: quotes go to `quotes.real_time` (or another
//! `schema.table`) with primary key (symbol, timestamp), written idempotently in bulk (binary
//! COPY straight into the table; a batch holding a stored row goes through a session staging
//! table and INSERT … ON CONFLICT DO NOTHING), at least once.
//!
//! Parts: [`config`] (where to connect, which table), [`tls`] (sslmode and sslrootcert), `schema` (the SQL, pure functions of
//! the validated table name), `migrations` (versioned, applied once under an advisory lock),
//! `session` (one ready connection and its write), `error` (retry or reject, and messages that
//! say what to fix).
//!
//! The staging table is a session temp table, so the DSN must point at PostgreSQL or at a
//! pooler in session mode (not PgBouncer transaction pooling).

pub mod config;
mod error;
pub mod history;
mod migrations;
pub mod partitions;
mod pg_time;
pub mod reader_role;
pub mod rollup;
pub mod schema;
mod session;
mod status;
pub mod tls;

pub use config::{PostgresConfig, PostgresConfigError, TableName};
pub use error::{
    PostgresError, Verdict, classify, describe, fix_for, is_permanent, is_permanent_error,
};
pub use history::{HistoryStore, VendorBar, Window, WriteCounts};
pub use migrations::{MIGRATIONS, MigrationReport, ROLLUP_MIGRATIONS, Rollups};
pub use session::{COPY_TYPES, PgSession, Row, connect_and_migrate, copy_rows};
pub use status::{SchemaStatus, TableKind, schema_status};
