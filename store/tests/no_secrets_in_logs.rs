//! No secret in the store's output at any log level: `quotestream-store` runs at
//! `RUST_LOG=trace` with the password in `DATABASE_URL` and a read-API token (serving, answering /health, /ready,
//! /metrics and a batch, then stopping; and `migrate`), and with malformed values and an
//! unreachable server; its whole output and those bodies are searched for every secret (the shared check of `quotestream_testkit::secrets`,
//! as in the worker's test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::process::{Command, Stdio};

use quotestream_testkit::{PostgresServer, http_get, secrets};
use support::{Store, batch, client, database, post, quote, wait_exit};

const PG_PW: &str = "StorePgPw-s3cr3t-q1";
/// The read API's bearer token (`--api-token`).
const API_TOKEN: &str = "StoreToken-s3cr3t-z0";
const TRACE: [(&str, &str); 2] = [("RUST_LOG", "trace"), ("NO_COLOR", "1")];

/// `dsn` with `PG_PW` as the password (the test server trusts loopback: any password works,
/// so the secret travels every code path a real one does).
fn with_password(dsn: &str) -> String {
    dsn.replace("postgres@", &format!("postgres:{PG_PW}@"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_and_migrating_at_trace_never_print_the_password() {
    let pg = PostgresServer::start().unwrap();
    let dsn = with_password(&database(&pg, "secrets"));
    let env = [
        TRACE[0],
        TRACE[1],
        ("QUOTESTREAM_STORE_API_TOKEN", API_TOKEN),
    ];
    let mut store = Store::start_with_env(&dsn, &[], &env);
    let (status, _, body) = post(
        &client(),
        &store,
        batch(vec![quote("AAPL", 1_768_919_415_123, 185.5, 100)]),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The read API with its token (a request logged at trace must not carry it).
    let read = client()
        .get(format!("{}/v1/symbols", store.url()))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200, "the token is accepted");
    // What the store serves about itself says where the database is, never the password.
    for path in ["/health", "/ready", "/metrics"] {
        let (_, body) = http_get(store.port, path).unwrap();
        secrets::assert_no_secret(&body, [PG_PW, API_TOKEN]);
    }
    let exit = store.terminate();
    assert!(exit.success(), "{exit}; log:\n{}", store.log_text());
    let log = store.log_text();
    assert!(log.contains("TRACE"), "trace logging is on");
    secrets::assert_no_secret(&log, [PG_PW, API_TOKEN]);

    let out = run_store(&["migrate"], &dsn);
    assert!(out.0, "migrate works with this URL:\n{}", out.1);
    secrets::assert_no_secret(&out.1, [PG_PW]);
}

/// Runs the store binary with `args` and `DATABASE_URL=dsn` at trace; (success, all output).
/// The output goes to a file: at trace it can be more than a pipe holds.
fn run_store(args: &[&str], dsn: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("output");
    let out = std::fs::File::create(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quotestream-store"))
        .args(args)
        .env("DATABASE_URL", dsn)
        .envs(TRACE)
        .env("QUOTESTREAM_STORE_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, support::WAIT);
    (
        status.success(),
        std::fs::read_to_string(&path).unwrap_or_default(),
    )
}

#[test]
fn a_malformed_or_unreachable_database_url_is_refused_without_echoing_secrets() {
    let cases = [
        "NotAUrlStore-s3cr3t-r2",
        "NotAUrlStore-s3cr3t-s3 password=StorePw-s3cr3t-t4",
        "postgres://u:StorePw-s3cr3t-u5@host:notaport/db",
        "postgres://u:StorePw-s3cr3t-v6@127.0.0.1:1/db?connect_timeout=2",
        "host=127.0.0.1 port=1 user=u password='StorePw s3cr3t-w7' connect_timeout=2",
        // The CA's path is named in the error (it is not a secret); the password is not.
        "postgres://u:StorePw-s3cr3t-x8@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ];
    for value in cases {
        for args in [&["serve"][..], &["migrate"][..]] {
            let (ok, output) = run_store(args, value);
            assert!(
                !ok,
                "{args:?} with DATABASE_URL={value} is refused:\n{output}"
            );
            assert!(
                output.contains("DATABASE_URL") || output.contains("PostgreSQL"),
                "the error names the setting or the server:\n{output}"
            );
            secrets::assert_no_secret(&output, secrets::secret_parts(value));
        }
    }
}
