//! The sink queues' byte budget with the real `quotestream-worker run` process: a replay at full
//! speed into PostgreSQL (durable) and Redis (best effort) while PostgreSQL is stalled by a lock
//! held on the quotes table. The queues stay within `--queue-bytes` (read from /metrics), the
//! source is held back instead of buffered, and once the lock goes every quote is accounted
//! for: stored in PostgreSQL, and published or counted as dropped by Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use quotestream_testkit::{
    Guarded, PostgresServer, RedisServer, free_port, http_get, metric_sum, wait_until,
};
use quotestream_worker::sinks::postgres::{PostgresConfig, connect_and_migrate};
use serde_json::json;

const TABLE: &str = "quotes.real_time";
/// Quotes in the recording, over [`TICKERS`] tickers: far more than the budget holds.
const QUOTES: usize = 100_000;
const TICKERS: usize = 500;
/// `--queue-bytes`: about 5 700 quotes per queue.
const BUDGET: f64 = (1 << 20) as f64;
const WAIT: Duration = Duration::from_secs(60);

/// Ticker `i`: AAA, BAA, …
fn symbol(i: usize) -> String {
    (0..3)
        .map(|k| char::from(b'A' + (i / 26usize.pow(k) % 26) as u8))
        .collect()
}

/// An NDJSON recording in time order, one quote per ticker per 10 ms, dated a day ago.
fn write_recording(path: &Path) {
    let t0 = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let mut text = String::with_capacity(QUOTES * 110);
    for i in 0..QUOTES {
        let ticker = symbol(i % TICKERS);
        let at = t0 + jiff::SignedDuration::from_millis((i / TICKERS) as i64 * 10);
        let price = 100.0 + (i % 997) as f64 / 100.0;
        text.push_str(
            &json!({"ticker": ticker, "timestamp": at.to_string(),
                    "price": price, "volume": i, "bid": price - 0.01, "ask": price + 0.01,
                    "source": "replay"})
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The worker's /metrics, polled until it answers.
struct Scrape {
    port: u16,
}

impl Scrape {
    fn text(&self) -> String {
        http_get(self.port, "/metrics").map_or_else(String::new, |(_, body)| body)
    }
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(text, name, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_durable_sink_fills_its_queue_to_the_byte_budget_and_nothing_is_lost() {
    let redis = RedisServer::start().unwrap();
    let pg = PostgresServer::start().unwrap();
    let dsn = pg.create_database("budget").unwrap();
    connect_and_migrate(&PostgresConfig::new(Some(dsn.clone()), TABLE).unwrap())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("quotes.ndjson");
    write_recording(&recording);
    let config = dir.path().join("worker.json");
    std::fs::write(
        &config,
        json!({
            "namespace": "t", "stream": "budget", "shard": 0, "shards": 1,
            "tickers": (0..TICKERS).map(symbol).collect::<Vec<_>>(),
            "interval": "1s", "requestsPerHour": 100.0,
            "source": {"type": "replay", "replay": {"configMapKeyRef": {"name": "rec", "key": "quotes.ndjson"}, "speedPercent": 0}},
            "sinks": {
                "redis": {"url": redis.url()},
                "postgres": {"dsnSecretRef": {"name": "pg", "key": "dsn"}, "table": TABLE}
            },
            // The flag below overrides it: the budget in force is 1Mi.
            "queueBytes": 64 << 20,
            // Holds the source until the lock below is in place: the worker connects and
            // prepares its statements at start (which a table lock would block), and its
            // window opens 8 s after start (`--schedule-clock`).
            "schedule": {"calendar": "NYSE"}
        })
        .to_string(),
    )
    .unwrap();
    let port = free_port().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--grace", "5s"])
        .args(["--queue-bytes", "1Mi"])
        .args(["--schedule-clock", "2026-12-07T14:29:52Z"])
        .env("QUOTESTREAM_REPLAY_FILE", &recording)
        .env("DATABASE_URL", &dsn)
        .env("RUST_LOG", "info");
    let log = dir.path().join("worker.log");
    let mut worker = Guarded::spawn_with_stop(cmd, &log, "TERM").unwrap();
    let scrape = Scrape { port };
    let worker_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Started, sinks connected, the source waiting for the open: now the stall, a transaction
    // holding a lock that every INSERT waits for.
    let paused = wait_until(WAIT, || {
        // The gate has run (it sets the next open; the gauge starts at 0).
        let text = scrape.text();
        metric_sum(&text, "streamer_market_next_change_timestamp_seconds", &[])
            .is_some_and(|t| t > 0.0)
            && metric_sum(&text, "streamer_market_window_open", &[]) == Some(0.0)
    });
    assert!(paused, "the worker never started:\n{}", worker_log());
    let (locker, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    locker
        .batch_execute(&format!("BEGIN; LOCK TABLE {TABLE} IN EXCLUSIVE MODE"))
        .await
        .unwrap();
    assert_eq!(
        value(&scrape.text(), "streamer_quotes_fetched_total", &[]),
        0.0,
        "the source started before the lock was in place (startup took over 8 s):\n{}",
        worker_log()
    );

    // Fill: the PostgreSQL queue reaches its budget less at most one replay batch (1000
    // quotes, about 190 KB), every scrape on the way within the budget.
    let queued =
        |text: &str, sink: &str| value(text, "streamer_sink_queued_bytes", &[("sink", sink)]);
    let mut peak = [0f64; 2];
    let mut last = String::new();
    let full = wait_until(WAIT, || {
        last = scrape.text();
        for (i, sink) in ["postgres", "redis"].into_iter().enumerate() {
            peak[i] = peak[i].max(queued(&last, sink));
        }
        queued(&last, "postgres") >= BUDGET - 200_000.0
    });
    assert!(
        full,
        "the PostgreSQL queue never filled:\n{last}\n{}",
        worker_log()
    );
    assert_eq!(
        value(
            &last,
            "streamer_sink_queue_budget_bytes",
            &[("sink", "postgres")]
        ),
        BUDGET,
        "--queue-bytes wins over worker.json"
    );
    // Held: while the lock stays, the queue stays within its budget and the source is held back
    // (back-pressure), far from having read the whole recording.
    for _ in 0..25 {
        last = scrape.text();
        for (i, sink) in ["postgres", "redis"].into_iter().enumerate() {
            peak[i] = peak[i].max(queued(&last, sink));
        }
        assert!(!worker.exited(), "the worker died:\n{}", worker_log());
    }
    let fetched_while_stalled = value(&last, "streamer_quotes_fetched_total", &[]);
    assert!(
        fetched_while_stalled < (QUOTES / 2) as f64,
        "the source was not held back: {fetched_while_stalled} quotes fetched while PostgreSQL was stalled"
    );
    assert!(
        peak[0] <= BUDGET,
        "PostgreSQL queue peaked at {} bytes",
        peak[0]
    );
    assert!(peak[1] <= BUDGET, "Redis queue peaked at {} bytes", peak[1]);

    // Release: every quote reaches PostgreSQL; Redis published or counted each one.
    locker.batch_execute("ROLLBACK").await.unwrap();
    let published =
        |text: &str, sink: &str| value(text, "streamer_quotes_published_total", &[("sink", sink)]);
    let started = Instant::now();
    let done = wait_until(WAIT, || {
        last = scrape.text();
        published(&last, "postgres") >= QUOTES as f64
    });
    assert!(
        done,
        "not every quote reached PostgreSQL within {WAIT:?} of the release:\n{last}\n{}",
        worker_log()
    );
    let redis_done = wait_until(WAIT, || {
        last = scrape.text();
        published(&last, "redis")
            + value(
                &last,
                "streamer_sink_dropped_quotes_total",
                &[("sink", "redis")],
            )
            >= QUOTES as f64
    });
    assert!(redis_done, "Redis did not account for every quote:\n{last}");
    eprintln!(
        "drained {QUOTES} quotes {:?} after the release; queue peaks {peak:?} bytes of {BUDGET}",
        started.elapsed()
    );
    assert_eq!(
        value(&last, "streamer_quotes_fetched_total", &[]),
        QUOTES as f64
    );
    assert_eq!(published(&last, "postgres"), QUOTES as f64);
    assert_eq!(
        value(
            &last,
            "streamer_sink_dropped_quotes_total",
            &[("sink", "postgres")]
        ),
        0.0
    );
    assert_eq!(
        published(&last, "redis")
            + value(
                &last,
                "streamer_sink_dropped_quotes_total",
                &[("sink", "redis")]
            ),
        QUOTES as f64,
        "Redis: published + dropped = fetched"
    );
    let rows = pg
        .psql("budget", &format!("SELECT count(*) FROM {TABLE}"))
        .unwrap();
    assert_eq!(rows.trim(), QUOTES.to_string(), "rows in PostgreSQL");
    drop(worker);
    drop(locker);
    let _ = connection.await;
}
