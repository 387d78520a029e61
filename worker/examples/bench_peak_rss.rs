//! The peak-memory row of `make bench`: the seeds' job — a recording replayed as fast as it goes
//! through validation → Redis PUBLISH → idempotent PostgreSQL insert — done by the real
//! `quotestream-worker run` process and by a Python peer in the seeds' stack
//! (scripts/bench/replay_peer.py), side by side against the same throwaway redis-server and
//! PostgreSQL, for recordings of 100 000 and 1 000 000 quotes over 500 tickers. Peak RSS is the
//! kernel's high-water mark (`VmHWM`) of each process. A measurement, not a test: it prints a
//! markdown table.
//!
//! cargo build --release -p quotestream-worker --bins --examples &&
//! BENCH_PYTHON=… target/release/examples/bench_peak_rss [--quick]

#[allow(dead_code)] // each harness uses part of it
mod bench_common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bench_common::{pick, quick, thousands};
use quotestream_api::contract::env::{DATABASE_URL, REPLAY_FILE};
use quotestream_api::worker_config::{DEFAULT_MEMORY_LIMIT_BYTES, queue_bytes_per_sink};
use quotestream_testkit::{
    Durability, Guarded, PostgresServer, RedisServer, free_port, http_get, metric_sum,
};
use quotestream_worker::quote::wire::RedisQuote;
use quotestream_worker::sinks::postgres::{PostgresConfig, connect_and_migrate};
use serde_json::json;

