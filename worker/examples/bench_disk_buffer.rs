//! The disk buffer's cost (`make bench`, row `row_disk_buffer`): throughput of each durable
//! sink with its disk buffer on versus off, side by side in one run, against real servers — a
//! throwaway PostgreSQL 15 (PostgreSQL's default durability, fsync on) and the storage
//! receiver (`quotestream_testkit::StorageReceiver`). A measurement, not a test: it prints a
//! markdown table and asserts nothing about speed.
//!
//! Each run pushes the same quotes through the pipeline-side queue as fast as it takes them and
//! times until the sink confirmed every one. Buffer on: each batch is encoded, appended to the
//! log (page cache, no fsync), read back, decoded and acknowledged as the sink confirms it.
//!
//! cargo run --release -p quotestream-worker --example bench_disk_buffer [-- --quick]

#[allow(dead_code)] // each harness uses part of it
mod bench_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bench_common::{median, pick, quick, thousands};
use jiff::Timestamp;
use quotestream_api::crd::{StorageSink as StorageSpec, WhenFull};
use quotestream_testkit::{Durability, PostgresServer, StorageReceiver};
use quotestream_worker::buffer::{DiskBuffer, DiskBufferConfig};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::queue::{self, FullPolicy};
use quotestream_worker::sinks::postgres::{PostgresConfig, PostgresSink};
use quotestream_worker::sinks::storage::{StorageConfig, StorageSink};
use quotestream_worker::sinks::{Batch, Sink, SinkContext, SinkError};
use tokio_util::sync::CancellationToken;

const TICKERS: usize = 500;
/// Quotes per pipeline batch (a poll cycle of a large shard).
const QUEUED: usize = 500;
/// Each queue's byte budget: the worker's default for a 128 Mi pod with one sink.
const QUEUE_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Postgres,
    Storage,
}

/// Runs one sink over `batches`, behind a disk buffer in `buffer_dir` when given; the time
/// until it confirmed every quote.
async fn run(
    which: Which,
    target: &str,
    batches: &[Batch],
    buffer_dir: Option<&std::path::Path>,
) -> anyhow::Result<Duration> {
    let total: usize = batches.iter().map(|b| b.len()).sum();
    let metrics = Metrics::new("bench", 0)?;
    let label = match which {
        Which::Postgres => "postgres",
        Which::Storage => "storage",
    };
    let (tx, rx) = queue::for_sink(&metrics, label, QUEUE_BYTES, FullPolicy::Block);
    let ctx = SinkContext {
        metrics: metrics.clone(),
        drain_deadline: Duration::from_secs(120),
        shutdown: CancellationToken::new(),
        acks: quotestream_worker::buffer::Acks::none(),
        status: Default::default(),
    };
    let buffer = buffer_dir
        .map(|dir| {
            let config = DiskBufferConfig {
                dir: dir.to_owned(),
                max_bytes: 1 << 30,
                when_full: WhenFull::Block,
            };
            DiskBuffer::open(&config, label, &metrics)
        })
        .transpose()?;
    let started = Instant::now();
    let task: tokio::task::JoinHandle<Result<(), SinkError>> = match which {
        Which::Postgres => {
            let sink = PostgresSink::new(PostgresConfig::new(
                Some(target.to_owned()),
                "quotes.real_time",
            )?);
            match buffer {
                Some(b) => tokio::spawn(b.run(rx, QUEUE_BYTES, ctx, |rx, ctx| sink.run(rx, ctx))),
                None => tokio::spawn(sink.run(rx, ctx)),
            }
        }
        Which::Storage => {
            let spec = StorageSpec {
                url: target.to_owned(),
                batch_size: 1000,
                buffer: None,
            };
            let config = StorageConfig::from_spec(&spec, &HashMap::new())
                .map_err(|e| anyhow::anyhow!("sinks.storage: {e}"))?;
            let sink = StorageSink::new(config)?;
            match buffer {
                Some(b) => tokio::spawn(b.run(rx, QUEUE_BYTES, ctx, |rx, ctx| sink.run(rx, ctx))),
                None => tokio::spawn(sink.run(rx, ctx)),
            }
        }
    };
    for b in batches {
        tx.send(b.clone()).await;
    }
    drop(tx);
    task.await??;
    let took = started.elapsed();
    let published = metrics.quotes_published.with_label_values(&[label]).get();
    ensure!(
        published == total as u64,
        "the {label} sink confirmed {published} of {total} quotes"
    );
    Ok(took)
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

    let pg = PostgresServer::start_with(Durability::Default).context("starting PostgreSQL")?;
    quotestream_worker::install_crypto_provider();
    let receiver = StorageReceiver::start()
        .await
        .context("starting the storage receiver")?;
    receiver.ledger().record = false;

    let mut rows = Vec::new();
    for which in [Which::Postgres, Which::Storage] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 1..=repeats {
            eprintln!("disk buffer: {which:?}, round {round}/{repeats}");
            // A fresh database (PostgreSQL) per run: every run inserts new rows, none a replay.
            let target = match which {
                Which::Postgres => pg.create_database(&format!("off{round}"))?,
                Which::Storage => receiver.url(),
            };
            off.push(n as f64 / run(which, &target, &batches, None).await?.as_secs_f64());
            let target = match which {
                Which::Postgres => pg.create_database(&format!("on{round}"))?,
                Which::Storage => receiver.url(),
            };
            let dir = tempfile::tempdir()?;
            on.push(
                n as f64
                    / run(which, &target, &batches, Some(dir.path()))
                        .await?
                        .as_secs_f64(),
            );
        }
        rows.push((which, off, on));
    }
    println!(
        "{n} quotes over {TICKERS} tickers in pipeline batches of {QUEUED}, pushed as fast as each sink takes them; timed until the sink confirmed every quote. Off: the memory queue alone. On: `buffer: {{type: disk}}` — every batch encoded, appended to the log (no fsync), read back, decoded, acknowledged once confirmed. PostgreSQL 15, fsync on, a fresh database per run; storage: the testkit receiver (axum, same process), batches of 1000. Median of {repeats} interleaved runs.{}{}\n",
        bench_common::build_note(),
        if quick() { " Quick mode." } else { "" }
    );
    println!("| sink | buffer off quotes/s | buffer on quotes/s | on ÷ off |");
    println!("|---|---:|---:|---:|");
    for (which, off, on) in rows {
        let (off, on) = (median(&off), median(&on));
        println!(
            "| {} | {} | {} | {:.2} |",
            match which {
                Which::Postgres => "postgres",
                Which::Storage => "storage",
            },
            thousands(off),
            thousands(on),
            on / off
        );
    }
    Ok(())
}
