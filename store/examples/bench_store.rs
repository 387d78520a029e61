//! Ingest throughput of quotestream-store (POST /quotes/batch, batches of 1000, rollups on)
//! against a throwaway PostgreSQL (default durability, fsync on), next to the worker's direct
//! PostgreSQL writer (the same `PgSession::write` its sink calls per batch, without rollups)
//! on the same server and the seeds' way in Python (scripts/bench/store_peer.py: FastAPI +
//! pydantic + SQLAlchemy bulk insert), with the store's peak RSS. A measurement, not a test:
//! it prints a Markdown table and asserts nothing but that the rows arrived.
//!
//! cargo build --release -p quotestream-store --bins --examples
//! target/release/examples/bench_store [--quick]
//! (the Python peer runs when BENCH_PYTHON names an interpreter with its stack; scripts/bench.sh sets it)

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quotestream_db::{PostgresConfig, Row, connect_and_migrate};
use quotestream_testkit::{Durability, Guarded, PostgresServer, free_port, http_get, wait_until};

const BATCH: usize = 1000;
const TICKERS: usize = 500;
/// 2026-01-20T14:30:15.123Z
const T0: i64 = 1_768_919_415_123;
/// Concurrent requests (and, for the direct writer and the COPY limit, database connections)
/// on every side.
const CONCURRENCY: usize = 4;
/// The store's threads, and the Python peer's uvicorn worker processes: one per core.
const THREADS: usize = 2;
/// The store's database sessions (`--connections`; BENCH_STORE_CONNECTIONS overrides): fewer
/// than the requests in flight, so batches that arrive while both are busy share a commit
/// (group commit).
const STORE_CONNECTIONS: usize = 2;

fn symbol(i: usize) -> String {
    [i / 676 % 26, i / 26 % 26, i % 26]
        .iter()
        .map(|d| char::from(b'A' + *d as u8))
        .collect()
}

struct Quote {
    symbol: String,
    ms: i64,
    price: f64,
    volume: i64,
}

fn quotes(total: usize) -> Vec<Quote> {
    (0..total)
        .map(|i| Quote {
            symbol: symbol(i % TICKERS),
            // One quote per ticker per second: a minute bar gets 60 quotes per ticker.
            ms: T0 + (i / TICKERS) as i64 * 1000,
            price: 100.0 + (i % 997) as f64 / 10.0,
            volume: (1000 * (i / TICKERS)) as i64,
        })
        .collect()
}

