//! Read latency and throughput of quotestream-store's query API (docs/query-api.md) on a
//! PostgreSQL holding `QUOTES` quotes over `SYMBOLS` symbols and two years (seeded in SQL, the
//! rollups built from scratch), loaded by wrk (closed loop, `CONNECTIONS` connections):
//! - `GET /v1/quotes/{symbol}` for one day, limit 1000;
//! - `GET /v1/bars/{symbol}?timeframe=1Day` over two years, next to the same bars computed
//!   from the raw quotes in SQL (the rollup's from-scratch query for one symbol);
//! - the same quotes query served by the seeds' stack (scripts/bench/query_peer.py: FastAPI +
//!   SQLAlchemy, as many uvicorn workers as the store has threads), when BENCH_PYTHON is set.
//!
//! A measurement, not a test: it prints a Markdown table (p50/p95/p99, requests/s, errors).
//!
//! cargo build --release -p quotestream-store --bins --examples
//! target/release/examples/bench_query [--quick]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quotestream_db::rollup;
use quotestream_db::{PostgresConfig, TableName};
use quotestream_store::query::params::{Sort, Timeframe};
use quotestream_testkit::{Durability, Guarded, PostgresServer, free_port, http_get, wait_until};

const CONNECTIONS: usize = 8;
const THREADS: usize = 2;
/// First quote: 2024-12-01T00:00:00Z; the two years end before the current month, so the
/// store's partition maintenance leaves the rows where they are.
const START_EPOCH: i64 = 1_733_011_200;
const DAYS: i64 = 730;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `/ready` on `port`; `exited` says whether the process has died meanwhile.
fn wait_ready(port: u16, mut exited: impl FnMut() -> bool, what: &str) -> anyhow::Result<()> {
    let ready = wait_until(Duration::from_secs(120), || {
        exited() || http_get(port, "/ready").is_some_and(|(c, _)| c == 200)
    });
    if !ready || exited() {
        bail!("{what} did not become ready");
    }
    Ok(())
}

/// The 3-letter symbol of index `i` (AAA, AAB, …), as the SQL seeding makes it.
fn symbol(i: usize) -> String {
    [i / 676 % 26, i / 26 % 26, i % 26]
        .iter()
        .map(|d| char::from(b'A' + *d as u8))
        .collect()
}

/// Fills the raw table with `per_symbol` quotes for each of `symbols` symbols, evenly over
/// [`DAYS`] days, then the rollups and the latest quotes from scratch.
fn seed(pg: &PostgresServer, db: &str, symbols: usize, per_symbol: usize) -> anyhow::Result<()> {
    let step = DAYS * 86_400 * 1_000_000 / per_symbol as i64; // microseconds
    pg.psql(
        db,
        &format!(
            "INSERT INTO quotes.real_time (symbol, \"timestamp\", price, volume, source) \
             SELECT chr(65 + s / 676 % 26) || chr(65 + s / 26 % 26) || chr(65 + s % 26), \
             to_timestamp({START_EPOCH}) + (i::bigint * {step}) * INTERVAL '1 microsecond', \
             100 + s % 50 + 10 * sin(i / 100.0), (i % 97) * 1000, 'synthetic' \
             FROM generate_series(0, {}) AS s, generate_series(0, {}) AS i",
            symbols - 1,
            per_symbol - 1
        ),
    )?;
    let t = TableName::parse("quotes.real_time")?;
    for (grain, _, _) in rollup::GRAINS {
        let select = rollup::from_scratch(&t, grain).context("a grain")?;
        pg.psql(
            db,
            &format!(
                "INSERT INTO {} ({}) {select}",
                rollup::bars(&t, grain),
                rollup::BAR_COLUMNS
            ),
        )?;
    }
    pg.psql(
        db,
        &format!(
            "INSERT INTO {} (symbol, \"timestamp\", price, volume, source) \
             SELECT DISTINCT ON (symbol) symbol, \"timestamp\", price, volume, source \
             FROM quotes.real_time ORDER BY symbol, \"timestamp\" DESC",
            rollup::latest(&t)
        ),
    )?;
    pg.psql(db, "VACUUM ANALYZE")?;
    Ok(())
}

