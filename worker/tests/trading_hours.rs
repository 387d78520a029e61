//! Trading hours (`spec.schedule`) with the real worker binary against the local Yahoo server:
//! outside the window the source makes no request while the shard stays ready and keeps its
//! heartbeat; at the open it starts requesting; at the close it stops. `--schedule-clock`
//! puts the worker a few seconds before an open or a close (docs/worker.md, "Trading hours").

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use quotestream_testkit::yahoo::YahooServer;
use quotestream_testkit::{RedisServer, free_port};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn config(yahoo: &YahooServer, redis_url: &str) -> Value {
    json!({
        "namespace": "markets", "stream": "nyse", "shard": 0, "shards": 1,
        "tickers": ["AAPL", "MSFT"], "interval": "100ms", "requestsPerHour": 1000000.0,
        "source": {"type": "yahoo", "yahoo": {"baseUrl": yahoo.base_url()}},
        "sinks": {"redis": {"url": redis_url}},
        "schedule": {"calendar": "NYSE"},
        "epoch": 1, "fingerprint": "test"
    })
}

struct Worker {
    child: Child,
    port: u16,
}

impl Worker {
    fn start(config: &Path, clock: &str) -> Self {
        let port = free_port().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"))
            .args(["run", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--grace", "5s"])
            .args(["--schedule-clock", clock])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, port }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        quotestream_worker::install_crypto_provider();
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    /// A gauge from /metrics (None until the endpoint answers).
    async fn gauge(&self, name: &str) -> Option<i64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as i64)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within {WAIT:?}");
}

fn unix(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_second()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_makes_no_request_stays_ready_with_heartbeats_then_the_open_starts_polling() {
    let yahoo = YahooServer::start().await.unwrap();
    let redis = RedisServer::start().unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("system.health").await.unwrap();
    let mut health = pubsub.into_on_message();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.json");
    std::fs::write(&path, config(&yahoo, &redis.url()).to_string()).unwrap();
    // Monday 2026-12-07, three seconds before the 09:30 EST open.
    let worker = Worker::start(&path, "2026-12-07T14:29:57Z");

    eventually("the worker reports the closed window", || async {
        worker.gauge("streamer_market_window_open").await == Some(0)
    })
    .await;
    assert_eq!(
        worker
            .gauge("streamer_market_next_change_timestamp_seconds")
            .await,
        Some(unix("2026-12-07T14:30:00Z")),
        "the next open is Monday's 09:30 New York time"
    );
    let (status, _) = worker.get("/ready").await.unwrap();
    assert_eq!(status, 200, "the shard is ready while the market is closed");
    // The heartbeat (contract 004) goes out while closed.
    let beat = tokio::time::timeout(WAIT, health.next()).await;
    assert!(
        matches!(beat, Ok(Some(_))),
        "no heartbeat while the market was closed"
    );
    assert_eq!(yahoo.request_count(), 0, "a request before the open");

    eventually("polling after the open", || async {
        yahoo.request_count() > 0 && worker.gauge("streamer_market_window_open").await == Some(1)
    })
    .await;
    assert_eq!(
        worker
            .gauge("streamer_market_next_change_timestamp_seconds")
            .await,
        Some(unix("2026-12-07T21:00:00Z")),
        "the window closes at 16:00 New York time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_stops_the_requests_and_the_shard_stays_ready() {
    let yahoo = YahooServer::start().await.unwrap();
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.json");
    std::fs::write(&path, config(&yahoo, &redis.url()).to_string()).unwrap();
    // The day after Thanksgiving closes at 13:00 EST: three seconds before it.
    let worker = Worker::start(&path, "2026-11-27T17:59:57Z");

    eventually("polling before the early close", || async {
        yahoo.request_count() > 0
    })
    .await;
    eventually("the window closing", || async {
        worker.gauge("streamer_market_window_open").await == Some(0)
    })
    .await;
    assert_eq!(
        worker
            .gauge("streamer_market_next_change_timestamp_seconds")
            .await,
        Some(unix("2026-11-30T14:30:00Z")),
        "after Friday's early close the next open is Monday's"
    );
    let after_close = yahoo.request_count();
    // An observation window, not a synchronisation: twenty polling intervals in which a
    // running source would have made twenty requests.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        yahoo.request_count(),
        after_close,
        "requests after the close"
    );
    let (status, _) = worker.get("/ready").await.unwrap();
    assert_eq!(status, 200, "the shard stays ready after the close");
}
