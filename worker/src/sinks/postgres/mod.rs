//! The PostgreSQL sink (seed 002): quotes go to `quotes.real_time` (or `spec.sinks.postgres.table`)
//! with primary key (symbol, timestamp), written idempotently in bulk, at least once. The
//! database side (schema, versioned migrations, the idempotent COPY writer) is
//! `quotestream-db`, shared with the storage service `quotestream-store`; this module is the
//! sink's loop: batching, retries, metrics ([`PostgresSink`]).
//!
//! Wiring: `PostgresConfig::from_spec(spec, env)` → [`connect_and_migrate`] at startup (fails fast
//! on a wrong DSN or missing privileges) → [`PostgresSink::with_session`].

mod sink;

pub use quotestream_db::{
    MIGRATIONS, MigrationReport, PgSession, PostgresConfig, PostgresConfigError, PostgresError,
    TableName, connect_and_migrate,
};
pub use sink::PostgresSink;

/// Label of this sink in metrics and logs.
pub const NAME: &str = "postgres";

impl From<PostgresConfigError> for crate::sinks::SinkError {
    fn from(e: PostgresConfigError) -> Self {
        crate::sinks::SinkError::Config {
            sink: NAME,
            reason: e.to_string(),
        }
    }
}