fn bodies(quotes: &[Quote]) -> anyhow::Result<Vec<String>> {
    quotes
        .chunks(BATCH)
        .map(|c| {
            let list: Vec<serde_json::Value> = c
                .iter()
                .map(|q| {
                    let ts = jiff::Timestamp::from_millisecond(q.ms)?;
                    Ok(serde_json::json!({
                        "ticker": q.symbol,
                        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                        "close": q.price,
                        "open": q.price,
                        "high": q.price + 1.0,
                        "low": q.price - 1.0,
                        "volume": q.volume,
                        "source": "synthetic",
                    }))
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(serde_json::json!({ "quotes": list }).to_string())
        })
        .collect()
}

/// POSTs every body to `url` with [`CONCURRENCY`] requests in flight; returns the wall time.
async fn post_all(url: &str, bodies: Arc<Vec<String>>) -> anyhow::Result<Duration> {
    quotestream_runtime::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next, bodies, url) = (
            client.clone(),
            Arc::clone(&next),
            Arc::clone(&bodies),
            url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("{url} answered {}: {}", r.status(), r.text().await?);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// The worker's writer: `PgSession::write` of 1000-row batches on [`CONCURRENCY`] sessions.
async fn direct(
    dsn: &str,
    quotes: Arc<Vec<Quote>>,
) -> anyhow::Result<(Duration, Vec<quotestream_db::PgSession>)> {
    let config = PostgresConfig::new(Some(dsn.to_owned()), "quotes.real_time")?;
    let mut sessions = Vec::new();
    for _ in 0..CONCURRENCY {
        sessions.push(connect_and_migrate(&config).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let batches = quotes.len().div_ceil(BATCH);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut session in sessions {
        let (next, quotes) = (Arc::clone(&next), Arc::clone(&quotes));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    return Ok::<_, anyhow::Error>(session);
                }
                let rows = rows_of(&quotes[i * BATCH..((i + 1) * BATCH).min(quotes.len())])?;
                session.write(&rows).await?;
            }
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await??);
    }
    // The sessions stay open for the caller to read their backends' CPU.
    Ok((started.elapsed(), open))
}

/// The machine's limit for these rows: one binary COPY per batch straight into the same
/// table (migrated the same way), on [`CONCURRENCY`] connections, nothing else — no
/// conflict handling, no rollups, no HTTP. What PostgreSQL itself absorbs on these cores.
async fn copy_limit(dsn: &str, quotes: Arc<Vec<Quote>>) -> anyhow::Result<Duration> {
    let config = PostgresConfig::new(Some(dsn.to_owned()), "quotes.real_time")?;
    let mut sessions = Vec::new();
    for _ in 0..CONCURRENCY {
        let mut session = connect_and_migrate(&config).await?;
        let copy = session
            .client()
            .prepare(&format!(
                "COPY quotes.real_time ({}) FROM STDIN (FORMAT binary)",
                quotestream_db::schema::column_list()
            ))
            .await?;
        sessions.push((session, copy));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let batches = quotes.len().div_ceil(BATCH);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut session, copy) in sessions {
        let (next, quotes) = (Arc::clone(&next), Arc::clone(&quotes));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    return Ok::<(), anyhow::Error>(());
                }
                let rows = rows_of(&quotes[i * BATCH..((i + 1) * BATCH).min(quotes.len())])?;
                let tx = session.client().transaction().await?;
                quotestream_db::copy_rows(&tx, &copy, &rows).await?;
                tx.commit().await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

fn rows_of(chunk: &[Quote]) -> anyhow::Result<Vec<Row<'_>>> {
    chunk
        .iter()
        .map(|q| {
            Ok(Row {
                symbol: &q.symbol,
                timestamp: jiff::Timestamp::from_millisecond(q.ms)?,
                price: q.price,
                volume: q.volume,
                bid: None,
                ask: None,
                open: Some(q.price),
                high: Some(q.price + 1.0),
                low: Some(q.price - 1.0),
                source: "synthetic",
            })
        })
        .collect()
}

fn wait_ready(port: u16, mut exited: impl FnMut() -> bool, what: &str) -> anyhow::Result<()> {
    let ready = wait_until(Duration::from_secs(60), || {
        exited() || http_get(port, "/ready").is_some_and(|(c, _)| c == 200)
    });
    if !ready || exited() {
        bail!("{what} did not become ready");
    }
    Ok(())
}

/// Sum and count of a Prometheus histogram series (`name` with its labels, as exposed).
fn histogram(metrics: &str, name: &str) -> Option<(f64, f64)> {
    let value = |suffix: &str| -> Option<f64> {
        let (base, labels) = name.split_once('{').map_or((name, ""), |(b, l)| (b, l));
        let series = match labels {
            "" => format!("{base}{suffix} "),
            l => format!("{base}{suffix}{{{l} "),
        };
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))?
            .trim()
            .parse()
            .ok()
    };
    Some((value("_sum")?, value("_count")?))
}

/// The store's own account of where a batch's time went (its /metrics): mean milliseconds
/// per batch in each phase, and mean batches per commit.
fn phases(port: u16) -> anyhow::Result<String> {
    let (code, metrics) = http_get(port, "/metrics").context("GET /metrics of the store")?;
    if code != 200 {
        bail!("the store's /metrics answered {code}");
    }
    let mean_ms = |phase: &str| {
        histogram(
            &metrics,
            &format!("quotestore_ingest_phase_seconds{{phase=\"{phase}\"}}"),
        )
        .filter(|(_, n)| *n > 0.0)
        .map_or(f64::NAN, |(sum, n)| sum / n * 1000.0)
    };
    let per_group = histogram(&metrics, "quotestore_group_batches")
        .filter(|(_, n)| *n > 0.0)
        .map_or(f64::NAN, |(sum, n)| sum / n);
    Ok(format!(
        "parse (JSON + contract checks) {:.2} ms, wait (queued for a session) {:.2} ms, write (its group's transaction) {:.2} ms; {per_group:.2} batches per group (one commit each when all rows are new)",
        mean_ms("parse"),
        mean_ms("wait"),
        mean_ms("write"),
    ))
}

