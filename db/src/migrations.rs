//! Versioned, idempotent schema migrations, run by every worker when it connects. Each
//! migration is applied once (recorded per table in `<schema>.quotestream_migrations`) in its
//! own transaction; a session-level advisory lock per schema makes workers that start together
//! take turns, so the second sees what the first applied. The lock goes with the session, so a
//! worker that dies mid-migration blocks nobody.

use std::collections::HashSet;

use tokio_postgres::Client;

use crate::config::TableName;
use crate::error::describe;
use crate::history;
use crate::partitions;
use crate::reader_role;
use crate::rollup::{self, License};
use crate::schema::{self, MIGRATIONS_TABLE};

/// Longest wait for another worker's migrations (or any lock a DDL statement needs).
const LOCK_TIMEOUT: &str = "60s";

/// The migrations of the quotes table, in order (the worker's sink and the store).
pub const MIGRATIONS: [(i32, &str); 2] = [
    (1, "create table"),
    (2, "timescaledb hypertable, compression and retention"),
];

/// The store's migrations (it keeps the rollups current at ingest and maintains the
/// partitions): time partitions where TimescaleDB is not available, and one of the two rollup
/// migrations, chosen by what the server has (docs/store.md).
pub const ROLLUP_MIGRATIONS: [(i32, &str); 7] = [
    (3, "time partitions (plain PostgreSQL)"),
    (10, "rollup tables (plain PostgreSQL)"),
    (11, "rollups as timescaledb continuous aggregates"),
    (12, "rollup queue as minute partials"),
    (13, "rollup queue as one row of partials per write"),
    (20, "read-only role quotestream_reader"),
    (30, "vendor bars and backfill checkpoints"),
];

/// How the rollups are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollups {
    /// Tables merged at ingest, in the write's transaction (migration 10).
    Tables,
    /// TimescaleDB continuous aggregates with refresh policies (migration 11).
    ContinuousAggregates,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run (empty when the schema was up to date).
    pub applied: Vec<i32>,
    /// Whether the table is a TimescaleDB hypertable (migration 2 applied, now or before).
    pub timescale: bool,
    /// How the rollups are kept, when they were asked for.
    pub rollups: Option<Rollups>,
}

/// A step that failed: which migration (0 for the lock and the version table) and why.
#[derive(Debug)]
pub(crate) struct StepError {
    pub version: i32,
    pub name: &'static str,
    pub error: tokio_postgres::Error,
}

fn name_of(version: i32) -> &'static str {
    MIGRATIONS
        .iter()
        .chain(ROLLUP_MIGRATIONS.iter())
        .find(|(v, _)| *v == version)
        .map_or("the migration lock and version table", |(_, n)| *n)
}

fn step(version: i32) -> impl FnOnce(tokio_postgres::Error) -> StepError {
    let name = name_of(version);
    move |error| StepError {
        version,
        name,
        error,
    }
}

/// Brings the schema of `table` up to date (and its rollups, when `rollups` is set).
pub(crate) async fn migrate(
    client: &mut Client,
    table: &TableName,
    rollups: bool,
) -> Result<MigrationReport, StepError> {
    let key = format!("quotestream.migrations:{}", table.schema());
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(step(0))?;
    client
        .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
        .await
        .map_err(step(0))?;
    let result = migrate_locked(client, table, rollups).await;
    // Released after a failure too; if the session broke, the server released it already.
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
            &[&key],
        )
        .await;
    let _ = client.batch_execute("RESET lock_timeout").await;
    result
}

