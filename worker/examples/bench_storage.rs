//! The storage part of `make bench`: quotes/s of the storage sink posting to a local storage
//! API receiver (POST /quotes/batch, contract 001, `quotestream_testkit::StorageReceiver`), at
//! batch sizes 100, 500 and 1000, next to a bare HTTP client posting the same bodies. A
//! measurement, not a test: it prints a markdown table and asserts nothing about speed.
//!
//! cargo run --release -p quotestream-worker --example bench_storage [-- --quick]

#[allow(dead_code)] // each harness uses part of it
mod bench_common;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bench_common::{median, pick, quick, thousands};
use bytes::Bytes;
use jiff::Timestamp;
use quotestream_api::crd::StorageSink as StorageSpec;
use quotestream_testkit::StorageReceiver;
use quotestream_worker::metrics::Metrics;
use quotestream_worker::queue::{self, FullPolicy};
use quotestream_worker::quote::wire::StorageBatch;
use quotestream_worker::sinks::storage::{StorageConfig, StorageSink};
use quotestream_worker::sinks::{Batch, Sink, SinkContext};
use tokio_util::sync::CancellationToken;

const TICKERS: usize = 500;
const BATCH_SIZES: [usize; 3] = [100, 500, 1000];
/// Quotes per queued batch (what a source delivers at once).
const QUEUED: usize = 1000;

fn sink_config(url: &str, batch_size: usize) -> anyhow::Result<StorageConfig> {
    let spec = StorageSpec {
        url: url.into(),
        batch_size: i32::try_from(batch_size)?,
        buffer: None,
    };
    StorageConfig::from_spec(&spec, &std::collections::HashMap::new())
        .map_err(|e| anyhow::anyhow!("sinks.storage: {e}"))
}

/// The sink with its queue pre-filled with every quote, timed until it has had every batch
/// accepted and returned (the queue is closed, so it drains and stops).
async fn run_sink(url: &str, batch_size: usize, batches: &[Batch]) -> anyhow::Result<Duration> {
    let total: usize = batches.iter().map(|b| b.len()).sum();
    let metrics = Metrics::new("bench", 0)?;
    let budget = quotestream_worker::footprint::budget_for_quotes(total);
    let (tx, rx) = queue::for_sink(&metrics, "storage", budget, FullPolicy::Block);
    for b in batches {
        tx.send(b.clone()).await;
    }
    drop(tx);
    let sink = StorageSink::new(sink_config(url, batch_size)?)?;
    let ctx = SinkContext {
        metrics: metrics.clone(),
        drain_deadline: Duration::from_secs(60),
        shutdown: CancellationToken::new(),
        status: Default::default(),
        acks: quotestream_worker::buffer::Acks::none(),
    };
    let started = Instant::now();
    sink.run(rx, ctx).await?;
    let took = started.elapsed();
    let published = metrics
        .quotes_published
        .with_label_values(&["storage"])
        .get();
    ensure!(
        published == total as u64,
        "the storage sink delivered {published} of {total} quotes"
    );
    Ok(took)
}

/// A bare reqwest client posting the same bodies, encoded beforehand, one request at a time
/// like the sink: the ceiling the receiver allows.
async fn run_client(url: &str, bodies: &[Bytes]) -> anyhow::Result<Duration> {
    quotestream_worker::install_crypto_provider();
    let http = reqwest::Client::new();
    let endpoint = format!("{url}/quotes/batch");
    let started = Instant::now();
    for (i, body) in bodies.iter().enumerate() {
        let r = http
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("{:016x}", i as u64 | 1 << 60))
            .body(body.clone())
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "the receiver answered {}",
            r.status()
        );
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench_common::warn_if_debug();
    let n: usize = pick(200_000, 20_000);
    let repeats = pick(3, 1);
    let symbols = bench_common::symbols(TICKERS);
    let now = Timestamp::now();
    let quotes = (0..n)
        .map(|seq| bench_common::quote(&symbols, seq, now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let batches: Vec<Batch> = quotes.chunks(QUEUED).map(Batch::from).collect();

    let receiver = StorageReceiver::start()
        .await
        .context("starting the storage receiver")?;
    receiver.ledger().record = false;
    let url = receiver.url();

    let mut rows = Vec::new();
    for size in BATCH_SIZES {
        let (parts, _) = StorageBatch::split(&quotes, size);
        let bodies = parts
            .iter()
            .map(|b| serde_json::to_vec(b).map(Bytes::from))
            .collect::<serde_json::Result<Vec<_>>>()?;
        let mean_body = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len().max(1);
        let (mut sink, mut client) = (Vec::new(), Vec::new());
        for round in 1..=repeats {
            eprintln!("storage: batch size {size}, round {round}/{repeats}");
            sink.push(n as f64 / run_sink(&url, size, &batches).await?.as_secs_f64());
            client.push(n as f64 / run_client(&url, &bodies).await?.as_secs_f64());
        }
        rows.push((size, mean_body, sink, client));
    }
    println!(
        "{n} quotes over {TICKERS} tickers, queued in batches of {QUEUED}; the receiver (axum, same process, one runtime) parses every body and checks INV-001..007 on every quote. Sink: its queue is filled first, then `StorageSink::run` is timed until every batch was answered 200 (split into contract batches, JSON encoding, Idempotency-Key hash, one request in flight, metrics). Client: reqwest posting the same bodies, encoded beforehand, one at a time. Median of {repeats} interleaved runs.{}{}\n",
        bench_common::build_note(),
        if quick() { " Quick mode." } else { "" }
    );
    println!(
        "| batch size | body bytes (mean) | sink quotes/s (median) | sink runs | client quotes/s (median) | sink ÷ client | sink requests/s |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|");
    for (size, body, sink, client) in rows {
        let (s, c) = (median(&sink), median(&client));
        println!(
            "| {size} | {} | {} | {} | {} | {:.2} | {} |",
            thousands(body as f64),
            thousands(s),
            sink.iter()
                .map(|r| thousands(*r))
                .collect::<Vec<_>>()
                .join(" / "),
            thousands(c),
            s / c,
            thousands(s / size as f64)
        );
    }
    Ok(())
}