/// Peak resident set of a process, in MB (VmHWM).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU seconds (user + system) process `pid` has used so far (/proc/PID/stat; the kernel
/// counts in USER_HZ = 100 ticks per second on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Who used the machine's CPU during one side's run.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    /// The process under test when it is one (the store).
    server: f64,
    /// PostgreSQL sessions of the side's database writing quotes (ingest).
    ingest: f64,
    /// The store's rollup merger session.
    merger: f64,
    /// Every other PostgreSQL process (WAL writer, checkpointer, other sessions).
    postgres: f64,
    /// This harness (the HTTP client; for the direct writer, the writer itself).
    harness: f64,
}

/// A snapshot of CPU seconds by process, to subtract from a later one.
struct CpuProbe {
    postmaster: u32,
    server: Option<u32>,
    database: String,
    before: std::collections::HashMap<u32, f64>,
}

impl CpuProbe {
    fn start(pg: &PostgresServer, database: &str, server: Option<u32>) -> anyhow::Result<Self> {
        // The checkpointer lives as long as the server (a psql session's backend is gone by
        // the time its pid could be read); its parent is the postmaster.
        let checkpointer: u32 = pg
            .psql(
                "postgres",
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
            )?
            .parse()?;
        let stat = std::fs::read_to_string(format!("/proc/{checkpointer}/stat"))
            .context("reading the checkpointer's /proc entry")?;
        let postmaster = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .context("the postmaster of a backend")?
            .parse()?;
        let mut probe = Self {
            postmaster,
            server,
            database: database.to_owned(),
            before: Default::default(),
        };
        probe.before = probe.now();
        Ok(probe)
    }

    /// The server process and its children (uvicorn's worker processes).
    fn server_pids(&self) -> Vec<u32> {
        self.server
            .map(|s| std::iter::once(s).chain(children(s)).collect())
            .unwrap_or_default()
    }

    fn now(&self) -> std::collections::HashMap<u32, f64> {
        let mut pids = children(self.postmaster);
        pids.push(std::process::id());
        pids.extend(self.server_pids());
        pids.into_iter()
            .filter_map(|pid| Some((pid, cpu_seconds(pid)?)))
            .collect()
    }

    /// What each part used since [`CpuProbe::start`] (a session opened since counts whole).
    fn used(&self, pg: &PostgresServer) -> anyhow::Result<Cpu> {
        let roles = pg.psql(
            "postgres",
            &format!(
                "SELECT string_agg(pid || ':' || CASE WHEN application_name = '{}' THEN 'merger' ELSE 'ingest' END, ' ') \
                 FROM pg_stat_activity WHERE datname = '{}'",
                quotestream_store::server::MERGER_APPLICATION_NAME,
                self.database
            ),
        )?;
        let role: std::collections::HashMap<u32, &str> = roles
            .split_whitespace()
            .filter_map(|r| {
                let (pid, role) = r.split_once(':')?;
                Some((pid.parse().ok()?, role))
            })
            .collect();
        let mut cpu = Cpu::default();
        let server = self.server_pids();
        for (pid, now) in self.now() {
            let used = now - self.before.get(&pid).copied().unwrap_or(0.0);
            let slot = if server.contains(&pid) {
                &mut cpu.server
            } else if pid == std::process::id() {
                &mut cpu.harness
            } else {
                match role.get(&pid) {
                    Some(&"merger") => &mut cpu.merger,
                    Some(_) => &mut cpu.ingest,
                    None => &mut cpu.postgres,
                }
            };
            *slot += used;
        }
        Ok(cpu)
    }
}

