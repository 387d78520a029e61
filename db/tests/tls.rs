//! PostgreSQL over TLS, against a real PostgreSQL that accepts only TLS connections (`ssl=on`,
//! `hostssl` in pg_hba.conf) with a CA and server certificate made for the test: the settings
//! of the connection string (`sslmode`, `sslrootcert`) decide what is checked, a session that
//! opens is encrypted (`pg_stat_ssl`), and every refusal says what to fix.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use quotestream_db::{PostgresConfig, connect_and_migrate};
use quotestream_testkit::{PostgresServer, TestCerts};

const TABLE: &str = "quotes.real_time";

fn tls_server() -> (TestCerts, PostgresServer) {
    let certs = TestCerts::generate().unwrap();
    let pg = PostgresServer::start_tls_only(&certs).unwrap();
    (certs, pg)
}

/// `postgres://postgres@<host>:<port>/<db>?<params>`
fn dsn(pg: &PostgresServer, db: &str, host: &str, params: &str) -> String {
    pg.create_database(db).unwrap();
    format!("postgres://postgres@{host}:{}/{db}?{params}", pg.port())
}

/// Connects and migrates with `dsn`; on success asserts the session is encrypted.
async fn open(dsn: &str) -> Result<(), String> {
    let config = PostgresConfig::new(Some(dsn.to_owned()), TABLE).map_err(|e| e.to_string())?;
    let mut session = connect_and_migrate(&config)
        .await
        .map_err(|e| e.to_string())?;
    let encrypted: bool = session
        .client()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the session with {dsn} is encrypted");
    Ok(())
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_encrypted() {
    let (certs, pg) = tls_server();
    let ca = certs.ca().display().to_string();
    for (db, host) in [("by_ip", "127.0.0.1"), ("by_name", "localhost")] {
        let dsn = dsn(
            &pg,
            db,
            host,
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        );
        open(&dsn).await.unwrap();
    }
    // The key=value form of libpq takes the same settings.
    pg.create_database("kv").unwrap();
    let kv = format!(
        "host=127.0.0.1 port={} user=postgres dbname=kv sslmode=verify-full sslrootcert='{ca}'",
        pg.port()
    );
    open(&kv).await.unwrap();
}

#[tokio::test]
async fn verify_full_with_another_ca_is_refused_naming_sslrootcert() {
    let (_certs, pg) = tls_server();
    let other = TestCerts::generate().unwrap();
    let dsn = dsn(
        &pg,
        "wrong_ca",
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", other.ca().display()),
    );
    let e = open(&dsn).await.unwrap_err();
    assert!(e.contains("cannot connect to PostgreSQL"), "{e}");
    assert!(e.contains("UnknownIssuer"), "the TLS reason is given: {e}");
    assert!(
        e.contains("not signed by a CA in sslrootcert"),
        "the fix is named: {e}"
    );
}

#[tokio::test]
async fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let (certs, pg) = tls_server();
    let ca = certs.ca().display().to_string();
    pg.create_database("names").unwrap();
    // Connect to 127.0.0.1 but expect the certificate to name db.example (it does not).
    let kv = |mode: &str| {
        format!(
            "host=db.example hostaddr=127.0.0.1 port={} user=postgres dbname=names sslmode={mode} sslrootcert={ca}",
            pg.port()
        )
    };
    let e = open(&kv("verify-full")).await.unwrap_err();
    assert!(e.contains("does not name the host"), "{e}");
    open(&kv("verify-ca")).await.unwrap();
}

#[tokio::test]
async fn require_encrypts_without_a_ca() {
    let (_certs, pg) = tls_server();
    let dsn = dsn(&pg, "required", "127.0.0.1", "sslmode=require");
    open(&dsn).await.unwrap();
}

#[tokio::test]
async fn plain_text_to_a_tls_only_server_is_refused_with_the_fix() {
    let (_certs, pg) = tls_server();
    let dsn = dsn(&pg, "plain", "127.0.0.1", "sslmode=disable");
    let e = open(&dsn).await.unwrap_err();
    assert!(e.contains("no encryption"), "the server's reason: {e}");
    assert!(
        e.contains("accepts only TLS connections") && e.contains("sslmode=verify-full"),
        "the fix: {e}"
    );
}
