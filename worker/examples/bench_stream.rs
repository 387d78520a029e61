//! The streaming part of `make bench`: vendor frame → Redis subscriber latency of a worker shard
//! streaming from a local Yahoo live-stream server (base64 protobuf frames over WebSocket) at
//! paced rates. A measurement, not a test: prints a markdown table to stdout (progress to
//! stderr) and asserts nothing about speed.
//!
//! The server stamps each tick with its wall-clock send time; the tick's number travels in the
//! quote's day volume, so the subscriber knows exactly which send time a message belongs to.
//! Server, worker and subscriber share this process (and the machine's 2 cores).
//!
//! cargo run --release -p quotestream-worker --example bench_stream [-- --quick]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use futures_util::StreamExt;
use quotestream_api::WorkerConfig;
use quotestream_testkit::RedisServer;
use quotestream_testkit::stream::yahoo::YahooStreamServer;
use quotestream_testkit::stream::{Market, Script};
use quotestream_worker::assembly::{RunOptions, Worker};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CHANNEL: &str = "quotes.realtime";
/// Tickers of the shard: an S&P 500 shard's worth.
const TICKERS: usize = 500;

#[derive(Parser, Debug)]
#[command(about = "Vendor frame → Redis subscriber latency of a streaming worker shard")]
struct Args {
    /// A few seconds per row (CI keeps the harness alive with this).
    #[arg(long)]
    quick: bool,
}

fn symbol(i: usize) -> String {
    [i / 676 % 26, i / 26 % 26, i % 26]
        .iter()
        .map(|d| char::from(b'A' + *d as u8))
        .collect()
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

struct Row {
    rate: f64,
    sent: u64,
    received: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One rate: a fresh server and worker, a warm-up, then `measure` of paced ticks.
async fn run(
    redis: &RedisServer,
    rate: f64,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Row> {
    let script = Script {
        record_sends: true,
        ..Script::at_rate(rate)
    };
    let server = YahooStreamServer::start(script, 0).await?;
    let tickers: Vec<String> = (0..TICKERS).map(symbol).collect();
    let config: WorkerConfig = serde_json::from_value(json!({
        "namespace": "bench", "stream": "bench", "shard": 0, "shards": 1,
        "tickers": tickers, "interval": "1s", "requestsPerHour": 100.0,
        "source": {"type": "yahoo-stream", "yahooStream": {"url": server.url()}},
        "sinks": {"redis": {"url": redis.url(), "channel": CHANNEL}}
    }))?;
    let client = redis::Client::open(redis.url())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.on_message();

    let worker = Worker::new(config, RunOptions::default(), None)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));

    let mut latencies: Vec<f64> = Vec::new();
    let warm_until = tokio::time::Instant::now() + warmup;
    let end = warm_until + measure;
    let mut first_tick = None;
    let mut last_tick = 0;
    loop {
        let msg = tokio::select! {
            m = messages.next() => m.context("the subscriber's connection closed")?,
            _ = tokio::time::sleep_until(end) => break,
        };
        let received = now_ns();
        let value: serde_json::Value = serde_json::from_slice(msg.get_payload_bytes())?;
        let volume = value["volume"].as_u64().context("a quote without volume")?;
        let Some(n) = Market::tick_of_volume(volume) else {
            continue;
        };
        if tokio::time::Instant::now() < warm_until {
            continue;
        }
        first_tick.get_or_insert(n);
        last_tick = last_tick.max(n);
        if let Some(sent) = server.market().sent_ns(n) {
            latencies.push((received - sent) as f64 / 1e6);
        }
    }
    stop.cancel();
    task.await??;
    latencies.sort_by(f64::total_cmp);
    let sent = first_tick.map_or(0, |f| last_tick - f + 1);
    Ok(Row {
        rate,
        sent,
        received: latencies.len(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    quotestream_runtime::install_crypto_provider();
    let args = Args::parse();
    let (warmup, measure) = if args.quick {
        (Duration::from_millis(300), Duration::from_secs(2))
    } else {
        (Duration::from_secs(1), Duration::from_secs(10))
    };
    let redis = RedisServer::start()?;
    let mut rows = Vec::new();
    for rate in [10_000.0, 50_000.0] {
        eprintln!("stream latency: {rate} ticks/s for {measure:?}");
        rows.push(run(&redis, rate, warmup, measure).await?);
    }
    println!("### Streaming source: vendor frame → Redis subscriber\n");
    println!(
        "One worker shard (yahoo-stream source, {TICKERS} tickers, Redis sink) streaming from the local Yahoo live-stream server at a paced tick rate; latency from the server's send time of each frame to the subscriber's receipt of the published quote ({}s per rate after a warm-up; server, worker and subscriber share the 2 cores).\n",
        measure.as_secs()
    );
    println!("| ticks/s | ticks sent | quotes received | p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            r.rate, r.sent, r.received, r.p50, r.p99, r.max
        );
    }
    println!();
    Ok(())
}