async fn migrate_locked(
    client: &mut Client,
    table: &TableName,
    rollups: bool,
) -> Result<MigrationReport, StepError> {
    // Existence is checked first: CREATE … IF NOT EXISTS still demands the CREATE privilege,
    // and a DBA may have made the schema for a user that lacks it.
    if !exists(
        client,
        "SELECT to_regnamespace($1) IS NOT NULL",
        &quote(table.schema()),
    )
    .await?
    {
        client
            .batch_execute(&schema::create_schema(table))
            .await
            .map_err(step(0))?;
    }
    let versions = table.sibling(MIGRATIONS_TABLE);
    if !exists(client, "SELECT to_regclass($1) IS NOT NULL", &versions).await? {
        client
            .batch_execute(&schema::create_migrations_table(table))
            .await
            .map_err(step(0))?;
    }
    let applied: HashSet<i32> = client
        .query(
            &format!("SELECT version FROM {versions} WHERE target_table = $1"),
            &[&table.dotted()],
        )
        .await
        .map_err(step(0))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut report = MigrationReport {
        applied: Vec::new(),
        timescale: applied.contains(&2),
        rollups: None,
    };

    if !applied.contains(&1) {
        apply(client, table, 1, &[schema::create_table(table)]).await?;
        report.applied.push(1);
    }
    if !applied.contains(&2) {
        let available: bool = client
            .query_one(schema::TIMESCALE_AVAILABLE, &[])
            .await
            .map_err(step(2))?
            .get(0);
        if !available {
            // Not recorded: it runs when the extension appears, and migrate_data moves the
            // rows written until then into the hypertable.
            tracing::info!(
                %table,
                "TimescaleDB is not available on this server: using a plain PostgreSQL table (migration 2 stays pending)"
            );
        } else {
            match apply_timescale(client, table).await {
                Ok(()) => {
                    report.applied.push(2);
                    report.timescale = true;
                }
                // The table works without it; the quotes must not wait for a DBA.
                Err(e) => tracing::warn!(
                    %table,
                    error = %describe(&e.error),
                    "TimescaleDB is installed but the hypertable could not be set up, so the table stays plain PostgreSQL; add timescaledb to shared_preload_libraries and let the user create the extension (migration 2 is retried at the next start)"
                ),
            }
        }
    }
    if rollups {
        if !report.timescale && !applied.contains(&3) {
            partition(client, table, &mut report).await?;
        }
        report.rollups = Some(migrate_rollups(client, table, &applied, &mut report).await?);
        if !applied.contains(&12) {
            apply(client, table, 12, &rollup::partials_migration(table)).await?;
            report.applied.push(12);
        }
        if !applied.contains(&13) {
            let bars = report.rollups == Some(Rollups::Tables);
            apply(client, table, 13, &rollup::batches_migration(table, bars)).await?;
            report.applied.push(13);
        }
        if !applied.contains(&30) {
            apply(client, table, 30, &history::migration(table)).await?;
            report.applied.push(30);
        }
        // Last: it grants SELECT on every table the migrations above created.
        if !applied.contains(&20) {
            reader_role(client, table, &mut report).await;
        }
    }
    Ok(report)
}

/// Migration 10 or 11 (see [`ROLLUP_MIGRATIONS`]): continuous aggregates on a hypertable with
/// the community license, tables kept at ingest everywhere else.
async fn migrate_rollups(
    client: &mut Client,
    table: &TableName,
    applied: &HashSet<i32>,
    report: &mut MigrationReport,
) -> Result<Rollups, StepError> {
    if applied.contains(&11) {
        return Ok(Rollups::ContinuousAggregates);
    }
    if applied.contains(&10) {
        return Ok(Rollups::Tables);
    }
    let community = report.timescale
        && License::from_setting(
            client
                .query_one(rollup::LICENSE_QUERY, &[])
                .await
                .map_err(step(11))?
                .get::<_, Option<String>>(0)
                .as_deref(),
        ) == License::Community;
    if community {
        apply(client, table, 11, &rollup::timescale_rollups(table)).await?;
        report.applied.push(11);
        Ok(Rollups::ContinuousAggregates)
    } else {
        apply(client, table, 10, &rollup::plain_tables(table)).await?;
        report.applied.push(10);
        Ok(Rollups::Tables)
    }
}

