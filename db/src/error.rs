//! What a PostgreSQL error means for a writer: retry (the server is down, restarting, busy),
//! reject (the rows themselves are bad) or stop (a password, a grant, a table, a database that
//! only a person can fix), and how to say it in a log line an operator can act on.

use tokio_postgres::error::{DbError, SqlState};

/// What to do with a batch after a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The server or the connection failed; the same rows will go through later.
    Retry,
    /// The server refused the rows (SQLSTATE class 22 data exception or 23 integrity
    /// constraint): writing them again cannot succeed.
    Reject,
    /// No write can succeed until someone changes the settings or the server ([`is_permanent`]):
    /// retrying would only hold the batch (and everything behind it) forever.
    Permanent,
}

/// Sorts an error: rows refused, a permanent condition ([`is_permanent`]), or else retried
/// (connection refused or reset, 57P01 admin shutdown, 40001 serialization, class 53
/// insufficient resources, a lock, a timeout).
pub fn classify(e: &tokio_postgres::Error) -> Verdict {
    match e.code().map(SqlState::code) {
        Some(code) if code.starts_with("22") || code.starts_with("23") => Verdict::Reject,
        Some(code) if is_permanent(code) => Verdict::Permanent,
        _ => Verdict::Retry,
    }
}

/// SQLSTATEs that only a person can clear: class 28 (invalid authorization: a wrong password,
/// no pg_hba.conf entry), 3D000 (no such database), 42501 (privilege revoked), 42P01 (the
/// table was dropped), 42703 (a column was dropped) and 3F000 (no such schema).
pub fn is_permanent(sqlstate: &str) -> bool {
    sqlstate.starts_with("28")
        || matches!(sqlstate, "3D000" | "42501" | "42P01" | "42703" | "3F000")
}

/// `SQLSTATE message (detail; hint)` for a server error, the error and its causes otherwise
/// (tokio-postgres prints only "db error" or "error connecting to server" by itself).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return describe_db(db);
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn describe_db(db: &DbError) -> String {
    let mut text = format!("{} {}", db.code().code(), db.message());
    let extra: Vec<&str> = [db.detail(), db.hint()].into_iter().flatten().collect();
    if !extra.is_empty() {
        text.push_str(&format!(" ({})", extra.join("; ")));
    }
    text
}

/// What to do about an error met while connecting or migrating.
pub fn fix_for(e: &tokio_postgres::Error) -> &'static str {
    if let Some(tls) = tls_cause(e) {
        return match tls {
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            ) => {
                "the server's certificate does not name the host of DATABASE_URL: connect by a name the certificate lists, or use sslmode=verify-ca to check the CA only"
            }
            rustls::Error::InvalidCertificate(_) => {
                "the server's certificate is not signed by a CA in sslrootcert (or has expired): point sslrootcert in DATABASE_URL at the CA certificate (PEM) that signed it"
            }
            _ => {
                "the TLS handshake failed: check that the server has ssl=on and a valid certificate, and the sslmode in DATABASE_URL"
            }
        };
    }
    if e.as_db_error()
        .is_some_and(|db| db.code().code() == "28000" && db.message().contains("no encryption"))
    {
        return "the server accepts only TLS connections (hostssl in pg_hba.conf): set sslmode=verify-full with sslrootcert=/path/to/ca.pem (or sslmode=require) in DATABASE_URL";
    }
    let Some(code) = e.code() else {
        return "check the host and port in DATABASE_URL (spec.sinks.postgres.dsnSecretRef) and that the server is up and reachable from the pod (Service, NetworkPolicy)";
    };
    match code.code() {
        "28P01" | "28000" => {
            "check the user and password in the Secret of spec.sinks.postgres.dsnSecretRef and the server's pg_hba.conf"
        }
        "3D000" => "create the database or fix its name in DATABASE_URL",
        "42501" => {
            "grant the user CREATE on the database (the worker creates the schema and table), or create them beforehand and grant USAGE, CREATE on the schema and SELECT, INSERT on the table"
        }
        "42P01" | "42703" | "3F000" => {
            "the table (or its schema, or a column) is gone: restore it, or set spec.sinks.postgres.table to a new table, which the worker creates at start"
        }
        "53300" => "the server is out of connections: raise max_connections or use fewer shards",
        "55P03" => {
            "another worker holds the migration lock; if none is running, look for a stuck session in pg_locks"
        }
        "57P03" => "the server is starting up; the worker will be restarted and try again",
        _ => "see the PostgreSQL server log for the statement that failed",
    }
}

