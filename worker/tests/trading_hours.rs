//! Trading hours (`spec.schedule`) with the real worker binary against the local Yahoo server:
//! outside the window the source makes no request while the shard stays ready and keeps its
//! heartbeat; at the open it starts requesting; at the close it stops. `--schedule-clock`
//! puts the worker a few seconds before an open or a close (docs/worker.md, "Trading hours").

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use quotestream_testkit::RedisServer;
use quotestream_testkit::yahoo::YahooServer;
use serde_json::{Value, json};
use support::process::WorkerProcess;

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

/// The worker with its schedule clock at `clock`.
fn start(yahoo: &YahooServer, redis: &RedisServer, clock: &str) -> WorkerProcess {
    WorkerProcess::start_with_args(
        &config(yahoo, &redis.url()),
        &[],
        &["--schedule-clock", clock],
    )
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    worker: &WorkerProcess,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what} did not happen within {WAIT:?}; worker log:\n{}",
        worker.log()
    );
}

/// The window's state as the gate last set it: (open, next change in Unix seconds). The
/// gauges start at 0, so a next change of 0 means the gate has not run yet.
async fn window(worker: &WorkerProcess) -> (f64, i64) {
    (
        worker.metric("streamer_market_window_open", &[]).await,
        worker
            .metric("streamer_market_next_change_timestamp_seconds", &[])
            .await as i64,
    )
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

    // Monday 2026-12-07, three seconds before the 09:30 EST open.
    let worker = start(&yahoo, &redis, "2026-12-07T14:29:57Z");
    eventually("the worker reports the closed window", &worker, || async {
        window(&worker).await == (0.0, unix("2026-12-07T14:30:00Z"))
    })
    .await;
    let (status, _) = worker.get("/ready").await.unwrap();
    assert_eq!(status, 200, "the shard is ready while the market is closed");
    // The heartbeat (contract 004) goes out while closed.
    let beat = tokio::time::timeout(WAIT, health.next()).await;
    assert!(
        matches!(beat, Ok(Some(_))),
        "no heartbeat while the market was closed"
    );
    assert_eq!(yahoo.request_count(), 0, "a request before the open");

    // Then the window is open until 16:00 New York time, and the source polls.
    eventually("polling after the open", &worker, || async {
        yahoo.request_count() > 0 && window(&worker).await == (1.0, unix("2026-12-07T21:00:00Z"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_stops_the_requests_and_the_shard_stays_ready() {
    let yahoo = YahooServer::start().await.unwrap();
    let redis = RedisServer::start().unwrap();
    // The day after Thanksgiving closes at 13:00 EST: three seconds before it.
    let worker = start(&yahoo, &redis, "2026-11-27T17:59:57Z");

    eventually("polling before the early close", &worker, || async {
        yahoo.request_count() > 0
    })
    .await;
    // After Friday's early close the next open is Monday's.
    eventually("the window closing", &worker, || async {
        window(&worker).await == (0.0, unix("2026-11-30T14:30:00Z"))
    })
    .await;
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
