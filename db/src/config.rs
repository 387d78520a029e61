//! Where to connect (`DATABASE_URL`, filled by the worker's Deployment from
//! `spec.sinks.postgres.dsnSecretRef`, by the store's from its Secret), which table, and how
//! the worker's sink batches rows.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use quotestream_api::contract::{self, env::DATABASE_URL};
use quotestream_api::crd::PostgresSink;

use crate::tls::{TlsSettings, split_tls_params};

/// Rows per write (one COPY + INSERT … ON CONFLICT transaction). Measured on this machine kind
/// (reference/limits.md), 10k-row batches reach ~95k rows/s and 1k-row batches ~67k; 5000
/// keeps most of the gain with a smaller batch in hand.
pub const DEFAULT_BATCH_ROWS: usize = 5000;
/// Longest wait to fill a batch: bounds how stale the table is when quotes trickle in.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(200);
/// Longest wait for a TCP connection to the server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one write; a server that stops answering (a partition) is treated like a
/// broken connection: the session is dropped and the batch retried on a new one.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Identifiers PostgreSQL accepts without surprises (lower case, at most 63 bytes each).
const IDENT_RULE: &str = "^[a-z_][a-z0-9_]{0,62}\\.[a-z_][a-z0-9_]{0,62}$";

/// A schema-qualified table name, validated so that it can be interpolated into SQL (always
/// through [`TableName::quoted`], which double-quotes both parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: String,
    table: String,
}

#[cfg(test)]
impl TableName {
    /// The default table (`quotes.real_time`), as the unit tests spell their expected SQL.
    #[allow(clippy::unwrap_used)]
    pub(crate) fn example() -> Self {
        Self::parse(quotestream_api::crd::DEFAULT_TABLE).unwrap()
    }
}