/// The rustls error under a failed connection, if TLS is what failed (tokio-rustls wraps it in
/// an I/O error).
fn tls_cause(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        cause = c.source();
    }
    None
}

/// The sink cannot start: connecting, migrating or checking the table failed (or, for the
/// history writer, a statement failed).
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("cannot connect to PostgreSQL {server}: {reason}; {fix}")]
    Connect {
        server: String,
        reason: String,
        fix: &'static str,
        /// The server's SQLSTATE, when the server answered (five ASCII characters, kept inline:
        /// the error travels in `Result`s and stays small).
        sqlstate: Option<[u8; 5]>,
        /// Retrying cannot help ([`is_permanent_error`]).
        permanent: bool,
    },
    #[error("PostgreSQL {server}: migrating {table} failed at {step}: {reason}; {fix}")]
    Migration {
        server: String,
        table: String,
        /// `migration 1 (create table)`, or the lock and version table before any migration.
        step: String,
        reason: String,
        fix: &'static str,
        /// The server's SQLSTATE, when the server answered (five ASCII characters, kept inline:
        /// the error travels in `Result`s and stays small).
        sqlstate: Option<[u8; 5]>,
        /// Retrying cannot help ([`is_permanent_error`]).
        permanent: bool,
    },
    #[error(
        "PostgreSQL {server}: table {table} cannot take quotes: {problem}; it was not created by quotestream's migrations: rename it or set spec.sinks.postgres.table to another table"
    )]
    Table {
        server: String,
        table: String,
        problem: String,
    },
    #[error("PostgreSQL {server}: {what} failed: {reason}; {fix}")]
    Query {
        server: String,
        what: &'static str,
        reason: String,
        fix: &'static str,
    },
    #[error(
        "PostgreSQL {server}: no answer within {seconds}s while {what}; check that the server is healthy"
    )]
    Timeout {
        server: String,
        what: &'static str,
        seconds: u64,
    },
}

impl PostgresError {
    /// A failed statement of `what` on `server`.
    pub fn query(
        server: &str,
        what: &'static str,
    ) -> impl Fn(tokio_postgres::Error) -> Self + use<> {
        let server = server.to_owned();
        move |e| Self::Query {
            server: server.clone(),
            what,
            reason: describe(&e),
            fix: fix_for(&e),
        }
    }

    /// Built from a failed connect or statement `e` while opening a session.
    pub fn connect(server: String, e: &tokio_postgres::Error) -> Self {
        Self::Connect {
            server,
            reason: describe(e),
            fix: fix_for(e),
            sqlstate: sqlstate_of(e),
            permanent: is_permanent_error(e),
        }
    }

    /// Whether retrying cannot help: a permanent SQLSTATE ([`is_permanent`]), a server
    /// certificate the settings reject, or a table that cannot take quotes. A timeout, a
    /// refused connection or a history statement is not.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Connect { permanent, .. } | Self::Migration { permanent, .. } => *permanent,
            Self::Table { .. } => true,
            Self::Query { .. } | Self::Timeout { .. } => false,
        }
    }

    /// The server's SQLSTATE, when the server answered.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Connect { sqlstate, .. } | Self::Migration { sqlstate, .. } => sqlstate
                .as_ref()
                .and_then(|code| std::str::from_utf8(code).ok()),
            Self::Table { .. } | Self::Query { .. } | Self::Timeout { .. } => None,
        }
    }
}

/// The error's SQLSTATE as [`PostgresError`] keeps it.
pub fn sqlstate_of(e: &tokio_postgres::Error) -> Option<[u8; 5]> {
    e.code()?.code().as_bytes().try_into().ok()
}

/// [`is_permanent`] for the error's SQLSTATE, or a certificate the TLS settings reject (a person
/// must change `sslrootcert` or the server's certificate; the next try would fail the same way).
pub fn is_permanent_error(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => is_permanent(code.code()),
        None => matches!(tls_cause(e), Some(rustls::Error::InvalidCertificate(_))),
    }
}

#[cfg(test)]
mod permanence_tests {
    use super::is_permanent;

    #[test]
    fn settings_problems_are_permanent_and_outages_are_not() {
        for code in [
            "28P01", "28000", "3D000", "42501", "42P01", "42703", "3F000",
        ] {
            assert!(is_permanent(code), "{code}");
        }
        // admin shutdown, serialization failure, too many connections, out of memory, lock
        // not available, starting up, connection failure
        for code in [
            "57P01", "40001", "53300", "53200", "55P03", "57P03", "08006", "XX000",
        ] {
            assert!(!is_permanent(code), "{code}");
        }
    }
}
