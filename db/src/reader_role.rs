//! Migration 20 (the store's): `quotestream_reader`, a role that can only read the quotes
//! schema — the tables, views and rollups there now and those the store creates later (monthly
//! partitions) — for dashboards (the chart's Grafana PostgreSQL datasource) and analysts. It
//! cannot log in: a DBA gives a login its rights with
//! `CREATE ROLE grafana LOGIN PASSWORD '…' IN ROLE quotestream_reader`.
//!
//! Roles belong to the whole server and creating one needs CREATEROLE; a store user without it
//! keeps working (the migration is logged, not applied, and retried at the next start).

use crate::config::TableName;

/// The role's name (one per server, shared by every database and schema it is granted on).
pub const READER_ROLE: &str = "quotestream_reader";

/// The statements of migration 20.
pub fn statements(t: &TableName) -> Vec<String> {
    let schema = format!("\"{}\"", t.schema());
    vec![
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') \
             THEN CREATE ROLE {READER_ROLE} NOLOGIN; END IF; END $$"
        ),
        format!("GRANT USAGE ON SCHEMA {schema} TO {READER_ROLE}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {READER_ROLE}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {READER_ROLE}"
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_role_reads_the_schema_and_what_is_created_in_it_later() {
        let sql = statements(&TableName::parse("quotes.real_time").unwrap()).join(";\n");
        assert!(sql.contains("CREATE ROLE quotestream_reader NOLOGIN"));
        assert!(
            sql.contains(r#"GRANT SELECT ON ALL TABLES IN SCHEMA "quotes" TO quotestream_reader"#)
        );
        assert!(
            sql.contains(r#"ALTER DEFAULT PRIVILEGES IN SCHEMA "quotes" GRANT SELECT ON TABLES"#)
        );
        assert!(
            !sql.contains("INSERT") && !sql.contains("UPDATE") && !sql.contains("ALL PRIVILEGES")
        );
    }
}
