//! Crash durability of the durable sinks with the disk buffer (`sinks.<sink>.buffer.type:
//! disk`), with the real worker binary, a real PostgreSQL 15 (testkit) or the storage receiver,
//! and a local source (a replay recording, so what the source served is known exactly).
//!
//! The scenario, for each sink, buffer on and off:
//! 1. the worker plays N quotes over a few seconds; the sink confirms some of them;
//! 2. the destination stops confirming (the table locked / storage answering 503), while the
//!    source serves the rest: all N are accepted by the worker (fetched, and with the buffer on,
//!    written to it);
//! 3. `kill -9` of the worker;
//! 4. the destination recovers and the worker starts again with the same buffer directory and
//!    a ticker list that gets nothing from the recording (so nothing is served twice: whatever
//!    arrives now comes from the buffer).
//!
//! Buffer on: every one of the N quotes ends up stored. Buffer off: the quotes not confirmed
//! before the outage are lost — deterministic here, because the outage holds them unconfirmed
//! until the kill; the test asserts it and prints the figures (docs/worker.md, Reliability).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use quotestream_testkit::{Guarded, PostgresServer, StorageReceiver, free_port, http_get};
use serde_json::{Value, json};

/// Quotes the recording serves (over [`SPAN_MS`] of recorded time, played at 100 %).
const N: usize = 2000;
const SPAN_MS: i64 = 3000;
const TICKERS: [&str; 4] = ["AAPL", "MSFT", "NVDA", "AMZN"];
/// A ticker whose only quote comes an hour into the recording: it keeps the replay source
/// running (a finished source would start a graceful shutdown) and serves nothing in the test.
const KEEPALIVE: &str = "ZZZZ";
const T0_MS: i64 = 1_768_919_400_000; // 2026-01-20T14:30:00Z
const WAIT: Duration = Duration::from_secs(60);

fn recording(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..N {
        // Distinct (ticker, timestamp) for every line: a ticker's quotes are 6 ms apart.
        let ts = jiff::Timestamp::from_millisecond(T0_MS + i as i64 * SPAN_MS / N as i64).unwrap();
        text.push_str(
            &json!({
                "ticker": TICKERS[i % 4], "timestamp": format!("{ts:.3}"), "price": 100.0 + (i % 50) as f64,
                "volume": 1000 + i, "source": "replay"
            })
            .to_string(),
        );
        text.push('\n');
    }
    let later = jiff::Timestamp::from_millisecond(T0_MS + 3_600_000).unwrap();
    text.push_str(
        &json!({"ticker": KEEPALIVE, "timestamp": format!("{later:.3}"), "price": 1.0, "volume": 1, "source": "replay"})
            .to_string(),
    );
    text.push('\n');
    let path = dir.join("recording.ndjson");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sink {
    Postgres,
    Storage,
}

impl Sink {
    fn label(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Storage => "storage",
        }
    }
}

fn worker_json(tickers: &[&str], sink: Sink, storage_url: &str, buffered: bool) -> Value {
    let buffer = buffered.then(|| json!({"type": "disk", "maxSize": "64Mi"}));
    let mut block = match sink {
        Sink::Postgres => json!({"dsnSecretRef": {"name": "pg", "key": "dsn"}}),
        Sink::Storage => json!({"url": storage_url, "batchSize": 200}),
    };
    if let Some(b) = buffer {
        block["buffer"] = b;
    }
    json!({
        "namespace": "markets", "stream": "crash", "shard": 0, "shards": 1,
        "tickers": tickers, "interval": "1s", "requestsPerHour": 1000.0,
        "source": {"type": "replay", "replay": {"configMapKeyRef": {"name": "r", "key": "k"}, "speedPercent": 100}},
        "sinks": {sink.label(): block},
        "epoch": 1, "fingerprint": "test"
    })
}

struct Worker {
    _process: Guarded,
    port: u16,
}

