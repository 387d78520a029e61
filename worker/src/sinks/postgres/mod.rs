//! The PostgreSQL sink (seed 002): quotes go to `quotes.real_time` (or `spec.sinks.postgres.table`)
//! with primary key (symbol, timestamp), written idempotently in bulk (binary COPY into a
//! session staging table, then INSERT … ON CONFLICT DO NOTHING), at least once. The worker's
//! own migrations create the schema; where the TimescaleDB extension is available the table
//! becomes a hypertable compressed after 30 days and kept 2 years, plain PostgreSQL otherwise.
//!
//! Parts: [`config`] (settings), `schema` (the SQL), `migrations` (applied once, under an
//! advisory lock), `session` (one ready connection and its write), `sink` (the loop: batching,
//! retries, metrics), `error` (retry or reject, and messages that say what to fix).
//!
//! Wiring: `PostgresConfig::from_spec(spec, env)` → [`connect_and_migrate`] at startup (fails fast
//! on a wrong DSN or missing privileges) → [`PostgresSink::with_session`].
//! The staging table is a session temp table, so the DSN must point at PostgreSQL or at a
//! pooler in session mode (not PgBouncer transaction pooling).

pub mod config;
mod error;
mod migrations;
mod schema;
mod session;
mod sink;

pub use config::{PostgresConfig, PostgresConfigError, TableName};
pub use error::PostgresError;
pub use migrations::{MIGRATIONS, MigrationReport};
pub use session::{PgSession, connect_and_migrate};
pub use sink::PostgresSink;

/// Label of this sink in metrics and logs.
pub const SINK_NAME: &str = "postgres";
