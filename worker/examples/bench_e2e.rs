//! The end-to-end part of `make bench`: whole workers (synthetic source → validation → Redis,
//! and → Redis + PostgreSQL) for 1 and 4 shards against throwaway local servers, in quotes/s
//! and CPU seconds per 100 000 quotes, next to a Python pipeline in the seeds' stack (pydantic
//! v2 + redis-py + psycopg, scripts/bench/e2e_pipeline.py) against the same servers in the same
//! run. A measurement, not a test: it prints markdown tables.
//!
//! BENCH_PYTHON=… cargo run --release -p quotestream-worker --example bench_e2e [-- --quick]

#[allow(dead_code)] // each harness uses part of it
mod bench_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_common::{median, pick, quick, thousands};
use quotestream_api::WorkerConfig;
use quotestream_api::contract::env::DATABASE_URL;
use quotestream_testkit::{Durability, PostgresServer, RedisServer};
use quotestream_worker::assembly::{RunOptions, Worker};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::process_stats::cpu_seconds;
use quotestream_worker::sinks::postgres::{PostgresConfig, connect_and_migrate};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Tickers of the stream, split over the shards.
const TICKERS: usize = 5_000;
const CHANNEL: &str = "quotes.realtime";
const TABLE: &str = "quotes.real_time";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sinks {
    Redis,
    RedisPostgres,
}

impl Sinks {
    fn label(self) -> &'static str {
        match self {
            Self::Redis => "Redis",
            Self::RedisPostgres => "Redis + PostgreSQL",
        }
    }
}

/// One measured window.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Quotes per second that reached every sink of the row.
    rate: f64,
    /// CPU seconds (user + system) of the process doing the work, per 100 000 such quotes.
    cpu_per_100k: f64,
    /// Quotes the Redis sink dropped in the window (best effort behind a durable sink).
    redis_dropped: u64,
}

/// The contract's `quotes.real_time` in a fresh database; returns its DSN.
async fn fresh_database(pg: &PostgresServer, name: &str) -> anyhow::Result<String> {
    let dsn = pg.create_database(name)?;
    connect_and_migrate(&PostgresConfig::new(Some(dsn.clone()), TABLE)?)
        .await
        .context("migrating the benchmark database")?;
    Ok(dsn)
}

fn counter(metrics: &[Metrics], sink: &str) -> u64 {
    metrics
        .iter()
        .map(|m| m.quotes_published.with_label_values(&[sink]).get())
        .sum()
}

fn redis_dropped(metrics: &[Metrics]) -> u64 {
    metrics
        .iter()
        .flat_map(|m| {
            ["queue_full", "unavailable"]
                .map(|r| m.dropped_quotes.with_label_values(&["redis", r]).get())
        })
        .sum()
}

