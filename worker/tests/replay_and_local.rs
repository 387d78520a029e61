//! Whole workers in-process: the replay source through validation to a real Redis, and the
//! local run (`make run`) with REDIS_URL set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use quotestream_api::WorkerConfig;
use quotestream_api::contract::env::REPLAY_FILE;
use quotestream_testkit::RedisServer;
use quotestream_worker::assembly::{RunOptions, Worker};
use quotestream_worker::local::{self, LocalOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn recording() -> String {
    let mut lines = Vec::new();
    for i in 0..5 {
        for (t, p) in [("AAPL", 185.0), ("MSFT", 400.0), ("NVDA", 120.0)] {
            lines.push(
                json!({"ticker": t, "timestamp": format!("2026-01-20T14:30:1{i}.000Z"), "price": p + i as f64,
                       "volume": 1000 * (i + 1), "source": "yfinance"})
                .to_string(),
            );
        }
    }
    lines.insert(4, "{ broken".into());
    lines.insert(6, json!({"ticker": "AAPL", "timestamp": "2026-01-20T14:30:12.500Z", "price": -1, "volume": 1, "source": "yfinance"}).to_string());
    lines.join("\n")
}

fn replay_config(redis_url: &str, looped: bool) -> WorkerConfig {
    serde_json::from_value(json!({
        "namespace": "t", "stream": "replay", "shard": 0, "shards": 1,
        "tickers": ["AAPL", "NVDA"], "interval": "1s", "requestsPerHour": 100.0,
        "source": {"type": "replay", "replay": {"configMapKeyRef": {"name": "rec", "key": "quotes.ndjson"}, "speedPercent": 0, "loop": looped}},
        "sinks": {"redis": {"url": redis_url}}
    }))
    .unwrap()
}

async fn collect(
    messages: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin),
    count: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < count {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("messages keep coming")
            .unwrap();
        out.push(serde_json::from_slice(msg.get_payload_bytes()).unwrap());
    }
    out
}

/// A Redis, [`recording`] in a file, a subscriber to `quotes.realtime` and a replay worker
/// (looping or not) of the file into that Redis, built but not yet running.
async fn replay_worker(
    looped: bool,
) -> (RedisServer, tempfile::TempDir, redis::aio::PubSub, Worker) {
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quotes.ndjson");
    std::fs::write(&file, recording()).unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("quotes.realtime").await.unwrap();
    let env = HashMap::from([(REPLAY_FILE.to_owned(), file.display().to_string())]);
    let options = RunOptions {
        env,
        ..RunOptions::default()
    };
    let worker = Worker::new(replay_config(&redis.url(), looped), options, None).unwrap();
    (redis, dir, pubsub, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_plays_the_shards_tickers_and_drops_bad_lines() {
    let (_redis, _recording, mut pubsub, worker) = replay_worker(false).await;
    let mut messages = pubsub.on_message();
    let metrics = worker.metrics().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));

    let got = collect(&mut messages, 10).await;
    let tickers: HashSet<&str> = got.iter().map(|m| m["ticker"].as_str().unwrap()).collect();
    assert_eq!(
        tickers,
        HashSet::from(["AAPL", "NVDA"]),
        "only the shard's tickers are played"
    );
    let aapl: Vec<&str> = got
        .iter()
        .filter(|m| m["ticker"] == "AAPL")
        .map(|m| m["timestamp"].as_str().unwrap())
        .collect();
    assert_eq!(aapl.len(), 5);
    assert!(
        aapl.windows(2).all(|w| w[0] < w[1]),
        "in recorded order: {aapl:?}"
    );
    assert_eq!(
        metrics
            .validation_errors
            .with_label_values(&["malformed"])
            .get(),
        1
    );
    assert_eq!(
        metrics
            .validation_errors
            .with_label_values(&["price"])
            .get(),
        1
    );

    stop.cancel();
    let summary = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_replay_keeps_publishing_newer_quotes() {
    let (_redis, _recording, mut pubsub, worker) = replay_worker(true).await;
    let mut messages = pubsub.on_message();
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    let got = collect(&mut messages, 35).await;
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let keys: HashSet<(String, String)> = got
        .iter()
        .map(|m| {
            (
                m["ticker"].as_str().unwrap().to_owned(),
                m["timestamp"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys.len(),
        got.len(),
        "every round publishes new (ticker, timestamp) pairs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_run_streams_every_shard_and_publishes_to_redis_url() {
    let redis = RedisServer::start().unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("quotes.realtime").await.unwrap();
    let mut messages = pubsub.on_message();

    let opts = LocalOptions {
        shards: Some(3),
        interval: Some("100ms".into()),
        seed: 1,
        tickers: Some("AAPL,MSFT,NVDA,GOOGL,AMZN,META".into()),
        duration: Some(Duration::from_millis(1500)),
        refresh: Duration::from_millis(500),
        stream: None,
    };
    let env = HashMap::from([("REDIS_URL".to_owned(), redis.url())]);
    let stop = CancellationToken::new();
    let run = tokio::spawn(local::run(
        opts,
        RunOptions {
            env,
            ..RunOptions::default()
        },
        stop,
    ));
    let got = collect(&mut messages, 12).await;
    let tickers: HashSet<&str> = got.iter().map(|m| m["ticker"].as_str().unwrap()).collect();
    assert_eq!(
        tickers.len(),
        6,
        "all six tickers, from all three shards: {tickers:?}"
    );
    let summaries = tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summaries.len(), 3);
    for s in &summaries {
        assert!(s.fetched > 0);
        assert_eq!(s.dropped, 0);
        assert!(
            s.published
                .iter()
                .any(|(sink, n)| sink == "redis" && *n > 0),
            "{s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_run_streams_from_a_local_vendor_server() {
    use quotestream_testkit::stream::Script;
    use quotestream_testkit::stream::yahoo::YahooStreamServer;
    use quotestream_worker::local::LocalStream;

    let redis = RedisServer::start().unwrap();
    let vendor = YahooStreamServer::start(Script::at_rate(600.0), 0)
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("quotes.realtime").await.unwrap();
    let mut messages = pubsub.on_message();

    let opts = LocalOptions {
        shards: Some(3),
        interval: None,
        seed: 1,
        tickers: Some("AAPL,MSFT,NVDA,GOOGL,AMZN,BRK.B".into()),
        duration: Some(Duration::from_millis(1500)),
        refresh: Duration::from_millis(500),
        stream: Some(LocalStream::new("yahoo-stream", vendor.url()).unwrap()),
    };
    let env = HashMap::from([("REDIS_URL".to_owned(), redis.url())]);
    let run = tokio::spawn(local::run(
        opts,
        RunOptions {
            env,
            ..RunOptions::default()
        },
        CancellationToken::new(),
    ));
    let got = collect(&mut messages, 300).await;
    let tickers: HashSet<&str> = got.iter().map(|m| m["ticker"].as_str().unwrap()).collect();
    assert_eq!(
        tickers.len(),
        5,
        "every ticker streamed but the share class: {tickers:?}"
    );
    assert!(
        !tickers.contains("BRK.B"),
        "contract 004 keeps share classes off Redis by default: {tickers:?}"
    );
    assert!(got.iter().all(|m| m["source"] == "yfinance"));
    let summaries = tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summaries.len(), 3);
    assert_eq!(vendor.connections(), 3, "one connection per shard");
    assert!(
        LocalStream::new("yahoo", String::new()).is_err(),
        "polling types are refused"
    );
}
