//! What the database looks like from the writer's side, for health checks (seed 002: database,
//! timescaledb, hypertable): is TimescaleDB available or installed, what kind of table holds
//! the quotes, which migrations are applied and which still apply to this server.

use std::fmt;

use tokio_postgres::Client;

use crate::config::TableName;
use crate::migrations::MIGRATIONS;
use crate::schema::MIGRATIONS_TABLE;

/// How the quotes table is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A TimescaleDB hypertable.
    Hypertable,
    /// A PostgreSQL table partitioned by time (declarative partitioning).
    Partitioned,
    /// An ordinary table.
    Plain,
    /// The table does not exist (migrations not applied).
    Missing,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hypertable => "hypertable",
            Self::Partitioned => "partitioned",
            Self::Plain => "plain",
            Self::Missing => "missing",
        }
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The schema as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The server can install TimescaleDB (`pg_available_extensions`).
    pub timescale_available: bool,
    /// The installed TimescaleDB version, if the extension is created in this database.
    pub timescale_version: Option<String>,
    pub kind: TableKind,
    /// Versions recorded for the table.
    pub applied: Vec<i32>,
    /// Versions that apply to this server and are not recorded (the TimescaleDB migration
    /// applies only where the extension is available).
    pub pending: Vec<i32>,
}

impl SchemaStatus {
    /// Every migration that applies here is applied.
    pub fn current(&self) -> bool {
        self.pending.is_empty() && self.kind != TableKind::Missing
    }
}

/// Reads the status of `table` (read-only queries; safe to run on every health check).
/// `extra`: versions beyond [`MIGRATIONS`] that must be applied too (the store's).
pub async fn schema_status(
    client: &Client,
    table: &TableName,
    extra: &[i32],
) -> Result<SchemaStatus, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), \
             (SELECT extversion::text FROM pg_extension WHERE extname = 'timescaledb'), \
             (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)), \
             to_regclass($2) IS NOT NULL",
            &[&table.quoted(), &table.sibling(MIGRATIONS_TABLE)],
        )
        .await?;
    let timescale_available: bool = row.get(0);
    let timescale_version: Option<String> = row.get(1);
    let relkind: Option<String> = row.get(2);
    let has_versions: bool = row.get(3);
    let mut kind = match relkind.as_deref() {
        None => TableKind::Missing,
        Some("p") => TableKind::Partitioned,
        Some(_) => TableKind::Plain,
    };
    if kind == TableKind::Plain && timescale_version.is_some() {
        let hyper: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
                 WHERE hypertable_schema = $1 AND hypertable_name = $2)",
                &[&table.schema(), &table.table()],
            )
            .await?
            .get(0);
        if hyper {
            kind = TableKind::Hypertable;
        }
    }
    let mut applied: Vec<i32> = if has_versions {
        client
            .query(
                &format!(
                    "SELECT version FROM {} WHERE target_table = $1 ORDER BY version",
                    table.sibling(MIGRATIONS_TABLE)
                ),
                &[&table.dotted()],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    applied.sort_unstable();
    let applies = |v: i32| match v {
        2 => timescale_available,
        _ => true,
    };
    let pending = MIGRATIONS
        .iter()
        .map(|(v, _)| *v)
        .chain(extra.iter().copied())
        .filter(|v| applies(*v) && !applied.contains(v))
        .collect();
    Ok(SchemaStatus {
        timescale_available,
        timescale_version,
        kind,
        applied,
        pending,
    })
}