/// `shards` workers in this process, each with the synthetic source ticking every millisecond
/// (so the offered load is far above what the sinks take: the source is held back by the
/// pipeline's back-pressure and the rate is the sinks' own). Counts what the sinks confirmed
/// and this process's CPU time over `window`, after `warmup`.
async fn rust_run(
    redis_url: &str,
    dsn: Option<&str>,
    shards: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Sample> {
    let symbols = bench_common::symbols(TICKERS);
    let per_shard = TICKERS.div_ceil(shards);
    let stop = CancellationToken::new();
    let mut metrics = Vec::new();
    let mut tasks = Vec::new();
    for (shard, tickers) in symbols.chunks(per_shard).enumerate() {
        let mut sinks = json!({"redis": {"url": redis_url, "channel": CHANNEL}});
        if dsn.is_some() {
            sinks["postgres"] =
                json!({"dsnSecretRef": {"name": "pg", "key": "dsn"}, "table": TABLE});
        }
        let config: WorkerConfig = serde_json::from_value(json!({
            "namespace": "bench", "stream": "e2e", "shard": shard, "shards": shards,
            "tickers": tickers, "interval": "1ms", "requestsPerHour": 3600.0,
            "source": {"type": "synthetic", "synthetic": {"seed": 7}},
            "sinks": sinks,
        }))?;
        let env: HashMap<String, String> = dsn
            .map(|d| HashMap::from([(DATABASE_URL.to_owned(), d.to_owned())]))
            .unwrap_or_default();
        let worker = Worker::new(
            config,
            RunOptions {
                env,
                ..RunOptions::default()
            },
            None,
        )?;
        metrics.push(worker.metrics().clone());
        tasks.push(tokio::spawn(worker.run(stop.clone())));
    }
    let done_sink = if dsn.is_some() { "postgres" } else { "redis" };
    // Start-up (connections, migrations) is not measured: the warm-up starts with the first
    // quote confirmed.
    let first_deadline = Instant::now() + Duration::from_secs(30);
    while counter(&metrics, done_sink) == 0 {
        if Instant::now() > first_deadline {
            bail!("no quote reached {done_sink} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(warmup).await;
    let (count0, dropped0, cpu0) = (
        counter(&metrics, done_sink),
        redis_dropped(&metrics),
        cpu_seconds().context("reading /proc/self/stat")?,
    );
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let (count1, dropped1, cpu1) = (
        counter(&metrics, done_sink),
        redis_dropped(&metrics),
        cpu_seconds().context("reading /proc/self/stat")?,
    );
    let took = started.elapsed();
    stop.cancel();
    for t in tasks {
        t.await??;
    }
    let quotes = (count1 - count0) as f64;
    Ok(Sample {
        rate: quotes / took.as_secs_f64(),
        cpu_per_100k: (cpu1 - cpu0) / quotes * 100_000.0,
        redis_dropped: dropped1 - dropped0,
    })
}

/// The Python pipeline on `quotes` quotes: (quotes/s, CPU s per 100k).
async fn python_run(
    redis_url: &str,
    dsn: Option<&str>,
    style: &str,
    quotes: usize,
) -> anyhow::Result<Sample> {
    let mut args = vec![
        "--redis-url".to_owned(),
        redis_url.to_owned(),
        "--channel".into(),
        CHANNEL.into(),
        "--tickers".into(),
        TICKERS.to_string(),
        "--quotes".into(),
        quotes.to_string(),
        "--style".into(),
        style.into(),
    ];
    if let Some(dsn) = dsn {
        args.extend([
            "--dsn".into(),
            dsn.to_owned(),
            "--table".into(),
            TABLE.into(),
        ]);
    }
    let v = bench_common::run_python("e2e_pipeline.py", &args).await?;
    let seconds = v["seconds"].as_f64().context("no seconds")?;
    let cpu = v["cpu_seconds"].as_f64().context("no cpu_seconds")?;
    let done = v["quotes"].as_f64().context("no quotes")?;
    Ok(Sample {
        rate: done / seconds,
        cpu_per_100k: cpu / done * 100_000.0,
        redis_dropped: 0,
    })
}

/// A ratio: one decimal below 100 (so 19.8× does not read as 20×), none above.
fn times(ratio: f64) -> String {
    if ratio < 100.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.0}×")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pipeline {
    Rust(usize),
    Python(&'static str),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench_common::warn_if_debug();
    let warmup = Duration::from_millis(pick(1_000, 100));
    let window = Duration::from_millis(pick(5_000, 300));
    let repeats = pick(3, 1);
    // Python runs a fixed number of quotes: about as long as a Rust window.
    let python_quotes = |style: &str, sinks: Sinks| match (style, sinks) {
        ("seed", Sinks::Redis) => pick(20_000, 1_000),
        ("seed", Sinks::RedisPostgres) => pick(20_000, 1_000),
        (_, Sinks::Redis) => pick(200_000, 5_000),
        (_, Sinks::RedisPostgres) => pick(100_000, 5_000),
    };

    let redis = RedisServer::start().context("starting redis-server")?;
    let pg = PostgresServer::start_with(Durability::Default).context("starting PostgreSQL")?;
    let url = redis.url();

    let pipelines = [
        Pipeline::Rust(1),
        Pipeline::Rust(4),
        Pipeline::Python("seed"),
        Pipeline::Python("tuned"),
    ];
    let mut results: HashMap<(Pipeline, Sinks), Vec<Sample>> = HashMap::new();
    let mut db = 0;
    // Rounds of every configuration: drift on a shared machine spreads over all rows.
    for round in 1..=repeats {
        for sinks in [Sinks::Redis, Sinks::RedisPostgres] {
            for p in pipelines {
                eprintln!("e2e round {round}/{repeats}: {p:?} → {}", sinks.label());
                let dsn = match sinks {
                    Sinks::Redis => None,
                    Sinks::RedisPostgres => {
                        db += 1;
                        Some(fresh_database(&pg, &format!("e2e_{db}")).await?)
                    }
                };
                let sample = match p {
                    Pipeline::Rust(shards) => {
                        rust_run(&url, dsn.as_deref(), shards, warmup, window).await?
                    }
                    Pipeline::Python(style) => {
                        python_run(&url, dsn.as_deref(), style, python_quotes(style, sinks)).await?
                    }
                };
                results.entry((p, sinks)).or_default().push(sample);
            }
        }
    }

    println!(
        "{TICKERS} tickers; Redis (no subscriber) and PostgreSQL (`{TABLE}`, fsync on, a fresh database per run) are throwaway local servers sharing the machine's cores with the pipelines. quotestream: whole `assembly::Worker`s in this process (synthetic source ticking every 1 ms, so the offered load is far above what the sinks take and back-pressure sets the pace → pipeline validation → Redis sink, and PostgreSQL sink when present), {} s window after a {} ms warm-up that starts with the first quote confirmed; 4 shards = 4 workers of {} tickers on the same 2-core runtime. Python (scripts/bench/e2e_pipeline.py, one process): the same quotes pre-built as dicts (not timed), validated with a pydantic v2 model of the contract, then sent; `seed` = the seeds' way (one PUBLISH per quote with redis-py, psycopg `executemany` INSERT … ON CONFLICT per batch of {TICKERS}); `tuned` = the same libraries used well (redis-py pipelines of 1000, psycopg COPY into a staging table + INSERT … ON CONFLICT per 5000, like the Rust sink). quotes/s = quotes confirmed by every sink of the row; CPU = user + system seconds of the pipeline's own process (not Redis's or PostgreSQL's) per 100 000 quotes. Median of {repeats} interleaved runs. Targets (against the seeds' way): ≥ 50× to Redis alone, ≥ 20× with PostgreSQL in the path.{}{}\n",
        window.as_secs_f64(),
        warmup.as_millis(),
        TICKERS / 4,
        bench_common::build_note(),
        if quick() { " Quick mode." } else { "" }
    );
    println!(
        "| sinks | pipeline | quotes/s (median) | runs | CPU s per 100k quotes | ÷ Python seed (quotes/s) | ÷ Python tuned (quotes/s) | Python seed CPU ÷ this CPU |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|");
    for sinks in [Sinks::Redis, Sinks::RedisPostgres] {
        let rate = |p: Pipeline| {
            results.get(&(p, sinks)).map_or(f64::NAN, |s| {
                median(&s.iter().map(|x| x.rate).collect::<Vec<_>>())
            })
        };
        let cpu = |p: Pipeline| {
            results.get(&(p, sinks)).map_or(f64::NAN, |s| {
                median(&s.iter().map(|x| x.cpu_per_100k).collect::<Vec<_>>())
            })
        };
        let (seed_rate, tuned_rate, seed_cpu) = (
            rate(Pipeline::Python("seed")),
            rate(Pipeline::Python("tuned")),
            cpu(Pipeline::Python("seed")),
        );
        for p in pipelines {
            let Some(samples) = results.get(&(p, sinks)) else {
                continue;
            };
            let name = match p {
                Pipeline::Rust(1) => "quotestream, 1 shard".to_owned(),
                Pipeline::Rust(n) => format!("quotestream, {n} shards"),
                Pipeline::Python(style) => format!("Python, {style}"),
            };
            let dropped: u64 = samples.iter().map(|s| s.redis_dropped).sum();
            let name = if dropped > 0 {
                format!("{name} (Redis dropped {dropped} behind PostgreSQL)")
            } else {
                name
            };
            let runs = samples
                .iter()
                .map(|s| thousands(s.rate))
                .collect::<Vec<_>>()
                .join(" / ");
            let (r, c) = (rate(p), cpu(p));
            let ratio = |base: f64| match p {
                Pipeline::Rust(_) => times(r / base),
                Pipeline::Python(_) => "—".into(),
            };
            println!(
                "| {} | {name} | {} | {runs} | {c:.3} | {} | {} | {} |",
                sinks.label(),
                thousands(r),
                ratio(seed_rate),
                ratio(tuned_rate),
                match p {
                    Pipeline::Rust(_) => times(seed_cpu / c),
                    Pipeline::Python(_) => "—".into(),
                }
            );
        }
    }
    drop(redis);
    drop(pg);
    Ok(())
}
