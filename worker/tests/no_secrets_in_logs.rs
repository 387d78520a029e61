//! No secret in any log line or error, at any log level: the worker binary (`quotestream-worker
//! local`) runs at `RUST_LOG=trace` with credentials in `REDIS_URL` (a password-protected
//! Redis), `STORAGE_URL` (userinfo, a storage receiver), `DATABASE_URL` (PostgreSQL) and the
//! vendor API keys, and with values that are not URLs at all; its whole output is searched for
//! every secret.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::{Command, Stdio};

use quotestream_testkit::{PostgresServer, RedisServer, StorageReceiver, secrets};

const REDIS_PW: &str = "RedisPw-s3cr3t-a1";
const STORAGE_PW: &str = "StoragePw-s3cr3t-b2";
const STORAGE_USER: &str = "StorageUser-s3cr3t-c3";
const PG_PW: &str = "PgPw-s3cr3t-d4";
const API_KEYS: [(&str, &str); 3] = [
    ("APCA_API_KEY_ID", "ApcaKey-s3cr3t-e5"),
    ("APCA_API_SECRET_KEY", "ApcaSecret-s3cr3t-f6"),
    ("POLYGON_API_KEY", "PolygonKey-s3cr3t-g7"),
];

/// Runs `quotestream-worker local` for a moment at trace level with `env`; returns whether it
/// succeeded and everything it printed.
fn run_local(env: &[(&str, String)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"));
    cmd.args([
        "local",
        "--shards",
        "2",
        "--interval",
        "200ms",
        "--duration",
        "3s",
    ])
    .env("RUST_LOG", "trace")
    .env("NO_COLOR", "1")
    .env_remove("REDIS_URL")
    .env_remove("STORAGE_URL")
    .env_remove("DATABASE_URL")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in API_KEYS {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// None of `values` nor the API keys in `output`.
fn assert_no_secret(output: &str, values: &[&str]) {
    let api_keys = API_KEYS.iter().map(|(_, v)| *v);
    secrets::assert_no_secret(output, values.iter().copied().chain(api_keys));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_and_keys_never_reach_the_output_at_trace() {
    let redis = RedisServer::start_with_password(REDIS_PW).unwrap();
    let storage = StorageReceiver::start().await.unwrap();
    let pg = PostgresServer::start().unwrap();
    let dsn = pg
        .create_database("secrets")
        .unwrap()
        .replace("postgres@", &format!("postgres:{PG_PW}@"));
    let storage_url = storage
        .url()
        .replace("http://", &format!("http://{STORAGE_USER}:{STORAGE_PW}@"));
    let env = [
        ("REDIS_URL", redis.url()),
        ("STORAGE_URL", storage_url),
        ("DATABASE_URL", dsn),
    ];
    let (ok, output) = tokio::task::spawn_blocking(move || run_local(&env))
        .await
        .unwrap();
    assert!(ok, "the local run works with these URLs:\n{output}");
    assert!(
        storage.accepted_count() > 0,
        "the storage URL was used:\n{output}"
    );
    assert!(output.contains("TRACE"), "trace logging is on");
    assert_no_secret(&output, &[REDIS_PW, STORAGE_PW, STORAGE_USER, PG_PW]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_is_not_a_url_is_never_echoed() {
    let cases = [
        ("REDIS_URL", "NotAUrlRedis-s3cr3t-h8"),
        ("REDIS_URL", "redis://:RedisPw-s3cr3t-i9@no-port:notaport/0"),
        ("STORAGE_URL", "NotAUrlStorage-s3cr3t-j0"),
        ("STORAGE_URL", "ftp://u:StoragePw-s3cr3t-k1@host/"),
        (
            "STORAGE_URL",
            "http://u:StoragePw-s3cr3t-l2@host/?token=Tok-s3cr3t-m3",
        ),
        (
            "DATABASE_URL",
            "NotAUrlPg-s3cr3t-n4 password=PgPw-s3cr3t-o5",
        ),
        (
            "DATABASE_URL",
            "postgres://u:PgPw-s3cr3t-p6@host:notaport/db",
        ),
    ];
    for (var, value) in cases {
        let env = [(var, value.to_owned())];
        let (ok, output) = tokio::task::spawn_blocking(move || run_local(&env))
            .await
            .unwrap();
        assert!(!ok, "{var}={value} is refused:\n{output}");
        assert!(
            output.contains(var) || output.to_lowercase().contains("url"),
            "the error names the setting:\n{output}"
        );
        assert_no_secret(&output, &secrets::secret_parts(value));
    }
}
