//! Sinks that fail fast and report truthfully, with the real binary against real servers: a
//! permanent failure at start exits 1 naming the sink and the setting (also in the container's
//! termination message); one while running makes `/ready` 503 naming the sink, drops its
//! quotes as `sink_failed` instead of freezing the worker, leaves Redis publishing, and clears
//! by itself once the server is fixed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::Duration;

use quotestream_api::sink_failure::SinkFailure;
use quotestream_testkit::{PostgresServer, RedisServer};
use serde_json::{Value, json};
use support::process::WorkerProcess;

/// Longest wait for anything the worker should do; failures say what did not happen.
const WAIT: Duration = Duration::from_secs(30);
/// The bound on a permanent failure at start ending the process: generous for a loaded CI
/// machine (a debug build computes the SCRAM exchange slowly); before, the worker never exited.
const FAIL_FAST: Duration = Duration::from_secs(60);

/// A worker.json with a synthetic market of `tickers` tickers every 100 ms and `sinks`.
fn config(tickers: usize, sinks: Value) -> Value {
    let tickers: Vec<String> = (0..tickers)
        .map(|i| {
            let a = (b'A' + (i / 26 % 26) as u8) as char;
            let b = (b'A' + (i % 26) as u8) as char;
            format!("Q{a}{b}")
        })
        .collect();
    json!({
        "namespace": "markets", "stream": "demo", "shard": 0, "shards": 1,
        "tickers": tickers, "interval": "100ms", "requestsPerHour": 1000.0,
        "source": {"type": "synthetic", "synthetic": {"seed": 7}},
        "sinks": sinks,
        "epoch": 1, "fingerprint": "test"
    })
}

fn postgres_sink() -> Value {
    json!({"dsnSecretRef": {"name": "db", "key": "dsn"}})
}

/// Polls `check` every 50 ms until it holds or [`WAIT`] passes.
async fn eventually<F: Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The failure the worker wrote to its termination message.
fn termination_failure(worker: &WorkerProcess) -> SinkFailure {
    let message = worker.termination_message();
    SinkFailure::parse(&message).unwrap_or_else(|| {
        panic!(
            "the termination message is not a sink failure: {message:?}\nlog:\n{}",
            worker.log()
        )
    })
}

#[tokio::test]
async fn a_wrong_postgres_password_exits_1_at_once_naming_the_setting() {
    let server = PostgresServer::start().unwrap();
    server.create_database("market").unwrap();
    server
        .psql("postgres", "CREATE ROLE feeder LOGIN PASSWORD 'right-pw'; GRANT CREATE ON DATABASE market TO feeder")
        .unwrap();
    server.require_password("feeder").unwrap();
    let dsn = format!(
        "postgres://feeder:wrong-pw-s3cret@127.0.0.1:{}/market",
        server.port()
    );
    let mut worker = WorkerProcess::start(
        &config(3, json!({"postgres": postgres_sink()})),
        &[("DATABASE_URL", &dsn)],
    );
    let started = std::time::Instant::now();
    let status = worker.wait_exit(FAIL_FAST).unwrap_or_else(|| {
        panic!(
            "a wrong password must stop the worker within {FAIL_FAST:?}, not be retried; log:\n{}",
            worker.log()
        )
    });
    eprintln!("the worker exited {:?} after it started", started.elapsed());
    let log = worker.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("28P01"),
        "the server's refusal is named: {log}"
    );
    assert!(
        log.contains("spec.sinks.postgres.dsnSecretRef"),
        "the setting to fix is named: {log}"
    );
    assert!(
        !log.contains("wrong-pw-s3cret"),
        "no password in the log: {log}"
    );
    let failure = termination_failure(&worker);
    assert_eq!(failure.sink, "postgres");
    assert_eq!(failure.setting, "spec.sinks.postgres.dsnSecretRef");
    assert!(
        failure.reason.contains("password authentication failed"),
        "{failure:?}"
    );
    assert!(!failure.reason.contains("wrong-pw-s3cret"), "{failure:?}");
}