/// What wrk measured.
struct Load {
    requests: u64,
    per_second: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    errors: u64,
}

const WRK_SCRIPT: &str = r#"
-- Paced rows: each connection waits WRK_DELAY_MS after every answer (wrk's delay hook).
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pause then delay = function() return pause end end
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"#;

/// The rate of the paced rows, requests/s: what the issue's latency targets are stated at.
const PACED_RATE: u64 = 200;

/// wrk against `port`, cycling through `paths`, for `secs`; `paced`: each of the
/// [`CONNECTIONS`] waits so that together they send about [`PACED_RATE`] requests/s (a little
/// less, by the answers' own latency; the row reports the rate reached).
fn wrk(port: u16, paths: &[String], secs: u64, paced: bool) -> anyhow::Result<Load> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("paths.lua");
    let list = dir.path().join("paths.txt");
    std::fs::write(&script, WRK_SCRIPT)?;
    std::fs::write(&list, paths.join("\n"))?;
    let mut command = Command::new("wrk");
    command
        .args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string()])
        .args(["-d", &format!("{secs}s"), "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .env("WRK_PATHS", &list);
    if paced {
        let delay_ms = CONNECTIONS as u64 * 1000 / PACED_RATE;
        command.env("WRK_DELAY_MS", delay_ms.to_string());
    }
    let out = command
        .output()
        .context("running wrk (make deps installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .with_context(|| format!("wrk printed no result: {text}"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [requests, duration_us, p50, p95, p99, errors] = v[..] else {
        bail!("unexpected wrk result {line}");
    };
    Ok(Load {
        requests,
        per_second: requests as f64 / (duration_us as f64 / 1e6),
        p50_ms: p50 as f64 / 1000.0,
        p95_ms: p95 as f64 / 1000.0,
        p99_ms: p99 as f64 / 1000.0,
        errors,
    })
}

fn row(what: &str, l: &Load) {
    println!(
        "| {what} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} |",
        l.p50_ms, l.p95_ms, l.p99_ms, l.per_second, l.requests, l.errors
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (symbols, per_symbol, secs, raw_runs) = if quick {
        (20, 2_000, 2, 5)
    } else {
        (500, 40_000, 10, 30)
    };
    let pg = PostgresServer::start_with(Durability::Default)?;
    let dsn = pg.create_database("query")?;
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .context("locating the target directory")?
        .join("quotestream-store");
    // Migrations first (the store's schema), then the data, then the store serves it.
    let status = Command::new(&bin)
        .args(["migrate", "--database-url", &dsn])
        .env("RUST_LOG", "warn")
        .status()
        .with_context(|| format!("running {} (build it first)", bin.display()))?;
    if !status.success() {
        bail!("quotestream-store migrate failed");
    }
    let seeding = Instant::now();
    seed(&pg, "query", symbols, per_symbol)?;
    let seeded = seeding.elapsed();
    let port = free_port()?;
    let mut store = Proc(
        Command::new(&bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--read-connections", &CONNECTIONS.to_string()])
            .env("DATABASE_URL", &dsn)
            .env("QUOTESTREAM_STORE_THREADS", THREADS.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_ready(
        port,
        || matches!(store.0.try_wait(), Ok(Some(_))),
        "quotestream-store",
    )?;

    // One day of quotes of a symbol, for days spread over the two years.
    let day = |k: usize| {
        let start = START_EPOCH + (k as i64 * 37 % (DAYS - 1)) * 86_400;
        let t = |s: i64| {
            jiff::Timestamp::from_second(s)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        (t(start), t(start + 86_400 - 1))
    };
    let quotes_paths: Vec<String> = (0..1000)
        .map(|k| {
            let (a, b) = day(k);
            format!(
                "/v1/quotes/{}?start={a}&end={b}&limit=1000",
                symbol(k % symbols)
            )
        })
        .collect();
    let end = jiff::Timestamp::from_second(START_EPOCH + DAYS * 86_400)?.to_string();
    let start = jiff::Timestamp::from_second(START_EPOCH)?.to_string();
    let bars_paths: Vec<String> = (0..symbols)
        .map(|k| {
            format!(
                "/v1/bars/{}?timeframe=1Day&start={start}&end={end}&limit=1000",
                symbol(k)
            )
        })
        .collect();
    // Sanity: the answers hold what was seeded.
    let (code, body) = http_get(port, &bars_paths[0]).context("GET bars")?;
    let bars: serde_json::Value = serde_json::from_str(&body)?;
    let n = bars["bars"].as_array().map_or(0, Vec::len);
    if code != 200 || n < DAYS as usize - 1 {
        bail!(
            "GET {} answered {code} with {n} bars: {body:.300}",
            bars_paths[0]
        );
    }

    // A short unreported run first, so that no row meets the cold caches a fresh seed leaves
    // (one run's first row measured a p95 of seconds); then closed loop, then paced.
    wrk(port, &quotes_paths, secs.min(3), false)?;
    wrk(port, &bars_paths, secs.min(3), false)?;
    let quotes_load = wrk(port, &quotes_paths, secs, false)?;
    let bars_load = wrk(port, &bars_paths, secs, false)?;
    let quotes_paced = wrk(port, &quotes_paths, secs, true)?;
    let bars_paced = wrk(port, &bars_paths, secs, true)?;

    // The same daily bars computed from the raw quotes, one symbol at a time.
    let config = PostgresConfig::new(Some(dsn.clone()), "quotes.real_time")?;
    let (pg_config, tls) = config.connect_parts();
    let (client, connection) = pg_config.connect(tls).await?;
    tokio::spawn(connection);
    let raw_sql = rollup::from_scratch(&TableName::parse("quotes.real_time")?, "1d")
        .context("1d")?
        .replace(
            "FROM \"quotes\".\"real_time\" GROUP BY",
            "FROM \"quotes\".\"real_time\" WHERE symbol = $1 AND \"timestamp\" >= $2 AND \"timestamp\" <= $3 GROUP BY",
        );
    let statement = client.prepare(&raw_sql).await?;
    let (from, to) = (
        jiff::Timestamp::from_second(START_EPOCH)?,
        jiff::Timestamp::from_second(START_EPOCH + DAYS * 86_400)?,
    );
    let mut raw_ms = Vec::new();
    for k in 0..raw_runs {
        let t = Instant::now();
        let rows = client
            .query(&statement, &[&symbol(k % symbols), &from, &to])
            .await?;
        raw_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if rows.len() < DAYS as usize - 1 {
            bail!("the raw computation gave {} bars", rows.len());
        }
    }
    raw_ms.sort_by(f64::total_cmp);
    // The API's own daily-bars statement, the same way (SQL alone, no HTTP).
    let api_sql = quotestream_store::query::sql::bars(
        &TableName::parse("quotes.real_time")?,
        Timeframe::Day1,
        true,
        Sort::Asc,
    );
    let api_statement = client.prepare(&api_sql).await?;
    let mut api_ms = Vec::new();
    for k in 0..raw_runs {
        let syms = vec![symbol(k % symbols)];
        let t = Instant::now();
        let rows = client
            .query(
                &api_statement,
                &[
                    &syms,
                    &from,
                    &to,
                    &from,
                    &to,
                    &String::new(),
                    &from,
                    &1001i64,
                ],
            )
            .await?;
        api_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if rows.len() < DAYS as usize - 1 {
            bail!("the rollup query gave {} bars", rows.len());
        }
    }
    api_ms.sort_by(f64::total_cmp);
    let peer = match std::env::var("BENCH_PYTHON") {
        Ok(python) => {
            let peer_port = free_port()?;
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scripts/bench/query_peer.py");
            let mut peer_command = Command::new(python);
            peer_command
                .arg(script)
                .args([
                    "--port",
                    &peer_port.to_string(),
                    "--workers",
                    &THREADS.to_string(),
                ])
                .env("QUERY_PEER_DATABASE_URL", &dsn);
            // uvicorn with worker processes: SIGTERM makes it stop them; a SIGKILL of the
            // supervisor alone would leave them running (holding the port and any pipe).
            let logs = tempfile::tempdir()?;
            let mut child = Guarded::spawn_with_stop(
                peer_command,
                &logs.path().join("query_peer.log"),
                "TERM",
            )?;
            wait_ready(peer_port, || child.exited(), "the Python peer")?;
            let (code, body) = http_get(peer_port, &quotes_paths[0]).context("GET the peer")?;
            if code != 200 {
                bail!("the Python peer answered {code}: {body:.300}");
            }
            Some(wrk(peer_port, &quotes_paths, secs, false)?)
        }
        Err(_) => None,
    };

    println!(
        "{} quotes over {symbols} symbols and {DAYS} days (seeded in SQL in {:.0} s, rollups from scratch); PostgreSQL {} (fsync on); the store with {THREADS} threads and {CONNECTIONS} read connections; wrk {THREADS} threads, {CONNECTIONS} connections, {secs} s per row: closed loop (each connection sends its next request when the answer comes: the most the store serves), or paced (each connection waits after every answer, about {PACED_RATE} requests/s together). Source: store/examples/bench_query.rs.\n",
        symbols * per_symbol,
        seeded.as_secs_f64(),
        pg.psql("postgres", "SHOW server_version")?
    );
    println!("| request | p50 ms | p95 ms | p99 ms | requests/s | requests | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    row(
        &format!(
            "quotestream-store `GET /v1/quotes/{{symbol}}` one day, limit 1000, paced at ~{PACED_RATE}/s"
        ),
        &quotes_paced,
    );
    row(
        &format!(
            "quotestream-store `GET /v1/bars/{{symbol}}?timeframe=1Day` over 2 years, paced at ~{PACED_RATE}/s"
        ),
        &bars_paced,
    );
    row(
        "quotestream-store `GET /v1/quotes/{symbol}` one day, limit 1000, closed loop",
        &quotes_load,
    );
    if let Some(p) = &peer {
        row("Python peer (FastAPI + SQLAlchemy) same query", p);
    }
    row(
        "quotestream-store `GET /v1/bars/{symbol}?timeframe=1Day` over 2 years (daily rollup), closed loop",
        &bars_load,
    );
    println!(
        "| the API's daily-bars SQL alone (the rollup), one query at a time ({raw_runs} runs) | {:.2} | {:.2} | {:.2} | | | |",
        percentile(&api_ms, 50.0),
        percentile(&api_ms, 95.0),
        percentile(&api_ms, 99.0)
    );
    println!(
        "| the same daily bars computed from the raw quotes in SQL, one query at a time ({raw_runs} runs) | {:.2} | {:.2} | {:.2} | | | |",
        percentile(&raw_ms, 50.0),
        percentile(&raw_ms, 95.0),
        percentile(&raw_ms, 99.0)
    );
    println!();
    println!(
        "At ~{PACED_RATE} requests/s: quotes p95 {:.2} ms ({:.0} requests/s reached), daily bars p95 {:.2} ms ({:.0}/s) (target p95 < 10 ms).",
        quotes_paced.p95_ms, quotes_paced.per_second, bars_paced.p95_ms, bars_paced.per_second
    );
    println!(
        "Daily bars over 2 years: the rollup query {:.1}× faster than computing them from raw quotes (p50 {:.2} ms against {:.2} ms, SQL alone); over HTTP under load p50 {:.2} ms.",
        percentile(&raw_ms, 50.0) / percentile(&api_ms, 50.0).max(0.001),
        percentile(&api_ms, 50.0),
        percentile(&raw_ms, 50.0),
        bars_load.p50_ms
    );
    if let Some(p) = &peer {
        println!(
            "Quotes: {:.1}× the Python peer's throughput at the same {CONNECTIONS} connections (p95 {:.2} ms against {:.2} ms).",
            quotes_load.per_second / p.per_second.max(0.001),
            quotes_load.p95_ms,
            p.p95_ms
        );
    }
    drop(store);
    Ok(())
}