impl TableName {
    /// Parses `schema.table` against `^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$`.
    pub fn parse(name: &str) -> Result<Self, PostgresConfigError> {
        let bad = || PostgresConfigError::Table {
            value: name.to_owned(),
        };
        let (schema, table) = name.split_once('.').ok_or_else(bad)?;
        if !is_identifier(schema) || !is_identifier(table) {
            return Err(bad());
        }
        Ok(Self {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// `"schema"."table"`, ready for SQL.
    pub fn quoted(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    /// `"schema"."name"`: another object in the table's schema (the migrations' version table).
    pub fn sibling(&self, name: &str) -> String {
        format!("\"{}\".\"{name}\"", self.schema)
    }

    /// `schema.table` unquoted, as a SQL string literal or a regclass argument needs it.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The sink's settings.
#[derive(Clone)]
pub struct PostgresConfig {
    /// Connection string (postgres://user:password@host:5432/db or key=value form). Never
    /// logged: it carries the password. Private so it cannot drift from `pg`.
    dsn: String,
    pub table: TableName,
    /// Rows per write transaction.
    pub batch_rows: usize,
    /// Longest wait to fill a batch before writing what is there.
    pub linger: Duration,
    /// Longest wait for one write transaction before the session is dropped and the batch retried.
    pub write_timeout: Duration,
    /// The store's schema: rollups (bars, latest, daily) kept at ingest and time partitions
    /// on plain PostgreSQL. The store sets it; the worker's sink writes the raw table only.
    pub rollups: bool,
    /// The DSN, parsed (connect timeout and application name filled in when unset).
    pub(crate) pg: tokio_postgres::Config,
    /// `sslmode` and `sslrootcert` of the DSN ([`crate::tls`]).
    pub tls: TlsSettings,
    /// The TLS side of every connection, built once (the root certificates read at start).
    pub(crate) connector: tokio_postgres_rustls::MakeRustlsConnect,
}

impl fmt::Debug for PostgresConfig {
    // By hand so that the password in the DSN never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("server", &self.server())
            .field("tls", &self.tls)
            .field("table", &self.table)
            .field("batch_rows", &self.batch_rows)
            .field("linger", &self.linger)
            .field("write_timeout", &self.write_timeout)
            .field("rollups", &self.rollups)
            .finish()
    }
}

impl PostgresConfig {
    /// Builds the settings from `spec.sinks.postgres` and the connection string the Deployment
    /// put in `DATABASE_URL` (the spec has no DSN of its own: [`contract::env_or_spec`] with
    /// no spec value).
    pub fn from_spec(
        spec: &PostgresSink,
        env: &HashMap<String, String>,
    ) -> Result<Self, PostgresConfigError> {
        let dsn = contract::env_or_spec(env, DATABASE_URL, None).map(|(dsn, _)| dsn.to_owned());
        Self::new(dsn, &spec.table)
    }

    /// Settings with the defaults for everything but the DSN and the table.
    pub fn new(dsn: Option<String>, table: &str) -> Result<Self, PostgresConfigError> {
        let dsn = dsn
            .filter(|d| !d.trim().is_empty())
            .ok_or(PostgresConfigError::MissingDsn)?;
        // tokio-postgres knows neither verify-ca/verify-full nor sslrootcert: they are taken
        // out here and applied by rustls.
        let (rest, tls) = split_tls_params(&dsn)?;
        let mut pg = tokio_postgres::Config::from_str(&rest).map_err(|e| {
            // The parser's message names the bad part; the DSN itself is not echoed (password).
            PostgresConfigError::InvalidDsn {
                reason: e.to_string(),
            }
        })?;
        if pg.get_hosts().is_empty() {
            return Err(PostgresConfigError::InvalidDsn {
                reason: "no host".into(),
            });
        }
        pg.ssl_mode(tls.mode.negotiation());
        let connector = tls.connector()?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("quotestream-worker");
        }
        Ok(Self {
            dsn,
            table: TableName::parse(table)?,
            batch_rows: DEFAULT_BATCH_ROWS,
            linger: DEFAULT_LINGER,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            rollups: false,
            pg,
            tls,
            connector,
        })
    }

    /// Names the connection in `pg_stat_activity` (`quotestream-worker` unless the DSN says).
    pub fn with_application_name(mut self, name: &str) -> Self {
        if !self.dsn.contains("application_name") {
            self.pg.application_name(name);
        }
        self
    }

    /// The parsed connection settings and the TLS connector, for a caller that opens
    /// connections of its own (the store's read pool) the way the sessions do.
    pub fn connect_parts(
        &self,
    ) -> (
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    ) {
        (self.pg.clone(), self.connector.clone())
    }

    /// The connection string as given (it carries the password: never log it).
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// `user@host:port/db` for logs and error messages (no password).
    pub fn server(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.pg.get_user().unwrap_or("?"),
            self.pg
                .get_dbname()
                .or(self.pg.get_user())
                .unwrap_or("postgres")
        )
    }
}

/// A setting of the PostgreSQL sink is wrong; the message says which and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostgresConfigError {
    #[error(
        "{DATABASE_URL} is not set: the Deployment sets it from spec.sinks.postgres.dsnSecretRef; check that the Secret and key exist and hold a connection string (postgres://user:password@host:5432/db)"
    )]
    MissingDsn,
    #[error(
        "{DATABASE_URL} is not a valid PostgreSQL connection string ({reason}); expected postgres://user:password@host:5432/db in the Secret of spec.sinks.postgres.dsnSecretRef"
    )]
    InvalidDsn { reason: String },
    #[error(
        "{DATABASE_URL}: {problem} (TLS settings are libpq's: sslmode=disable|prefer|require|verify-ca|verify-full, sslrootcert=/path/to/ca.pem or system)"
    )]
    Tls { problem: String },
    #[error(
        "{DATABASE_URL}: sslrootcert {path}: {problem}; mount the CA certificate (PEM) at that path, e.g. from a Secret"
    )]
    RootCert { path: String, problem: String },
    #[error(
        "spec.sinks.postgres.table {value:?} must be schema.table in lower case ({IDENT_RULE}), e.g. quotes.real_time"
    )]
    Table { value: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(table: &str) -> PostgresSink {
        serde_json::from_value(serde_json::json!({
            "dsnSecretRef": {"name": "pg", "key": "dsn"},
            "table": table,
        }))
        .unwrap()
    }

    const DSN: &str = "postgres://quotes:s3cret@db.data:5432/market";

    fn env(dsn: &str) -> HashMap<String, String> {
        HashMap::from([(DATABASE_URL.to_owned(), dsn.to_owned())])
    }

    #[test]
    fn defaults_and_redacted_debug() {
        let c = PostgresConfig::from_spec(&spec("quotes.real_time"), &env(DSN)).unwrap();
        assert_eq!(c.batch_rows, 5000);
        assert_eq!(c.linger, Duration::from_millis(200));
        assert_eq!(c.table.quoted(), "\"quotes\".\"real_time\"");
        assert_eq!(c.server(), "quotes@db.data:5432/market");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn the_crd_default_table_is_accepted() {
        let s: PostgresSink = serde_json::from_value(serde_json::json!({
            "dsnSecretRef": {"name": "pg", "key": "dsn"},
        }))
        .unwrap();
        let c = PostgresConfig::from_spec(&s, &env(DSN)).unwrap();
        assert_eq!(c.table.to_string(), "quotes.real_time");
    }

    #[test]
    fn a_missing_dsn_names_the_env_var_and_the_secret() {
        for env in [HashMap::new(), env(""), env("  ")] {
            let e = PostgresConfig::from_spec(&spec("quotes.real_time"), &env).unwrap_err();
            assert_eq!(e, PostgresConfigError::MissingDsn);
            let msg = e.to_string();
            assert!(msg.starts_with("DATABASE_URL is not set"), "{msg}");
            assert!(msg.contains("spec.sinks.postgres.dsnSecretRef"), "{msg}");
        }
    }

    #[test]
    fn a_bad_dsn_is_refused_without_echoing_it() {
        let e = PostgresConfig::new(Some("postgres://u:pw@host:notaport/db".into()), "a.b")
            .unwrap_err();
        assert!(matches!(e, PostgresConfigError::InvalidDsn { .. }), "{e}");
        assert!(!e.to_string().contains("pw@"), "{e}");
        let c = PostgresConfig::new(Some("postgres://u@host/db?sslmode=require".into()), "a.b")
            .unwrap();
        assert_eq!(c.tls.mode, crate::tls::TlsMode::Require);
        let e = PostgresConfig::new(
            Some("postgres://u@host/db?sslmode=verify-full".into()),
            "a.b",
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs sslrootcert"), "{e}");
    }

    #[test]
    fn table_names_that_could_inject_sql_are_refused() {
        for bad in [
            "real_time",
            "Quotes.real_time",
            "quotes.real-time",
            "quotes.\"x\"; drop table y",
            "a.b.c",
            "1a.b",
            ".b",
            "a.",
            &format!("a.{}", "x".repeat(64)),
        ] {
            let e = TableName::parse(bad).unwrap_err();
            assert!(e.to_string().contains("spec.sinks.postgres.table"), "{e}");
        }
        let ok = TableName::parse(&format!("_s.{}", "x".repeat(63))).unwrap();
        assert_eq!(ok.schema(), "_s");
        assert_eq!(ok.sibling("m"), "\"_s\".\"m\"");
    }
}
