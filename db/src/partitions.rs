//! Time partitions on plain PostgreSQL (where TimescaleDB's chunks and retention policy are
//! not available): migration 3 turns the quotes table into a table partitioned by range of
//! `timestamp`, the existing table becoming its DEFAULT partition (no data is copied, the
//! change is instant). [`maintain`] — run by the store at startup and every hour — creates
//! monthly partitions `<table>_pYYYYMM` for this month and the next (moving any rows the
//! default partition holds for that month), drops whole partitions older than the retention
//! (2 years, seed 002) and deletes expired rows from the default partition.

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use tokio_postgres::Client;

use crate::config::TableName;

/// How long quotes are kept (seed 002).
pub const RETENTION_MONTHS: i32 = 24;

/// Migration 3: the statements turning a plain table into a partitioned one.
pub fn partition_table(t: &TableName) -> Vec<String> {
    let default = format!("{}_default", t.table());
    vec![
        format!("ALTER TABLE {} RENAME TO \"{default}\"", t.quoted()),
        format!(
            "ALTER INDEX {} RENAME TO \"{default}_pkey\"",
            t.sibling(&format!("{}_pkey", t.table()))
        ),
        format!(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS, \
             PRIMARY KEY (symbol, \"timestamp\")) PARTITION BY RANGE (\"timestamp\")",
            t.quoted(),
            t.sibling(&default)
        ),
        format!(
            "ALTER TABLE {} ATTACH PARTITION {} DEFAULT",
            t.quoted(),
            t.sibling(&default)
        ),
    ]
}

/// `<table>_pYYYYMM`.
pub fn partition_name(t: &TableName, month: Date) -> String {
    format!("{}_p{:04}{:02}", t.table(), month.year(), month.month())
}

/// The first day of the month of `d`.
fn month_of(d: Date) -> Date {
    d.first_of_month()
}

/// Statements creating the partition of `month` (first day), moving rows the default
/// partition holds for it; one transaction.
pub fn create_partition(t: &TableName, month: Date) -> Vec<String> {
    let next = month.saturating_add(1.month());
    let name = t.sibling(&partition_name(t, month));
    let default = t.sibling(&format!("{}_default", t.table()));
    let range =
        format!("\"timestamp\" >= '{month}T00:00:00Z' AND \"timestamp\" < '{next}T00:00:00Z'");
    vec![
        format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", t.quoted()),
        format!(
            "CREATE TABLE {name} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
            t.quoted()
        ),
        format!("INSERT INTO {name} SELECT * FROM {default} WHERE {range}"),
        format!("DELETE FROM {default} WHERE {range}"),
        format!(
            "ALTER TABLE {} ATTACH PARTITION {name} FOR VALUES FROM ('{month}T00:00:00Z') TO ('{next}T00:00:00Z')",
            t.quoted()
        ),
    ]
}

/// What [`maintain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// Expired rows deleted from the default partition.
    pub expired_default_rows: u64,
}

/// Creates this and next month's partitions and applies the retention, as of `now`. Does
/// nothing unless the table is partitioned.
pub async fn maintain(
    client: &mut Client,
    t: &TableName,
    now: Timestamp,
) -> Result<Maintenance, tokio_postgres::Error> {
    let mut done = Maintenance::default();
    let kind: Option<String> = client
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
            &[&t.quoted()],
        )
        .await?
        .get(0);
    if kind.as_deref() != Some("p") {
        return Ok(done);
    }
    let children: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1)",
            &[&t.quoted()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let this_month = month_of(today);
    for month in [this_month, this_month.saturating_add(1.month())] {
        let name = partition_name(t, month);
        if children.contains(&name) {
            continue;
        }
        let tx = client.transaction().await?;
        for sql in create_partition(t, month) {
            tx.batch_execute(&sql).await?;
        }
        tx.commit().await?;
        tracing::info!(table = %t, partition = name, "created a monthly partition");
        done.created.push(name);
    }
    // Partitions whose whole month ended before the retention horizon.
    let horizon = this_month.saturating_sub(RETENTION_MONTHS.months());
    let prefix = format!("{}_p", t.table());
    for child in &children {
        let Some(digits) = child.strip_prefix(&prefix) else {
            continue;
        };
        let (Some(y), Some(m)) = (
            digits.get(..4).and_then(|y| y.parse::<i16>().ok()),
            digits.get(4..6).and_then(|m| m.parse::<i8>().ok()),
        ) else {
            continue;
        };
        let Ok(month) = Date::new(y, m, 1) else {
            continue;
        };
        if month.saturating_add(1.month()) <= horizon {
            client
                .batch_execute(&format!("DROP TABLE {}", t.sibling(child)))
                .await?;
            tracing::info!(table = %t, partition = %child, "dropped an expired partition (retention 2 years)");
            done.dropped.push(child.clone());
        }
    }
    done.expired_default_rows = client
        .execute(
            &format!(
                "DELETE FROM {} WHERE \"timestamp\" < '{horizon}T00:00:00Z'",
                t.sibling(&format!("{}_default", t.table()))
            ),
            &[],
        )
        .await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_existing_table_becomes_the_default_partition() {
        assert_eq!(
            partition_table(&TableName::example()),
            [
                r#"ALTER TABLE "quotes"."real_time" RENAME TO "real_time_default""#,
                r#"ALTER INDEX "quotes"."real_time_pkey" RENAME TO "real_time_default_pkey""#,
                r#"CREATE TABLE "quotes"."real_time" (LIKE "quotes"."real_time_default" INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (symbol, "timestamp")) PARTITION BY RANGE ("timestamp")"#,
                r#"ALTER TABLE "quotes"."real_time" ATTACH PARTITION "quotes"."real_time_default" DEFAULT"#,
            ]
        );
    }

    #[test]
    fn a_month_partition_takes_its_rows_from_the_default() {
        let sql = create_partition(&TableName::example(), Date::new(2026, 12, 1).unwrap());
        assert_eq!(
            sql[1],
            r#"CREATE TABLE "quotes"."real_time_p202612" (LIKE "quotes"."real_time" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"#
        );
        assert!(
            sql[2].ends_with(
                r#""timestamp" >= '2026-12-01T00:00:00Z' AND "timestamp" < '2027-01-01T00:00:00Z'"#
            ),
            "{}",
            sql[2]
        );
        assert_eq!(
            sql[4],
            r#"ALTER TABLE "quotes"."real_time" ATTACH PARTITION "quotes"."real_time_p202612" FOR VALUES FROM ('2026-12-01T00:00:00Z') TO ('2027-01-01T00:00:00Z')"#
        );
    }
}