impl Worker {
    fn start(dir: &Path, run: &str, config: &Value, env: &[(&str, &str)]) -> Self {
        let path = dir.join(format!("{run}.json"));
        std::fs::write(&path, serde_json::to_vec(config).unwrap()).unwrap();
        let port = free_port().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"));
        cmd.args(["run", "--config"])
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--grace", "5s"])
            .arg("--buffer-dir")
            .arg(dir.join("buffer"))
            .env("QUOTESTREAM_REPLAY_FILE", dir.join("recording.ndjson"))
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = dir.join(format!("{run}.log"));
        // Stopped with SIGKILL: dropping the worker is the `kill -9`.
        let process = Guarded::spawn_with_stop(cmd, &log, "KILL").unwrap();
        let worker = Self {
            _process: process,
            port,
        };
        let up = quotestream_testkit::wait_until(WAIT, || worker.metrics().is_some());
        assert!(
            up,
            "the worker did not serve /metrics; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        worker
    }

    fn metrics(&self) -> Option<String> {
        http_get(self.port, "/metrics").map(|(_, body)| body)
    }

    /// The sum of `name`'s series for `sink` (all series for "").
    fn metric(&self, name: &str, sink: &str) -> u64 {
        let label = if sink.is_empty() {
            String::new()
        } else {
            format!("sink=\"{sink}\"")
        };
        let text = self.metrics().unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }
}

/// The destination, with a way to make it stop confirming.
// One per test: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Destination {
    Postgres {
        server: PostgresServer,
        dsn: String,
        /// An open transaction holding an exclusive lock on the table.
        lock: Option<tokio_postgres::Client>,
    },
    Storage(StorageReceiver),
}

impl Destination {
    async fn start(sink: Sink) -> Self {
        match sink {
            Sink::Postgres => {
                let server = PostgresServer::start().unwrap();
                let dsn = server.create_database("crash").unwrap();
                Self::Postgres {
                    server,
                    dsn,
                    lock: None,
                }
            }
            Sink::Storage => {
                quotestream_worker::install_crypto_provider();
                Self::Storage(StorageReceiver::start().await.unwrap())
            }
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Postgres { dsn, .. } => vec![("DATABASE_URL", dsn.clone())],
            Self::Storage(_) => Vec::new(),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Postgres { .. } => String::new(),
            Self::Storage(r) => r.url(),
        }
    }

    /// Distinct quotes stored.
    fn stored(&self) -> usize {
        match self {
            Self::Postgres { server, .. } => server
                .psql(
                    "crash",
                    "SELECT count(*) FROM quotes.real_time WHERE symbol <> 'ZZZZ'",
                )
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            Self::Storage(r) => {
                let ledger = r.ledger();
                let keys: HashSet<(String, String)> = ledger
                    .accepted
                    .iter()
                    .map(|q| (q["ticker"].to_string(), q["timestamp"].to_string()))
                    .collect();
                keys.len()
            }
        }
    }

    /// The destination stops confirming: the table is locked / storage answers 503.
    async fn fail(&mut self) {
        match self {
            Self::Postgres { dsn, lock, .. } => {
                let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client
                    // EXCLUSIVE: writes wait, reads (the test's count) go on.
                    .batch_execute("BEGIN; LOCK TABLE quotes.real_time IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                *lock = Some(client);
            }
            Self::Storage(r) => {
                r.ledger().always = Some(quotestream_testkit::storage::Fault::Status(
                    503,
                    "storage down for the test",
                ));
            }
        }
    }

    async fn recover(&mut self) {
        match self {
            Self::Postgres { lock, .. } => {
                if let Some(client) = lock.take() {
                    client.batch_execute("ROLLBACK").await.unwrap();
                }
            }
            Self::Storage(r) => r.ledger().always = None,
        }
    }
}

/// Figures of one run of the scenario.
#[derive(Debug)]
struct Outcome {
    served: usize,
    stored_before_outage: usize,
    stored_at_kill: usize,
    stored_after_restart: usize,
    replayed: u64,
}

async fn crash_and_restart(sink: Sink, buffered: bool) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    recording(dir.path());
    let mut dest = Destination::start(sink).await;
    let env = dest.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = dest.url();
    let all: Vec<&str> = TICKERS.iter().copied().chain([KEEPALIVE]).collect();