/// Migration 3 where TimescaleDB is not available and the table is a plain one: time
/// partitions ([`partitions::partition_table`]). A failure leaves the table as it is (writes
/// work either way) and is retried at the next start.
async fn partition(
    client: &mut Client,
    table: &TableName,
    report: &mut MigrationReport,
) -> Result<(), StepError> {
    let row = client
        .query_one(
            &format!(
                "SELECT ({}), (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1))",
                schema::TIMESCALE_AVAILABLE
            ),
            &[&table.quoted()],
        )
        .await
        .map_err(step(3))?;
    let available: bool = row.get(0);
    let kind: Option<String> = row.get(1);
    if available || kind.as_deref() != Some("r") {
        return Ok(());
    }
    match apply(client, table, 3, &partitions::partition_table(table)).await {
        Ok(()) => report.applied.push(3),
        Err(e) => tracing::warn!(
            %table,
            error = %describe(&e.error),
            "the table could not be partitioned by time, so it stays one table (retention then deletes rows); migration 3 is retried at the next start"
        ),
    }
    Ok(())
}

/// Migration 20 ([`reader_role`](crate::reader_role)): optional — without CREATEROLE the store
/// works as before and says how to get the role.
async fn reader_role(client: &mut Client, table: &TableName, report: &mut MigrationReport) {
    match apply(client, table, 20, &reader_role::statements(table)).await {
        Ok(()) => report.applied.push(20),
        Err(e) => tracing::warn!(
            %table,
            error = %describe(&e.error),
            "the read-only role {} could not be created (dashboards need it); grant the store's user CREATEROLE, or run the statements of migration 20 (docs/query-api.md) as a superuser; retried at the next start",
            reader_role::READER_ROLE
        ),
    }
}

/// Migration 2: the extension, then the edition's statements ([`schema::timescale`]).
async fn apply_timescale(client: &mut Client, table: &TableName) -> Result<(), StepError> {
    let tx = client.transaction().await.map_err(step(2))?;
    tx.batch_execute(schema::CREATE_TIMESCALE)
        .await
        .map_err(step(2))?;
    let license: Option<String> = tx
        .query_one(rollup::LICENSE_QUERY, &[])
        .await
        .map_err(step(2))?
        .get(0);
    for sql in schema::timescale(table, License::from_setting(license.as_deref())) {
        tx.batch_execute(&sql).await.map_err(step(2))?;
    }
    record(&tx, table, 2).await?;
    tx.commit().await.map_err(step(2))?;
    tracing::info!(%table, version = 2, license, "applied the TimescaleDB migration");
    Ok(())
}

async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    table: &TableName,
    version: i32,
) -> Result<(), StepError> {
    let name = name_of(version);
    tx.execute(
        &format!(
            "INSERT INTO {} (target_table, version, name) VALUES ($1, $2, $3)",
            table.sibling(MIGRATIONS_TABLE)
        ),
        &[&table.dotted(), &version, &name],
    )
    .await
    .map_err(step(version))?;
    Ok(())
}

/// Applies one migration and records it, in one transaction.
async fn apply(
    client: &mut Client,
    table: &TableName,
    version: i32,
    statements: &[String],
) -> Result<(), StepError> {
    let tx = client.transaction().await.map_err(step(version))?;
    for sql in statements {
        tx.batch_execute(sql).await.map_err(step(version))?;
    }
    record(&tx, table, version).await?;
    tx.commit().await.map_err(step(version))?;
    tracing::info!(%table, version, name = name_of(version), "applied a schema migration");
    Ok(())
}

async fn exists(client: &Client, sql: &str, name: &str) -> Result<bool, StepError> {
    Ok(client
        .query_one(sql, &[&name])
        .await
        .map_err(step(0))?
        .get(0))
}

fn quote(ident: &str) -> String {
    format!("\"{ident}\"")
}
