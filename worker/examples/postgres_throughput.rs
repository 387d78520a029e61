//! Throughput of the PostgreSQL sink against a throwaway local server (PostgreSQL's default
//! durability, fsync on), next to a raw binary COPY of the same rows. A measurement, not a
//! test: it prints rows/s and asserts nothing.
//!
//! cargo run -p quotestream-worker --example postgres_throughput [--release] [-- <quotes> <batch rows>]

use std::time::{Duration, Instant};

use anyhow::Context;
use quotestream_testkit::{Durability, PostgresServer};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::queue::{self, FullPolicy};
use quotestream_worker::quote::{Quote, RawQuote, validate};
use quotestream_worker::sinks::postgres::{PostgresConfig, PostgresSink, connect_and_migrate};
use quotestream_worker::sinks::{Batch, Sink, SinkContext};
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

const TICKERS: usize = 500;
const T0: i64 = 1_768_919_415_123;

/// A ticker symbol for index `i` (AAA, AAB, …).
fn symbol(i: usize) -> String {
    let b = b'A';
    [i / 676 % 26, i / 26 % 26, i % 26]
        .iter()
        .map(|d| char::from(b + *d as u8))
        .collect()
}

fn quotes(total: usize, per_batch: usize) -> anyhow::Result<Vec<Batch>> {
    let symbols: Vec<String> = (0..TICKERS).map(symbol).collect();
    let now = jiff::Timestamp::now();
    let mut all = Vec::with_capacity(total);
    for i in 0..total {
        let price = 100.0 + (i % 997) as f64 / 10.0;
        all.push(validate(
            RawQuote {
                ticker: symbols[i % TICKERS].clone(),
                timestamp: jiff::Timestamp::from_millisecond(T0 + (i / TICKERS) as i64 * 1000)?,
                price,
                volume: (1000 * i) as f64,
                bid: Some(price - 0.01),
                ask: Some(price + 0.01),
                open: Some(price),
                high: Some(price + 1.0),
                low: Some(price - 1.0),
                source: "synthetic",
            },
            now,
        )?);
    }
    Ok(all
        .chunks(per_batch)
        .map(|c| Batch::from(c.to_vec()))
        .collect())
}

/// Pushes every batch through a sink and returns the time until it drained.
async fn through_sink(config: &PostgresConfig, batches: &[Batch]) -> anyhow::Result<Duration> {
    let session = connect_and_migrate(config).await?;
    let metrics = Metrics::new("bench", 0)?;
    let (tx, rx) = queue::for_sink(&metrics, "postgres", usize::MAX / 2, FullPolicy::Block);
    let ctx = SinkContext {
        metrics: metrics.clone(),
        drain_deadline: Duration::from_secs(60),
        shutdown: tokio_util::sync::CancellationToken::new(),
        status: Default::default(),
        acks: quotestream_worker::buffer::Acks::none(),
    };
    let started = Instant::now();
    let task = tokio::spawn(PostgresSink::with_session(config.clone(), session).run(rx, ctx));
    for b in batches {
        tx.send(b.clone()).await;
    }
    drop(tx);
    task.await??;
    let elapsed = started.elapsed();
    let published = metrics
        .quotes_published
        .with_label_values(&["postgres"])
        .get();
    let expected: usize = batches.iter().map(|b| b.len()).sum();
    anyhow::ensure!(
        published == expected as u64,
        "published {published} of {expected}"
    );
    Ok(elapsed)
}

/// Binary COPY straight into a keyed table like the sink's, one transaction per batch.
async fn raw_copy(dsn: &str, batches: &[Batch]) -> anyhow::Result<Duration> {
    let (mut client, conn) = tokio_postgres::connect(dsn, NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE quotes.raw_copy (LIKE quotes.real_time INCLUDING ALL)")
        .await?;
    let started = Instant::now();
    for b in batches {
        let tx = client.transaction().await?;
        let sink = tx
            .copy_in(
                "COPY quotes.raw_copy (symbol, \"timestamp\", price, volume, bid, ask, open, high, low, source) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &quotestream_db::COPY_TYPES));
        for q in b.iter() {
            let q: &Quote = q;
            let volume = i64::try_from(q.volume)?;
            w.as_mut()
                .write(&[
                    &q.ticker.as_str(),
                    &q.timestamp,
                    &q.price,
                    &volume,
                    &q.bid,
                    &q.ask,
                    &q.open,
                    &q.high,
                    &q.low,
                    &q.source,
                ])
                .await?;
        }
        w.finish().await?;
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

fn rate(rows: usize, d: Duration) -> String {
    format!(
        "{rows} rows in {:.3}s = {:.0} rows/s",
        d.as_secs_f64(),
        rows as f64 / d.as_secs_f64()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let per_batch: usize = args.next().map_or(Ok(5000), |a| a.parse())?;
    let server = PostgresServer::start_with(Durability::Default).context("starting PostgreSQL")?;
    let dsn = server.create_database("bench")?;
    let mut config = PostgresConfig::new(Some(dsn.clone()), "quotes.real_time")?;
    config.batch_rows = per_batch;
    let batches = quotes(total, per_batch)?;

    let sink = through_sink(&config, &batches).await?;
    let replay = through_sink(&config, &batches).await?;
    let copy = raw_copy(&dsn, &batches).await?;
    let stored = server.psql("bench", "SELECT count(*) FROM quotes.real_time")?;
    println!("batches of {per_batch} rows, {TICKERS} tickers, fsync on; table holds {stored} rows");
    println!(
        "sink (COPY to stage + INSERT … ON CONFLICT): {}",
        rate(total, sink)
    );
    println!(
        "sink replay (every row a conflict):          {}",
        rate(total, replay)
    );
    println!(
        "raw binary COPY into a keyed table:          {}",
        rate(total, copy)
    );
    println!(
        "sink / raw COPY: {:.2}",
        copy.as_secs_f64() / sink.as_secs_f64()
    );
    Ok(())
}
