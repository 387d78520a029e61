//! Database sessions for reads: a pool of their own (`--read-connections`), apart from the
//! ingest sessions, so that a burst of reads never holds up a batch and the reverse. Each
//! statement is prepared once per connection (`prepare_cached`) and bounded by
//! `statement_timeout`. No write, no migration: the store migrated at startup.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use quotestream_db::{PostgresConfig, TableName, describe};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::error::QueryError;

/// Longest wait for a free read session.
const WAIT: Duration = Duration::from_secs(5);
/// Longest wait to open one (the database may be down).
const CONNECT: Duration = Duration::from_secs(3);
/// Longest a query may run: the windows keep every query far below it.
const STATEMENT_TIMEOUT_MS: u64 = 10_000;

/// Read sessions to the store's database.
#[derive(Debug)]
pub struct Reader {
    pool: Pool,
    pub table: TableName,
    retry_after: u64,
}

/// Why the read pool could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("setting up the read connections: {0}")]
pub struct ReaderError(String);

impl Reader {
    /// A pool of at most `size` sessions; none is opened before the first request.
    pub fn new(
        config: &PostgresConfig,
        size: usize,
        retry_after: u64,
    ) -> Result<Self, ReaderError> {
        // The same settings as the ingest sessions (TLS included), another name in
        // pg_stat_activity unless the DSN names one.
        let (mut pg, tls) = config.connect_parts();
        if !config.dsn().contains("application_name") {
            pg.application_name("quotestream-store-read");
        }
        pg.connect_timeout(CONNECT);
        pg.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(CONNECT))
            .recycle_timeout(Some(CONNECT))
            .build()
            .map_err(|e| ReaderError(e.to_string()))?;
        Ok(Self {
            pool,
            table: config.table.clone(),
            retry_after,
        })
    }

    /// Runs `sql` (prepared once per session) with `params`.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, QueryError> {
        let client = self.pool.get().await.map_err(|e| {
            QueryError::database(
                format!("the database is unavailable: {e}; retry later"),
                self.retry_after,
            )
        })?;
        let failed = |e: tokio_postgres::Error| {
            tracing::warn!(error = %describe(&e), "read query failed");
            QueryError::database(
                format!(
                    "the database failed the query: {}; retry later",
                    describe(&e)
                ),
                self.retry_after,
            )
        };
        let statement = client.prepare_cached(sql).await.map_err(failed)?;
        client.query(&statement, params).await.map_err(failed)
    }

    /// The symbols of `symbols` the store has no quote of.
    pub async fn unknown(&self, symbols: &[String]) -> Result<Vec<String>, QueryError> {
        let rows = self
            .query(&super::sql::unknown(&self.table), &[&symbols])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