fn count(pg: &PostgresServer, db: &str, sql: &str) -> anyhow::Result<u64> {
    Ok(pg.psql(db, sql)?.parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let store_connections: usize = match std::env::var("BENCH_STORE_CONNECTIONS") {
        Ok(n) => n
            .parse()
            .context("BENCH_STORE_CONNECTIONS must be a number")?,
        Err(_) => STORE_CONNECTIONS,
    };
    let total = if quick { 10_000 } else { 300_000 };
    let peer_total = if quick { 2_000 } else { 30_000 };
    let pg = PostgresServer::start_with(Durability::Default)?;
    let all = quotes(total);
    let bodies = Arc::new(bodies(&all)?);

    // quotestream-store, rollups on.
    let dsn = pg.create_database("store")?;
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .context("locating the target directory")?
        .join("quotestream-store");
    let port = free_port()?;
    let logs = tempfile::tempdir()?;
    let mut command = Command::new(&bin);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--connections", &store_connections.to_string()])
        .args(["--threads", &THREADS.to_string()])
        .env("DATABASE_URL", &dsn)
        .env("RUST_LOG", "warn");
    if !bin.is_file() {
        bail!("{} is missing: build it first", bin.display());
    }
    let mut store = Guarded::spawn_with_stop(command, &logs.path().join("store.log"), "TERM")?;
    let store_pid = store.id().context("the store's process id")?;
    wait_ready(port, || store.exited(), "quotestream-store")?;
    let store_started = Instant::now();
    let probe = CpuProbe::start(&pg, "store", Some(store_pid))?;
    let store_time = post_all(
        &format!("http://127.0.0.1:{port}/quotes/batch"),
        Arc::clone(&bodies),
    )
    .await?;
    let store_cpu = probe.used(&pg)?;
    let rss = peak_rss_mb(store_pid).unwrap_or(f64::NAN);
    let phases = phases(port)?;
    // The rollups are current once the merger has emptied the queue. A query that fails (a
    // store binary older than this harness has no such table) ends the wait at once.
    let queued = "SELECT count(*) FROM quotes.real_time_rollup_batches";
    count(&pg, "store", queued).with_context(|| {
        format!("reading the rollup queue ({queued}): is target/release/quotestream-store current? cargo build --release -p quotestream-store --bins --examples")
    })?;
    let current = wait_until(Duration::from_secs(600), || {
        count(&pg, "store", queued).ok() == Some(0)
    });
    let rollup_time = store_started.elapsed();
    if !current {
        bail!("the rollup queue did not empty within 10 minutes");
    }
    let stored = count(&pg, "store", "SELECT count(*) FROM quotes.real_time")?;
    let bars = count(
        &pg,
        "store",
        "SELECT sum(quotes) FROM quotes.real_time_bars_1m",
    )?;
    if stored != total as u64 || bars != total as u64 {
        bail!("the store holds {stored} rows and {bars} in its minute bars, not {total}");
    }
    // A replay of everything: inserts nothing, changes no bar.
    let replay_time = post_all(
        &format!("http://127.0.0.1:{port}/quotes/batch"),
        Arc::clone(&bodies),
    )
    .await?;
    drop(store);

    // The worker's direct writer, same server, same batches and connections.
    let dsn = pg.create_database("direct")?;
    let all = Arc::new(all);
    let probe = CpuProbe::start(&pg, "direct", None)?;
    let (direct_time, sessions) = direct(&dsn, Arc::clone(&all)).await?;
    let direct_cpu = probe.used(&pg)?;
    drop(sessions);
    let dsn = pg.create_database("limit")?;
    let limit_time = copy_limit(&dsn, Arc::clone(&all)).await?;

    // The Python peer, into the same table as the direct writer's (made by the migrations).
    let peer = match std::env::var("BENCH_PYTHON") {
        Ok(python) => {
            let dsn = pg.create_database("peer")?;
            connect_and_migrate(&PostgresConfig::new(Some(dsn.clone()), "quotes.real_time")?)
                .await?;
            let port = free_port()?;
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scripts/bench/store_peer.py");
            let mut command = Command::new(python);
            command
                .arg(script)
                .args([
                    "--port",
                    &port.to_string(),
                    "--workers",
                    &THREADS.to_string(),
                ])
                .env("STORE_PEER_DATABASE_URL", &dsn);
            // uvicorn with worker processes: SIGTERM makes it stop them.
            let mut child =
                Guarded::spawn_with_stop(command, &logs.path().join("store_peer.log"), "TERM")?;
            wait_ready(port, || child.exited(), "the Python peer")?;
            let subset = Arc::new(bodies[..peer_total / BATCH].to_vec());
            let probe = CpuProbe::start(&pg, "peer", child.id())?;
            let t = post_all(&format!("http://127.0.0.1:{port}/quotes/batch"), subset).await?;
            let cpu = probe.used(&pg)?;
            drop(child);
            let stored = count(&pg, "peer", "SELECT count(*) FROM quotes.real_time")?;
            if stored != peer_total as u64 {
                bail!("the Python peer stored {stored} rows, not {peer_total}");
            }
            Some((peer_total as f64 / t.as_secs_f64(), cpu, t))
        }
        Err(_) => None,
    };
    let peer_cpu = peer.map(|(_, cpu, t)| (cpu, t));
    let peer = peer.map(|(rate, _, _)| rate);

    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    let store_rate = rate(total, store_time);
    let direct_rate = rate(total, direct_time);
    let limit_rate = rate(total, limit_time);
    let settings = pg.psql(
        "postgres",
        "SELECT string_agg(name || '=' || setting || COALESCE(unit, ''), ', ' ORDER BY name) FROM pg_settings \
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers', 'max_wal_size', 'commit_delay')",
    )?;
    println!(
        "{total} quotes over {TICKERS} tickers in batches of {BATCH}, {CONCURRENCY} requests in flight on every side; the store with {THREADS} threads and {store_connections} database connections (group commit), the direct writer and the COPY limit with {CONCURRENCY} connections, the Python peer with {THREADS} uvicorn workers. One PostgreSQL {} server on this machine for all of them, its settings untouched by every contender ({settings}). Source: store/examples/bench_store.rs.\n",
        pg.psql("postgres", "SHOW server_version")?
    );
    println!("| path | quotes/s | vs store |");
    println!("|---|---:|---:|");
    println!(
        "| quotestream-store POST /quotes/batch (rows + rollup partials in one transaction) | {store_rate:.0} | 1.00× |"
    );
    println!(
        "| … until the rollups are current (the merger emptied its queue) | {:.0} | {:.2}× |",
        rate(total, rollup_time),
        rate(total, rollup_time) / store_rate
    );
    println!(
        "| same batches replayed (nothing inserted, no bar changed) | {:.0} | {:.2}× |",
        rate(total, replay_time),
        rate(total, replay_time) / store_rate
    );
    println!(
        "| the worker's direct PostgreSQL writer (PgSession::write, no HTTP, no rollups) | {direct_rate:.0} | {:.2}× |",
        direct_rate / store_rate
    );
    println!(
        "| the machine's limit: binary COPY straight into the table, nothing else | {limit_rate:.0} | {:.2}× |",
        limit_rate / store_rate
    );
    match peer {
        Some(p) => println!(
            "| Python peer, FastAPI + pydantic + SQLAlchemy bulk insert, no rollups ({peer_total} quotes) | {p:.0} | {:.3}× |",
            p / store_rate
        ),
        None => println!("| Python peer | not run (BENCH_PYTHON unset) | |"),
    }
    println!();
    println!(
        "Store vs the direct writer: {:.2}× (target ≥ 0.7×); vs the machine's COPY limit: {:.2}×. Store vs the Python peer: {}. Store peak RSS (VmHWM) during the run: {rss:.1} MB (target < 30 MB). The store's phases per batch (its /metrics): {phases}.",
        store_rate / direct_rate,
        store_rate / limit_rate,
        peer.map_or_else(
            || "not run".to_owned(),
            |p| format!("{:.1}× (target ≥ 20×)", store_rate / p)
        ),
    );
    println!();
    println!(
        "Where the CPU went (seconds of CPU, from /proc, while the batches were sent; the 2 cores give 2 s per second of wall time):\n"
    );
    println!(
        "| run | wall s | server process (store; Python peer with its workers) | PostgreSQL: writing sessions | PostgreSQL: rollup merger | PostgreSQL: other processes | harness (client / writer) | total CPU ÷ (2 × wall) | CPU per 1000 quotes, ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut runs = vec![
        ("quotestream-store", store_cpu, store_time, total),
        ("direct writer", direct_cpu, direct_time, total),
    ];
    if let Some((cpu, t)) = peer_cpu {
        runs.push(("Python peer", cpu, t, peer_total));
    }
    for (name, cpu, wall, quotes) in runs {
        let used = cpu.server + cpu.ingest + cpu.merger + cpu.postgres + cpu.harness;
        let wall = wall.as_secs_f64();
        println!(
            "| {name} | {wall:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            cpu.server,
            cpu.ingest,
            cpu.merger,
            cpu.postgres,
            cpu.harness,
            used / (2.0 * wall),
            used / quotes as f64 * 1000.0 * 1000.0,
        );
    }
    Ok(())
}
