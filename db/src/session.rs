//! One connection to PostgreSQL, ready to write: connected, schema migrated, table checked,
//! staging table and statements prepared. A write is one transaction, so a batch lands whole
//! or not at all, and replaying it adds no rows:
//! - first, inside a savepoint, a binary COPY straight into the table (and, with rollups, the
//!   batch's minute partials computed here, one row of the queue): the common case, a batch
//!   of new quotes, costs one pass over the rows;
//! - when that COPY meets a row already stored (a unique violation: a replay, a retry after a
//!   lost answer, a duplicate inside the batch), the savepoint is rolled back and the batch
//!   goes the idempotent way: binary COPY into the session's staging table, then
//!   INSERT … SELECT … ON CONFLICT DO NOTHING into the table (queueing the partials of exactly
//!   the inserted rows).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement, Transaction};

use crate::config::PostgresConfig;
use crate::error::{PostgresError, describe, fix_for, is_permanent_error, sqlstate_of};
use crate::migrations::{MigrationReport, Rollups, migrate};
use crate::pg_time::PgTime;
use crate::rollup;
use crate::schema;

/// Longest wait to connect, migrate (the migration lock waits up to 60 s for another worker)
/// and prepare.
const OPEN_TIMEOUT: Duration = Duration::from_secs(90);

/// Types of [`schema::COLUMNS`], in order: the binary COPY of quote rows.
pub const COPY_TYPES: [Type; 10] = [
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::FLOAT8,
    Type::INT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::TEXT,
];

/// Types of [`rollup::BATCH_COLUMNS`], in order.
const BATCH_TYPES: [Type; 12] = [
    Type::INT4,
    Type::TEXT_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::TEXT_ARRAY,
];

/// A connection ready to write quotes (see the module docs).
pub struct PgSession {
    client: Client,
    /// COPY straight into the table (the fast path), when its column types allow it.
    copy_target: Option<Statement>,
    /// The insert of a write's minute partials into the rollup queue (one row), when rollups
    /// are kept.
    insert_batch: Option<Statement>,
    copy: Statement,
    insert: Statement,
    /// The insert that also queues the inserted rows for the rollups (returns the count),
    /// when they are kept.
    ingest: Option<Statement>,
    /// Folds queued partials into the rollups, when they are kept.
    merge: Option<rollup::Merger>,
    migrations: MigrationReport,
}

impl fmt::Debug for PgSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSession")
            .field("closed", &self.client.is_closed())
            .field("migrations", &self.migrations)
            .finish()
    }
}

/// Connects, brings the schema up to date and checks the table: the sink's readiness check.
/// Call it at startup so that a wrong DSN, password, database or missing privilege stops the
/// worker with a message that says what to fix, then hand the session to
/// the worker's PostgreSQL sink (or serve requests with it, in the store).
pub async fn connect_and_migrate(config: &PostgresConfig) -> Result<PgSession, PostgresError> {
    tokio::time::timeout(OPEN_TIMEOUT, open(config))
        .await
        .map_err(|_| PostgresError::Timeout {
            server: config.server(),
            what: "connecting and migrating",
            seconds: OPEN_TIMEOUT.as_secs(),
        })?
}

/// A client connected and migrated (within [`OPEN_TIMEOUT`]): the writers' common start.
pub(crate) async fn connect_migrated(
    config: &PostgresConfig,
) -> Result<(Client, MigrationReport), PostgresError> {
    tokio::time::timeout(OPEN_TIMEOUT, connect_and_migrate_client(config))
        .await
        .map_err(|_| PostgresError::Timeout {
            server: config.server(),
            what: "connecting and migrating",
            seconds: OPEN_TIMEOUT.as_secs(),
        })?
}