const TICKERS: usize = 500;
const CHANNEL: &str = "quotes.realtime";
const TABLE: &str = "quotes.real_time";
/// Longest a run may take before the harness gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// `n` contract 004 quotes over [`TICKERS`] tickers (one per ticker per second), one JSON per
/// line, in time order: what a replay ConfigMap holds. Returns the file's size.
fn write_recording(path: &Path, n: usize) -> anyhow::Result<u64> {
    let symbols = bench_common::symbols(TICKERS);
    let now = jiff::Timestamp::now();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for seq in 0..n {
        let q = bench_common::quote(&symbols, seq, now)?;
        serde_json::to_writer(&mut out, &RedisQuote::from(&q))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// The kernel's peak resident set of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

/// What one pipeline did with one recording.
#[derive(Debug, Clone, Copy)]
struct Run {
    peak_kib: u64,
    seconds: f64,
    stored: u64,
}

/// A fresh database with the worker's schema; returns its DSN.
async fn fresh_database(pg: &PostgresServer, name: &str) -> anyhow::Result<String> {
    let dsn = pg.create_database(name)?;
    connect_and_migrate(&PostgresConfig::new(Some(dsn.clone()), TABLE)?)
        .await
        .context("migrating the benchmark database")?;
    Ok(dsn)
}

fn stored(pg: &PostgresServer, database: &str) -> anyhow::Result<u64> {
    Ok(pg
        .psql(database, &format!("SELECT count(*) FROM {TABLE}"))?
        .trim()
        .parse()?)
}

/// The worker as a shard Deployment runs it, with the queue budget the operator writes for the
/// default 128Mi pod with these two sinks; timed from its start to the last quote stored (and
/// published or counted by Redis).
async fn worker_run(
    pg: &PostgresServer,
    redis: &RedisServer,
    recording: &Path,
    n: usize,
    database: &str,
    dir: &Path,
) -> anyhow::Result<Run> {
    let dsn = fresh_database(pg, database).await?;
    let config = dir.join("worker.json");
    std::fs::write(
        &config,
        json!({
            "namespace": "bench", "stream": "rss", "shard": 0, "shards": 1,
            "tickers": bench_common::symbols(TICKERS), "interval": "1s", "requestsPerHour": 100.0,
            "source": {"type": "replay", "replay": {"configMapKeyRef": {"name": "rec", "key": "quotes.ndjson"}, "speedPercent": 0}},
            "sinks": {
                "redis": {"url": redis.url(), "channel": CHANNEL},
                "postgres": {"dsnSecretRef": {"name": "pg", "key": "dsn"}, "table": TABLE}
            },
            "queueBytes": queue_bytes_per_sink(DEFAULT_MEMORY_LIMIT_BYTES, 2)
        })
        .to_string(),
    )?;
    let port = free_port()?;
    let mut cmd = Command::new(bench_common::worker_binary()?);
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env(REPLAY_FILE, recording)
        .env(DATABASE_URL, &dsn)
        .env("RUST_LOG", "warn");
    let log = dir.join(format!("{database}.log"));
    let started = Instant::now();
    let mut worker = Guarded::spawn_with_stop(cmd, &log, "TERM")?;
    let pid = worker.id().context("the worker has no pid")?;
    let count = |text: &str, name: &str, sink: &str| {
        metric_sum(text, name, &[("sink", sink)]).unwrap_or(0.0) as usize
    };
    loop {
        let text = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
            .await?
            .map(|(_, body)| body)
            .unwrap_or_default();
        let postgres = count(&text, "streamer_quotes_published_total", "postgres");
        let redis = count(&text, "streamer_quotes_published_total", "redis")
            + count(&text, "streamer_sink_dropped_quotes_total", "redis");
        if postgres >= n && redis >= n {
            break;
        }
        ensure!(
            !worker.exited() && started.elapsed() < RUN_LIMIT,
            "the worker stopped or took over {RUN_LIMIT:?} ({postgres} of {n} stored); its log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = peak_rss_kib(pid)?;
    drop(worker);
    Ok(Run {
        peak_kib,
        seconds,
        stored: stored(pg, database)?,
    })
}

/// The Python peer on the same recording, into its own fresh database.
async fn python_run(
    pg: &PostgresServer,
    redis: &RedisServer,
    recording: &Path,
    database: &str,
) -> anyhow::Result<Run> {
    let dsn = fresh_database(pg, database).await?;
    let args = [
        "--file".to_owned(),
        recording.display().to_string(),
        "--redis-url".into(),
        redis.url(),
        "--channel".into(),
        CHANNEL.into(),
        "--dsn".into(),
        dsn,
        "--table".into(),
        TABLE.into(),
        "--batch".into(),
        TICKERS.to_string(),
    ];
    let v = bench_common::run_python("replay_peer.py", &args).await?;
    Ok(Run {
        peak_kib: v["peak_rss_kib"].as_u64().context("no peak_rss_kib")?,
        seconds: v["seconds"].as_f64().context("no seconds")?,
        stored: stored(pg, database)?,
    })
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench_common::warn_if_debug();
    let sizes = pick(vec![100_000, 1_000_000], vec![5_000, 20_000]);
    let redis = RedisServer::start().context("starting redis-server")?;
    let pg = PostgresServer::start_with(Durability::Default).context("starting PostgreSQL")?;
    let dir = tempfile::Builder::new().prefix("bench-rss-").tempdir()?;

    let mut rows = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let recording = dir.path().join(format!("quotes-{n}.ndjson"));
        let bytes = write_recording(&recording, n)?;
        eprintln!("peak rss: {n} quotes, the worker ...");
        let rust = worker_run(&pg, &redis, &recording, n, &format!("rust_{i}"), dir.path()).await?;
        // The peer streams the file too, so its memory does not grow with it either; it runs
        // the first recording only, which keeps the row within minutes (it does a few thousand
        // quotes a second).
        let python = if i == 0 {
            eprintln!("peak rss: {n} quotes, Python ...");
            Some(python_run(&pg, &redis, &recording, &format!("python_{i}")).await?)
        } else {
            None
        };
        std::fs::remove_file(&recording)?;
        for (run, name) in [
            (Some(rust), "quotestream-worker run"),
            (python, "Python peer"),
        ] {
            if let Some(run) = run {
                ensure!(
                    run.stored == n as u64,
                    "{name} stored {} rows of {n}",
                    run.stored
                );
            }
        }
        rows.push((n, bytes, rust, python));
    }

    let budget = queue_bytes_per_sink(DEFAULT_MEMORY_LIMIT_BYTES, 2);
    println!(
        "The seeds' job at full speed: an NDJSON recording of contract 004 quotes over {TICKERS} tickers, each validated, PUBLISHed to Redis (`{CHANNEL}`, no subscriber) and inserted idempotently into PostgreSQL (`{TABLE}`, fsync on, a fresh database per run), both servers throwaway local ones started by the harness. quotestream: the `quotestream-worker run` process of this build (replay source at `speedPercent: 0`, streamed; Redis + PostgreSQL sinks; `queueBytes` {} MiB per sink, what the operator writes for the default 128Mi pod with these two sinks), timed from its start to the last quote stored. Python (scripts/bench/replay_peer.py): reads the same file line by line, pydantic v2 validation, redis-py one PUBLISH per quote, psycopg `executemany` INSERT … ON CONFLICT DO NOTHING per {TICKERS} quotes (the seeds' way); it runs the first recording only (it streams the file too, and at its pace the larger one would take the row past its budget of minutes). Peak RSS = the kernel's `VmHWM` of each process (MB = 10^6 bytes); one run each. Goal: ≤ 32 MB for the worker, flat in the size of the recording.{}{}\n",
        budget >> 20,
        bench_common::build_note(),
        if quick() { " Quick mode." } else { "" }
    );
    println!("| recording | pipeline | peak RSS | time | quotes/s | rows stored |");
    println!("|---|---|---:|---:|---:|---:|");
    for (n, bytes, rust, python) in rows {
        let label = format!(
            "{} quotes ({:.0} MB)",
            thousands(n as f64),
            bytes as f64 / 1e6
        );
        for (run, name) in [(Some(rust), "quotestream-worker"), (python, "Python peer")] {
            let Some(run) = run else { continue };
            println!(
                "| {label} | {name} | {} | {:.1} s | {} | {} |",
                mb(run.peak_kib),
                run.seconds,
                thousands(n as f64 / run.seconds),
                thousands(run.stored as f64)
            );
        }
    }
    drop(redis);
    drop(pg);
    Ok(())
}