    let worker = Worker::start(
        dir.path(),
        "first",
        &worker_json(&all, sink, &url, buffered),
        &env,
    );
    // 1. Mid-stream: some quotes confirmed, most still to come.
    let confirmed_some = tokio::task::block_in_place(|| {
        quotestream_testkit::wait_until(WAIT, || {
            worker.metric("streamer_quotes_published_total", sink.label()) > 0
        })
    });
    assert!(confirmed_some, "the sink confirmed nothing");
    dest.fail().await;
    let stored_before_outage = dest.stored();
    assert!(stored_before_outage > 0, "confirmed before the outage");
    // 2. Every quote served and accepted (fetched; with the buffer, written to it).
    let accepted = tokio::task::block_in_place(|| {
        quotestream_testkit::wait_until(WAIT, || {
            let fetched = worker.metric("streamer_quotes_fetched_total", "");
            let written = worker.metric("streamer_buffer_written_quotes_total", sink.label());
            fetched == N as u64 && (!buffered || written == N as u64)
        })
    });
    assert!(
        accepted,
        "the worker did not accept all {N} quotes: {}",
        worker.metrics().unwrap_or_default()
    );
    assert!(dest.stored() < N, "the outage holds quotes back");
    // 3. kill -9.
    drop(worker);
    dest.recover().await;
    let stored_at_kill = dest.stored();

    // 4. Same buffer directory, no quote served again.
    let worker = Worker::start(
        dir.path(),
        "second",
        &worker_json(&[KEEPALIVE], sink, &url, buffered),
        &env,
    );
    let replayed = if buffered {
        let all_stored = tokio::task::block_in_place(|| {
            quotestream_testkit::wait_until(WAIT, || dest.stored() == N)
        });
        assert!(
            all_stored,
            "{} of {N} quotes stored after the restart: {}",
            dest.stored(),
            worker.metrics().unwrap_or_default()
        );
        worker.metric("streamer_buffer_replayed_quotes_total", sink.label())
    } else {
        // Nothing can arrive: wait until the restarted worker is ready, then read.
        tokio::task::block_in_place(|| {
            quotestream_testkit::wait_until(WAIT, || {
                http_get(worker.port, "/ready").is_some_and(|(s, _)| s == 200)
            })
        });
        0
    };
    let outcome = Outcome {
        served: N,
        stored_before_outage,
        stored_at_kill,
        stored_after_restart: dest.stored(),
        replayed,
    };
    drop(worker);
    eprintln!(
        "{} sink, buffer {}: {outcome:?}, lost {}",
        sink.label(),
        if buffered { "on" } else { "off" },
        outcome.served - outcome.stored_after_restart
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_the_disk_buffer_loses_no_accepted_quote_to_kill_9() {
    let o = crash_and_restart(Sink::Postgres, true).await;
    assert_eq!(o.stored_after_restart, N, "{o:?}");
    assert!(
        o.replayed as usize >= N - o.stored_at_kill,
        "what was missing came from the buffer: {o:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_the_buffer_loses_what_was_unconfirmed_at_kill_9() {
    let o = crash_and_restart(Sink::Postgres, false).await;
    assert_eq!(o.stored_after_restart, o.stored_at_kill, "{o:?}");
    assert!(o.stored_at_kill >= o.stored_before_outage, "{o:?}");
    assert!(o.stored_after_restart < N, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_with_the_disk_buffer_loses_no_accepted_quote_to_kill_9() {
    let o = crash_and_restart(Sink::Storage, true).await;
    assert_eq!(o.stored_after_restart, N, "{o:?}");
    assert!(o.replayed as usize >= N - o.stored_at_kill, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_without_the_buffer_loses_what_was_unconfirmed_at_kill_9() {
    let o = crash_and_restart(Sink::Storage, false).await;
    assert_eq!(o.stored_after_restart, o.stored_at_kill, "{o:?}");
    assert!(o.stored_at_kill >= o.stored_before_outage, "{o:?}");
    assert!(o.stored_after_restart < N, "{o:?}");
}

/// A bad buffer setting stops the worker at start with the field's name.
#[test]
fn a_bad_max_size_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    recording(dir.path());
    let mut config = worker_json(&TICKERS, Sink::Storage, "http://127.0.0.1:1", true);
    config["sinks"]["storage"]["buffer"]["maxSize"] = json!("12kb");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"))
        .args(["run", "--config"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--buffer-dir"])
        .arg(dir.path().join("buffer"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sinks.storage.buffer.maxSize") && err.contains("such as 16Mi"),
        "{err}"
    );
}