async fn connect_and_migrate_client(
    config: &PostgresConfig,
) -> Result<(Client, MigrationReport), PostgresError> {
    let server = config.server();
    let connect_err = |e: tokio_postgres::Error| PostgresError::connect(server.clone(), &e);
    let (mut client, connection) = config
        .pg
        .connect(config.connector.clone())
        .await
        .map_err(connect_err)?;
    let log_server = server.clone();
    tokio::spawn(async move {
        // The client sees the failure too (its next call errors and the sink reconnects);
        // this records why the connection ended.
        if let Err(e) = connection.await {
            tracing::warn!(server = %log_server, error = %describe(&e), "PostgreSQL connection lost");
        }
    });
    let migrations = migrate(&mut client, &config.table, config.rollups)
        .await
        .map_err(|s| PostgresError::Migration {
            server: server.clone(),
            table: config.table.to_string(),
            step: match s.version {
                0 => s.name.to_owned(),
                v => format!("migration {v} ({})", s.name),
            },
            reason: describe(&s.error),
            fix: fix_for(&s.error),
            sqlstate: sqlstate_of(&s.error),
            permanent: is_permanent_error(&s.error),
        })?;
    Ok((client, migrations))
}

async fn open(config: &PostgresConfig) -> Result<PgSession, PostgresError> {
    let server = config.server();
    let connect_err = |e: tokio_postgres::Error| PostgresError::connect(server.clone(), &e);
    let (client, migrations) = connect_and_migrate_client(config).await?;
    let exact_types = check_table(&client, config).await?;
    client
        .batch_execute(schema::CREATE_STAGE)
        .await
        .map_err(connect_err)?;
    let copy = client
        .prepare(&schema::copy_into_stage())
        .await
        .map_err(connect_err)?;
    let copy_target = match exact_types {
        true => Some(
            client
                .prepare(&schema::copy_into_table(&config.table))
                .await
                .map_err(connect_err)?,
        ),
        false => None,
    };
    let insert_batch = match migrations.rollups {
        None => None,
        Some(_) => Some(
            client
                .prepare_typed(&rollup::insert_batch(&config.table), &BATCH_TYPES)
                .await
                .map_err(connect_err)?,
        ),
    };
    let insert = client
        .prepare(&schema::insert_from_stage(&config.table))
        .await
        .map_err(connect_err)?;
    let (ingest, merge) = match migrations.rollups {
        None => (None, None),
        Some(mode) => {
            let ingest = rollup::ingest(&config.table, schema::STAGE, &schema::column_list());
            let merge = rollup::Merger::prepare(&client, &config.table, mode == Rollups::Tables)
                .await
                .map_err(connect_err)?;
            (
                Some(client.prepare(&ingest).await.map_err(connect_err)?),
                Some(merge),
            )
        }
    };
    Ok(PgSession {
        client,
        copy_target,
        insert_batch,
        copy,
        insert,
        ingest,
        merge,
        migrations,
    })
}

/// A table the migrations found rather than created (`CREATE TABLE IF NOT EXISTS`) must still
/// take the sink's writes: every column, and a unique key on (symbol, timestamp).
/// Returns whether the column types are exactly the written ones (the fast path's binary COPY
/// straight into the table needs that).
async fn check_table(client: &Client, config: &PostgresConfig) -> Result<bool, PostgresError> {
    let table = config.table.quoted();
    let problem = |problem: String| PostgresError::Table {
        server: config.server(),
        table: config.table.to_string(),
        problem,
    };
    let columns: HashMap<String, String> = client
        .query(schema::TABLE_COLUMNS, &[&table])
        .await
        .map_err(|e| problem(describe(&e)))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let missing: Vec<&str> = schema::COLUMNS
        .into_iter()
        .filter(|c| !columns.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(problem(format!("it has no column {}", missing.join(", "))));
    }
    let keyed: bool = client
        .query_one(schema::HAS_KEY, &[&table])
        .await
        .map_err(|e| problem(describe(&e)))?
        .get(0);
    if !keyed {
        return Err(problem(
            "it has no primary key or unique index on exactly (symbol, timestamp), which idempotent writes (ON CONFLICT) need".into(),
        ));
    }
    let exact = schema::COLUMNS
        .iter()
        .zip(schema::COLUMN_TYPES)
        .all(|(c, t)| columns.get(*c).is_some_and(|have| have == t));
    if !exact {
        tracing::info!(
            table = %config.table,
            "the table's column types differ from the ones the migrations create: every batch goes through the staging table (slower, same result)"
        );
    }
    Ok(exact)
}