#[tokio::test]
async fn an_unparsable_redis_url_exits_1_at_once_naming_the_field() {
    for (sinks, env, field) in [
        (
            json!({"redis": {"url": "redis://:pw-s3cret@127.0.0.1:notaport/0"}}),
            None,
            "spec.sinks.redis.url",
        ),
        (
            json!({"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}),
            Some("redis://:pw-s3cret@127.0.0.1:6379/zero"),
            "REDIS_URL (from spec.sinks.redis.urlSecretRef)",
        ),
    ] {
        let env: Vec<(&str, &str)> = env.map(|url| ("REDIS_URL", url)).into_iter().collect();
        let mut worker = WorkerProcess::start(&config(3, sinks), &env);
        let status = worker.wait_exit(FAIL_FAST).unwrap_or_else(|| {
            panic!(
                "an unparsable Redis URL must stop the worker within {FAIL_FAST:?}; log:\n{}",
                worker.log()
            )
        });
        let log = worker.log();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(log.contains(field), "{field} not named: {log}");
        assert!(!log.contains("pw-s3cret"), "no password in the log: {log}");
        let failure = termination_failure(&worker);
        assert_eq!(failure.sink, "redis");
        assert!(failure.reason.contains(field), "{failure:?}");
    }
}

/// Quotes the worker has published to Redis so far.
async fn redis_published(worker: &WorkerProcess) -> f64 {
    worker
        .metric("streamer_quotes_published_total", &[("sink", "redis")])
        .await
}

async fn sink_failed_drops(worker: &WorkerProcess) -> f64 {
    worker
        .metric(
            "streamer_sink_dropped_quotes_total",
            &[("sink", "postgres"), ("reason", "sink_failed")],
        )
        .await
}

/// `/ready` answers 503 naming postgres as failed, with `setting`, and a reason holding
/// `sqlstate`; returns the body.
async fn unready_naming_postgres(worker: &WorkerProcess, setting: &str, sqlstate: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        last = worker.ready().await;
        let named = last.as_ref().is_some_and(|(status, body)| {
            *status == 503
                && body["sinks"]["postgres"]["state"] == "failed"
                && body["sinks"]["postgres"]["setting"] == setting
                && body["sinks"]["postgres"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(sqlstate))
        });
        if named {
            break;
        }
        last = None;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        last.is_some(),
        "/ready must answer 503 naming postgres, {setting} and {sqlstate}; now: {:?}\nlog:\n{}",
        worker.ready().await,
        worker.log()
    );
    let (_, body) = last.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("sink postgres failed")),
        "{body}"
    );
    assert_eq!(body["sinks"]["redis"]["state"], "up", "{body}");
    body
}

/// While postgres is failed: Redis keeps publishing and postgres's quotes are counted as
/// `sink_failed` (the pipeline is not held back by the failed sink), and `/health` answers.
async fn redis_keeps_publishing_while_postgres_is_failed(worker: &WorkerProcess) {
    let (redis_before, dropped_before) = (
        redis_published(worker).await,
        sink_failed_drops(worker).await,
    );
    assert!(
        eventually(|| async {
            redis_published(worker).await > redis_before + 1000.0
                && sink_failed_drops(worker).await > dropped_before + 1000.0
        })
        .await,
        "Redis must keep publishing and postgres count its quotes as sink_failed: redis {} -> {}, sink_failed {} -> {}\nlog:\n{}",
        redis_before,
        redis_published(worker).await,
        dropped_before,
        sink_failed_drops(worker).await,
        worker.log()
    );
    let health = worker.get("/health").await;
    assert!(
        health.as_ref().is_some_and(|(status, _)| *status == 200),
        "/health keeps answering: {health:?}"
    );
}

fn rows(server: &PostgresServer) -> u64 {
    server
        .psql("market", "SELECT count(*) FROM quotes.real_time")
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_or_a_dropped_table_makes_the_worker_unready_not_frozen_and_a_grant_recovers()
 {
    let server = PostgresServer::start().unwrap();
    let redis = RedisServer::start().unwrap();
    server.create_database("market").unwrap();
    server
        .psql(
            "postgres",
            "CREATE ROLE feeder LOGIN; GRANT CREATE ON DATABASE market TO feeder",
        )
        .unwrap();
    let dsn = format!("postgres://feeder@127.0.0.1:{}/market", server.port());
    let worker = WorkerProcess::start(
        &config(
            200,
            json!({"redis": {"url": redis.url()}, "postgres": postgres_sink()}),
        ),
        &[("DATABASE_URL", &dsn)],
    );
    assert!(
        eventually(|| async {
            worker.ready().await.is_some_and(|(s, _)| s == 200) && rows(&server) > 0
        })
        .await,
        "the worker never became ready and wrote rows; log:\n{}",
        worker.log()
    );

    // Someone revokes the worker's INSERT grant while it streams.
    server
        .psql("market", "REVOKE INSERT ON quotes.real_time FROM feeder")
        .unwrap();
    let body = unready_naming_postgres(&worker, "spec.sinks.postgres.dsnSecretRef", "42501").await;
    assert!(
        body["sinks"]["postgres"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("permission denied")),
        "{body}"
    );
    redis_keeps_publishing_while_postgres_is_failed(&worker).await;

    // The grant comes back: the periodic re-check notices, no restart.
    server
        .psql("market", "GRANT INSERT ON quotes.real_time TO feeder")
        .unwrap();
    let before = rows(&server);
    assert!(
        eventually(|| async {
            worker.ready().await.is_some_and(|(s, b)| {
                s == 200 && b["ready"] == true && b["sinks"]["postgres"]["state"] == "up"
            }) && rows(&server) > before
        })
        .await,
        "after GRANT the worker must be ready again and write rows; /ready: {:?}\nlog:\n{}",
        worker.ready().await,
        worker.log()
    );

    // The table is dropped under it.
    server
        .psql("market", "DROP TABLE quotes.real_time")
        .unwrap();
    let body = unready_naming_postgres(&worker, "spec.sinks.postgres.table", "42P01").await;
    assert!(
        body["sinks"]["postgres"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("spec.sinks.postgres.table")),
        "the fix is named: {body}"
    );
    redis_keeps_publishing_while_postgres_is_failed(&worker).await;
}
