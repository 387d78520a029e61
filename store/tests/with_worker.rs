//! The real `quotestream-worker run` posting to the real `quotestream-store` on a real
//! PostgreSQL, which restarts in the middle of the stream: the store answers 503 +
//! Retry-After meanwhile, the worker's storage sink keeps its batches and retries, and in the
//! end every quote the worker counts as published is stored exactly once (nothing lost,
//! nothing doubled) and none was dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::process::Command;

use quotestream_testkit::{PostgresServer, free_port, spawn_logged, wait_until};
use serde_json::json;
use support::{Store, WAIT, count, database, metric, signal, wait_exit, workspace_binary};

/// A `quotestream-worker run` of a synthetic stream of 40 tickers posting to `store_url`.
struct WorkerRun {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl WorkerRun {
    fn start(store_url: &str, batch_size: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("worker.json");
        let tickers: Vec<String> = (0..40)
            .map(|i| {
                let a = (b'A' + (i / 26) as u8) as char;
                let b = (b'A' + (i % 26) as u8) as char;
                format!("Q{a}{b}")
            })
            .collect();
        std::fs::write(
            &config,
            serde_json::to_vec(&json!({
                "namespace": "markets", "stream": "e2e", "shard": 0, "shards": 1,
                "tickers": tickers, "interval": "100ms", "requestsPerHour": 100000.0,
                "source": {"type": "synthetic", "synthetic": {"seed": 3}},
                "sinks": {"storage": {"url": store_url, "batchSize": batch_size}},
                "epoch": 1, "fingerprint": "test"
            }))
            .unwrap(),
        )
        .unwrap();
        let port = free_port().unwrap();
        let log = dir.path().join("worker.log");
        let mut cmd = Command::new(workspace_binary("quotestream-worker"));
        cmd.args(["run", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--grace", "30s"])
            .env("RUST_LOG", "info");
        let child = spawn_logged(&mut cmd, &log).unwrap();
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, a clean exit, and the (published to storage, dropped) of its closing line:
    /// `worker stopped: every quote accounted for fetched=F … sinks=storage published=P
    /// dropped=D …` (the worker's one sink here is storage, so the totals are its own).
    fn stop(mut self) -> (u64, u64) {
        signal(self.child.id(), "TERM");
        let status = wait_exit(&mut self.child, WAIT);
        assert!(
            status.success(),
            "worker exit {status}; log:\n{}",
            self.log()
        );
        let text = self.log();
        let summary = text
            .lines()
            .rev()
            .find(|l| l.contains("worker stopped"))
            .unwrap_or_else(|| panic!("no summary in the worker log:\n{text}"));
        let number_after = |marker: &str| -> u64 {
            let at = summary
                .find(marker)
                .unwrap_or_else(|| panic!("{marker} not in {summary}"));
            summary[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        };
        assert!(
            summary.contains("sinks=storage "),
            "one sink, storage: {summary}"
        );
        (number_after("published="), number_after("dropped="))
    }
}

#[test]
fn the_worker_streams_through_a_database_restart_losing_and_doubling_nothing() {
    let mut pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "e2e");
    let store = Store::start(&dsn, &["--retry-after-secs", "1"]);
    let worker = WorkerRun::start(&store.url(), 100);
    let worker_port = worker.port;
    let log = || worker.log();
    let stored = |pg: &PostgresServer| count(pg, "e2e", "SELECT count(*) FROM quotes.real_time");

    // Streaming.
    assert!(
        wait_until(WAIT, || stored(&pg) >= 400),
        "no rows; worker log:\n{}",
        log()
    );

    // The database goes away; the store answers 503 and the worker retries. It comes back
    // after the worker's first failed POST, before the worker's breaker opens (5 failures).
    pg.stop();
    assert!(
        wait_until(WAIT, || store
            .metric("quotestore_db_errors_total{kind=\"unavailable\"}")
            >= 1.0),
        "the store saw no outage; log:\n{}",
        store.log_text()
    );
    assert!(
        wait_until(WAIT, || metric(
            worker_port,
            "streamer_errors_total{type=\"publish\"}"
        ) >= 1.0),
        "the worker saw no failed POST; its log:\n{}",
        log()
    );
    pg.restart().unwrap();
    let before = stored(&pg);
    // Bounded by the breaker's open period (60 s) should it have opened on a slow machine.
    assert!(
        wait_until(WAIT * 2, || stored(&pg) >= before + 400),
        "streaming did not resume; worker log:\n{}",
        log()
    );

    // Drain: the worker posts what it has and stops.
    let (published, dropped) = worker.stop();
    let summary = format!("published {published}, dropped {dropped}");
    let rows = stored(&pg);
    assert_eq!(dropped, 0, "{summary}");
    assert!(published > 800, "{summary}");
    assert_eq!(rows, published, "nothing lost, nothing doubled: {summary}");
    let distinct = count(
        &pg,
        "e2e",
        "SELECT count(DISTINCT (symbol, \"timestamp\")) FROM quotes.real_time",
    );
    assert_eq!(distinct, rows);
    let inserted = store.metric("quotestore_ingest_rows_total{result=\"inserted\"}") as u64;
    assert_eq!(inserted, rows);
    // The rollups count every stored quote once, the restart notwithstanding.
    assert!(wait_until(
        WAIT,
        || store.metric("quotestore_rollup_merged_rows_total") as u64 >= rows
    ));
    for grain in ["1m", "1h", "1d"] {
        let in_bars = count(
            &pg,
            "e2e",
            &format!("SELECT sum(quotes) FROM quotes.real_time_bars_{grain}"),
        );
        assert_eq!(in_bars, rows, "{grain} bars");
    }
}

/// The store refuses bodies over `--max-body-bytes` with 413. The worker's batches (about 100
/// quotes, 15 kB) are over this store's 4 kB: each refused batch is bisected until its parts
/// fit, so every quote is stored and none dropped. (Before bisection every batch was dropped
/// whole as `rejected`.)
#[test]
fn batches_over_the_stores_body_limit_are_bisected_not_dropped() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "e2e");
    let store = Store::start(&dsn, &["--max-body-bytes", "4096"]);
    let worker = WorkerRun::start(&store.url(), 1000);
    let stored = || count(&pg, "e2e", "SELECT count(*) FROM quotes.real_time");
    assert!(
        wait_until(WAIT, || stored() >= 400),
        "nothing stored; worker log:\n{}",
        worker.log()
    );
    let (published, dropped) = worker.stop();
    assert_eq!(dropped, 0, "published {published}");
    assert_eq!(stored(), published, "every published quote is stored once");
    assert!(
        store.metric("quotestore_rejected_batches_total{rule=\"body_size\"}") >= 1.0,
        "the store refused no body as too large: the test proves nothing"
    );
}