impl PgSession {
    /// What the migrations did when this session was opened.
    pub fn migrations(&self) -> &MigrationReport {
        &self.migrations
    }

    /// Whether the connection is gone (the server closed it or it broke).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Writes `rows` in one transaction; returns how many were new (the rest were in the
    /// table already). With rollups, the inserted rows are queued for them in the same
    /// transaction ([`PgSession::merge_rollups`] folds them in). See the module docs for the
    /// two paths.
    pub async fn write(&mut self, rows: &[Row<'_>]) -> Result<u64, tokio_postgres::Error> {
        let mut tx = self.client.transaction().await?;
        let all_new = match &self.copy_target {
            Some(copy_target) => copy_new(&mut tx, copy_target, rows).await?,
            None => false,
        };
        let inserted = if all_new {
            if let Some(insert_batch) = &self.insert_batch {
                queue_partials(&tx, insert_batch, &rollup::minute_partials(rows)).await?;
            }
            rows.len() as u64
        } else {
            copy_rows(&tx, &self.copy, rows).await?;
            match &self.ingest {
                Some(ingest) => {
                    let n: i64 = tx.query_one(ingest, &[]).await?.get(0);
                    u64::try_from(n).unwrap_or(0)
                }
                None => tx.execute(&self.insert, &[]).await?,
            }
        };
        tx.commit().await?;
        Ok(inserted)
    }

    /// Writes several batches in one transaction (group commit: one COPY of all their rows,
    /// one queue row of their minute partials, one commit), when every row is new and the table
    /// takes the fast path; otherwise each batch is written on its own by
    /// [`PgSession::write`], in its own transaction, one after the other. Returns one result
    /// per batch, in order: what that batch's own write would have returned. The outer error
    /// is a failure of the connection before anything was committed (every batch failed).
    ///
    /// A batch is confirmed only by its entry here, after the commit that holds its rows, so a
    /// caller that answers per batch keeps the meaning of a single write.
    pub async fn write_group(
        &mut self,
        batches: &[&[Row<'_>]],
    ) -> Result<Vec<Result<u64, tokio_postgres::Error>>, tokio_postgres::Error> {
        if let [one] = batches {
            return Ok(vec![self.write(one).await]);
        }
        if let Some(copy_target) = &self.copy_target {
            // One slice for the COPY and the partials (rows are a few borrowed fields each).
            let rows = batches.concat();
            let tx = self.client.transaction().await?;
            match copy_rows(&tx, copy_target, &rows).await {
                Ok(()) => {
                    if let Some(insert_batch) = &self.insert_batch {
                        queue_partials(&tx, insert_batch, &rollup::minute_partials(&rows)).await?;
                    }
                    tx.commit().await?;
                    return Ok(batches.iter().map(|b| Ok(b.len() as u64)).collect());
                }
                // A stored row (a replay), or a row the server refused: which batch it is in
                // is unknown, so each batch gets its own transaction below.
                Err(e) if e.as_db_error().is_some() => tx.rollback().await?,
                Err(e) => return Err(e),
            }
        }
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            out.push(self.write(batch).await);
        }
        Ok(out)
    }

    /// Merges up to [`rollup::MERGE_LIMIT`] queued rows into the rollups in one transaction;
    /// returns how many (0: the rollups are current). Without rollups, 0.
    pub async fn merge_rollups(&mut self) -> Result<u64, tokio_postgres::Error> {
        let Some(merge) = &self.merge else {
            return Ok(0);
        };
        rollup::merge(&mut self.client, merge).await
    }

    /// The connection, for statements of the caller's own (health checks, rollups).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The prepared COPY into the session's staging table.
    pub fn copy_statement(&self) -> &Statement {
        &self.copy
    }
}

/// The fast path: COPY `rows` straight into the table inside a savepoint of `tx`. True when
/// every row went in; false (savepoint rolled back, `tx` usable) when one was stored already.
async fn copy_new(
    tx: &mut Transaction<'_>,
    copy_target: &Statement,
    rows: &[Row<'_>],
) -> Result<bool, tokio_postgres::Error> {
    let savepoint = tx.savepoint("quotestream_new_rows").await?;
    match copy_rows(&savepoint, copy_target, rows).await {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(true)
        }
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Queues minute partials for the rollups as one row of the queue per [`rollup::MERGE_LIMIT`]
/// partials (one row for any batch or group; nothing when there are none), inside `tx`.
async fn queue_partials(
    tx: &Transaction<'_>,
    insert: &Statement,
    partials: &[rollup::Partial<'_>],
) -> Result<(), tokio_postgres::Error> {
    for chunk in partials.chunks(rollup::MERGE_LIMIT) {
        queue_row(tx, insert, chunk).await?;
    }
    Ok(())
}

async fn queue_row(
    tx: &Transaction<'_>,
    insert: &Statement,
    partials: &[rollup::Partial<'_>],
) -> Result<(), tokio_postgres::Error> {
    // At most MERGE_LIMIT (100 000) partials: fits.
    let n = i32::try_from(partials.len()).unwrap_or(i32::MAX);
    let column = |f: fn(&rollup::Partial<'_>) -> f64| partials.iter().map(f).collect::<Vec<f64>>();
    let symbol: Vec<&str> = partials.iter().map(|p| p.symbol).collect();
    let bucket: Vec<PgTime> = partials.iter().map(|p| PgTime(p.bucket)).collect();
    let open = column(|p| p.open);
    let high = column(|p| p.high);
    let low = column(|p| p.low);
    let close = column(|p| p.close);
    let open_time: Vec<PgTime> = partials.iter().map(|p| PgTime(p.open_time)).collect();
    let close_time: Vec<PgTime> = partials.iter().map(|p| PgTime(p.close_time)).collect();
    let day_volume: Vec<i64> = partials.iter().map(|p| p.day_volume).collect();
    let quotes: Vec<i64> = partials.iter().map(|p| p.quotes).collect();
    let source: Vec<&str> = partials.iter().map(|p| p.source).collect();
    tx.execute(
        insert,
        &[
            &n,
            &symbol,
            &bucket,
            &open,
            &high,
            &low,
            &close,
            &open_time,
            &close_time,
            &day_volume,
            &quotes,
            &source,
        ],
    )
    .await?;
    Ok(())
}

/// Binary COPY of `rows` into the table `copy` names (the session's staging table, or the
/// quotes table itself), inside `tx`.
pub async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    copy: &Statement,
    rows: &[Row<'_>],
) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(copy).await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &COPY_TYPES));
    for r in rows {
        writer
            .as_mut()
            .write(&[
                &r.symbol,
                &PgTime(r.timestamp),
                &r.price,
                &r.volume,
                &r.bid,
                &r.ask,
                &r.open,
                &r.high,
                &r.low,
                &r.source,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// A quote as a row of the table. Built by the worker from a validated quote, by the store
/// from a checked POST /quotes/batch quote.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    pub symbol: &'a str,
    /// Truncated to the millisecond (see [`Row::millisecond`]).
    pub timestamp: Timestamp,
    /// Last trade price.
    pub price: f64,
    /// Cumulative volume of the trading day.
    pub volume: i64,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub source: &'a str,
}

impl Row<'_> {
    /// `t` truncated to the millisecond: the idempotency key of every sink is (ticker, epoch
    /// ms), and quotes replayed from the wire (millisecond precision) must meet the same key.
    pub fn millisecond(t: Timestamp) -> Timestamp {
        Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
    }

    /// `volume` as the bigint column holds it, or why it cannot.
    pub fn volume(volume: u64) -> Result<i64, String> {
        i64::try_from(volume).map_err(|_| {
            format!(
                "volume {volume} does not fit the bigint column (max {})",
                i64::MAX
            )
        })
    }
}
