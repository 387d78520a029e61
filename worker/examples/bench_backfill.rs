//! The history row of `make bench`: `quotestream-worker backfill` (the real binary) fetching
//! 500 instruments × 2 years of daily bars + 29 days of 1-minute bars from the local Yahoo
//! chart server (`quotestream_testkit::yahoo_chart`, 50 ms per request) into PostgreSQL 15,
//! next to a Python peer done the seeds' way (scripts/bench/backfill_peer.py: one request per
//! symbol and window, pandas, SQLAlchemy inserts) against the same server in the same run.
//!
//! The server serves the nasty fixtures to both: about one bar in 499 as nulls (a halt, a
//! minute without trades), revised duplicates of the first minutes around the end of daylight
//! saving (2026-10-30 EDT, 2026-11-02 EST) for one symbol in ten, and Yahoo's live bar after
//! every range. Every stored row of either side is checked against the bars the server's
//! deterministic market has (loaded into the database as `bench_expected`): duplicates, gaps
//! explained by nulls, unexplained gaps, extra rows, wrong values. For quotestream also: a second
//! run adds 0 rows, a run killed with SIGKILL midway resumes and ends with the same rows, and
//! the server's request log never shows more requests than the budget lets out.
//! A measurement, not a test: it prints markdown tables.
//!
//! cargo build --release -p quotestream-worker --bins --examples &&
//! BENCH_PYTHON=… target/release/examples/bench_backfill [--quick]

#[allow(dead_code)] // each harness uses part of it
mod bench_common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bench_common::{pick, quick, thousands};
use futures_util::SinkExt;
use jiff::Timestamp;
use jiff::civil::Date;
use quotestream_testkit::yahoo::YahooServer;
use quotestream_testkit::yahoo_chart::{
    ChartRequest, HOLIDAYS, bar_times, chart_bar, null_every_hits, revised,
};
use quotestream_testkit::{Durability, PostgresServer};
use tokio_postgres::{Client, NoTls};

/// The server's clock and the runs' (`--now`).
const NOW: &str = "2026-11-11T00:00:00Z";
const LATENCY: Duration = Duration::from_millis(50);
/// One bar in this many (per symbol and time, deterministic) comes as nulls.
const NULL_EVERY: u64 = 499;
/// The days around the end of daylight saving (2026-11-01) whose first minutes come twice.
const DST_DAYS: [&str; 2] = ["2026-10-30", "2026-11-02"];
/// The budget the runs get, and the burst: far above what 50 ms answers allow 16 requests
/// in flight to reach, so the request log shows whether the bucket holds.
const REQUESTS_PER_HOUR: u64 = 720_000;
const BURST: u32 = 16;
const CONCURRENCY: u16 = 16;
/// Longest one command may take before the harness gives up.
const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// What is fetched: (interval, first day, last day). The daily range ends the day before
/// the minutes': at [`NOW`] (midnight UTC) a stock's daily bar of the day just ended is still
/// "in progress" by the backfill's rule (its start, the 09:30 New York open, plus a day), so
/// it would be left for the next run and not checkpointed. The minute range is the 29 whole
/// days before [`NOW`]: Yahoo keeps 30 days of minutes, and the backfill refuses a `--from`
/// less than 10 minutes inside that limit (the 30th day back starts exactly at it).
struct Size {
    stocks: usize,
    indices: Vec<&'static str>,
    crypto: usize,
    ranges: [(&'static str, &'static str, &'static str); 2],
}

fn size() -> Size {
    if quick() {
        Size {
            stocks: 9,
            indices: vec!["^GSPC"],
            crypto: 2,
            ranges: [
                ("1d", "2026-09-11", "2026-11-09"),
                ("1m", "2026-10-29", "2026-11-10"),
            ],
        }
    } else {
        Size {
            stocks: 465,
            indices: vec!["^GSPC", "^DJI", "^IXIC", "^RUT", "^VIX"],
            crypto: 30,
            ranges: [
                ("1d", "2024-11-10", "2026-11-09"),
                ("1m", "2026-10-13", "2026-11-10"),
            ],
        }
    }
}

/// Canonical ids, which are also Yahoo's spellings here (no share classes).
fn instruments(size: &Size) -> Vec<String> {
    let mut out = bench_common::symbols(size.stocks);
    out.extend(size.indices.iter().map(|s| (*s).to_owned()));
    out.extend((0..size.crypto).map(|i| format!("C{}-USD", bench_common::symbol(i))));
    out
}

fn day_start(day: &str) -> anyhow::Result<i64> {
    Ok(day
        .parse::<Date>()?
        .to_zoned(jiff::tz::TimeZone::UTC)?
        .timestamp()
        .as_second())
}

/// [first day 00:00Z, day after the last 00:00Z).
fn period(first: &str, last: &str) -> anyhow::Result<(i64, i64)> {
    Ok((day_start(first)?, day_start(last)? + 86_400))
}

/// The revised duplicates the server sends: the first three minutes of each DST day, for one
/// symbol in ten.
fn duplicates(symbols: &[String]) -> anyhow::Result<HashSet<(String, i64)>> {
    let mut out = HashSet::new();
    for symbol in symbols.iter().step_by(10) {
        for day in DST_DAYS {
            let start = day_start(day)?;
            for t in bar_times(symbol, "1m", start, start + 86_400)
                .into_iter()
                .take(3)
            {
                out.insert((symbol.clone(), t));
            }
        }
    }
    Ok(out)
}

/// Loads every bar the server's market has for the ranges into `bench_expected`: the key as
/// quotestream files it, close and volume as the last copy sent, whether it comes as nulls,
/// whether it was sent twice. Returns (bars, null bars).
async fn load_expected(
    db: &Client,
    size: &Size,
    symbols: &[String],
    dups: &HashSet<(String, i64)>,
) -> anyhow::Result<(u64, u64)> {
    db.batch_execute(
        "CREATE TABLE bench_expected (symbol text, timeframe text, bucket timestamptz, \
         close float8, volume int8, is_null bool, revised bool, dst bool)",
    )
    .await?;
    let sink = db
        .copy_in("COPY bench_expected FROM STDIN")
        .await
        .context("COPY bench_expected")?;
    futures_util::pin_mut!(sink);
    let dst: Vec<i64> = DST_DAYS
        .iter()
        .map(|d| day_start(d))
        .collect::<anyhow::Result<_>>()?;
    let (mut bars, mut nulls) = (0, 0);
    let mut buf = String::with_capacity(1 << 20);
    for (interval, first, last) in size.ranges {
        let (p1, p2) = period(first, last)?;
        for symbol in symbols {
            for t in bar_times(symbol, interval, p1, p2) {
                let null = null_every_hits(symbol, t, NULL_EVERY);
                let twice = dups.contains(&(symbol.clone(), t));
                let bar = if twice {
                    revised(chart_bar(symbol, t))
                } else {
                    chart_bar(symbol, t)
                };
                let bucket = if interval == "1d" {
                    t - t.rem_euclid(86_400)
                } else {
                    t
                };
                let on_dst_day = interval == "1m" && dst.contains(&(t - t.rem_euclid(86_400)));
                use std::fmt::Write;
                writeln!(
                    buf,
                    "{symbol}\t{interval}\t{}\t{:?}\t{}\t{null}\t{twice}\t{on_dst_day}",
                    Timestamp::from_second(bucket)?,
                    bar.close,
                    bar.volume
                )?;
                bars += 1;
                nulls += u64::from(null);
            }
            if buf.len() > 1 << 20 {
                sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                    .await?;
            }
        }
    }
    sink.send(bytes::Bytes::from(buf)).await?;
    sink.finish().await?;
    db.batch_execute(
        "CREATE INDEX ON bench_expected (symbol, timeframe, bucket); ANALYZE bench_expected",
    )
    .await?;
    Ok((bars, nulls))
}

/// How a table of stored bars compares with `bench_expected`.
#[derive(Debug, Default)]
struct Checks {
    rows: i64,
    duplicates: i64,
    /// Bars the server sent as nulls and the table does not have: explained gaps.
    explained: i64,
    /// Bars the server had and the table does not.
    unexplained: i64,
    /// Rows with no bar at that key (the live bar, nulls stored, misfiled times).
    extra: i64,
    /// Rows at a bar's key with another close or volume.
    wrong: i64,
    /// Revised duplicates: (stored with the revision, sent).
    revised: (i64, i64),
    /// Minute bars of the DST days: (stored right, expected non-null).
    dst: (i64, i64),
}

/// `relation` has columns symbol, timeframe, bucket, close, volume.
async fn check(db: &Client, relation: &str) -> anyhow::Result<Checks> {
    let same_key = "s.symbol = e.symbol AND s.timeframe = e.timeframe AND s.bucket = e.bucket";
    let right = "abs(s.close - e.close) <= 1e-9 * abs(e.close) AND s.volume = e.volume";
    let sql = format!(
        "WITH s AS (SELECT symbol, timeframe, bucket, close, volume FROM {relation} AS r) SELECT \
         (SELECT count(*) FROM s), \
         (SELECT count(*) - count(DISTINCT (symbol, timeframe, bucket)) FROM s), \
         (SELECT count(*) FROM bench_expected e WHERE e.is_null AND NOT EXISTS (SELECT 1 FROM s WHERE {same_key})), \
         (SELECT count(*) FROM bench_expected e WHERE NOT e.is_null AND NOT EXISTS (SELECT 1 FROM s WHERE {same_key})), \
         (SELECT count(*) FROM s WHERE NOT EXISTS (SELECT 1 FROM bench_expected e WHERE {same_key} AND NOT e.is_null)), \
         (SELECT count(*) FROM s JOIN bench_expected e ON {same_key} WHERE NOT e.is_null AND NOT ({right})), \
         (SELECT count(*) FROM s JOIN bench_expected e ON {same_key} WHERE e.revised AND NOT e.is_null AND {right}), \
         (SELECT count(*) FROM bench_expected e WHERE e.revised AND NOT e.is_null), \
         (SELECT count(*) FROM s JOIN bench_expected e ON {same_key} WHERE e.dst AND NOT e.is_null AND {right}), \
         (SELECT count(*) FROM bench_expected e WHERE e.dst AND NOT e.is_null)"
    );
    let row = db.query_one(&sql, &[]).await.context("checking the rows")?;
    Ok(Checks {
        rows: row.try_get(0)?,
        duplicates: row.try_get(1)?,
        explained: row.try_get(2)?,
        unexplained: row.try_get(3)?,
        extra: row.try_get(4)?,
        wrong: row.try_get(5)?,
        revised: (row.try_get(6)?, row.try_get(7)?),
        dst: (row.try_get(8)?, row.try_get(9)?),
    })
}

/// Rows in one table and not the other, both ways (all columns that carry the bar).
async fn differing_rows(db: &Client, a: &str, b: &str) -> anyhow::Result<i64> {
    let cols = "symbol, timeframe, bucket, open, high, low, close, volume";
    let row = db
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM (SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}) x) \
                 + (SELECT count(*) FROM (SELECT {cols} FROM {b} EXCEPT ALL SELECT {cols} FROM {a}) y)"
            ),
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

async fn scalar(db: &Client, sql: &str) -> anyhow::Result<i64> {
    Ok(db.query_one(sql, &[]).await?.try_get(0)?)
}

/// The backfill command for one range, into `<schema>.real_time_vendor_bars`.
fn command(
    dsn: &str,
    base_url: &str,
    tickers: &str,
    range: (&str, &str, &str),
    schema: &str,
    concurrency: u16,
) -> anyhow::Result<tokio::process::Command> {
    let (interval, first, last) = range;
    let mut cmd = tokio::process::Command::new(bench_common::worker_binary()?);
    cmd.arg("backfill")
        .args(["--tickers", tickers, "--from", first, "--to", last])
        .args([
            "--interval",
            interval,
            "--source",
            "yahoo",
            "--base-url",
            base_url,
        ])
        .args(["--table", &format!("{schema}.real_time"), "--now", NOW])
        .args(["--requests-per-hour", &REQUESTS_PER_HOUR.to_string()])
        .args(["--burst", &BURST.to_string()])
        .args([
            "--concurrency",
            &concurrency.to_string(),
            "--progress",
            "none",
        ])
        .env("DATABASE_URL", dsn)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    Ok(cmd)
}

/// Bars a run reported new or changed (its per-ticker lines: `N bars stored (N new, N
/// changed, N unchanged)`).
fn written(stdout: &str) -> u64 {
    let number_before = |line: &str, marker: &str| -> u64 {
        line.split_once(marker)
            .and_then(|(head, _)| head.rsplit([' ', '(']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    stdout
        .lines()
        .filter(|l| l.contains(" bars stored ("))
        .map(|l| number_before(l, " new,") + number_before(l, " changed,"))
        .sum()
}

/// Both ranges, one command after the other; fails unless every ticker is done. Returns
/// (wall seconds, what each printed).
async fn run_rust(
    dsn: &str,
    server: &YahooServer,
    tickers: &str,
    size: &Size,
    schema: &str,
) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let mut stdout = String::new();
    for range in size.ranges {
        let out = tokio::time::timeout(
            RUN_LIMIT,
            command(dsn, &server.base_url(), tickers, range, schema, CONCURRENCY)?.output(),
        )
        .await
        .context("a backfill run took longer than 30 minutes")??;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "backfill {range:?} into {schema} ended {}: {}{}",
            out.status,
            text.lines().last().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.push_str(&text);
    }
    Ok((started.elapsed().as_secs_f64(), stdout))
}

/// The minute run killed with SIGKILL once `at` of its windows are checkpointed (the daily run
/// before it completes), then run again to the end. Returns the windows done at the kill.
async fn killed_and_resumed(
    dsn: &str,
    db: &Client,
    server: &YahooServer,
    tickers: &str,
    size: &Size,
    at: i64,
) -> anyhow::Result<i64> {
    let [daily, minute] = size.ranges;
    let out = command(
        dsn,
        &server.base_url(),
        tickers,
        daily,
        "killed",
        CONCURRENCY,
    )?
    .output()
    .await?;
    ensure!(
        out.status.success(),
        "the daily run into killed ended {}",
        out.status
    );
    // Quick mode's minute run is a few windows long: one in flight, so the kill lands midway.
    let concurrency = pick(CONCURRENCY, 1);
    let mut child = command(
        dsn,
        &server.base_url(),
        tickers,
        minute,
        "killed",
        concurrency,
    )?
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()?;
    let done_sql =
        "SELECT count(*) FROM killed.real_time_backfill_checkpoints WHERE timeframe = '1m'";
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        let done = scalar(db, done_sql).await?;
        if done >= at {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("the minute run ended ({status}) before {at} windows were done ({done})");
        }
        ensure!(
            Instant::now() < deadline,
            "the minute run did not get to {at} windows"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill()?; // SIGKILL
    let status = child.wait().await?;
    ensure!(
        status.code().is_none(),
        "the run ended by itself ({status}), not by the kill"
    );
    let at_kill = scalar(db, done_sql).await?;
    let out = command(
        dsn,
        &server.base_url(),
        tickers,
        minute,
        "killed",
        CONCURRENCY,
    )?
    .output()
    .await?;
    ensure!(
        out.status.success(),
        "the resumed run ended {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(at_kill)
}

/// The token bucket seen from the server: any k consecutive requests must span at least
/// (k − burst) periods; `slack_ms` covers the scheduling between the bucket and the log.
/// Returns (requests breaking it, most requests in any one second).
fn budget(log: &[ChartRequest], per_hour: u64, burst: u32, slack_ms: u64) -> (usize, usize) {
    let period_ms = 3_600_000.0 / per_hour as f64;
    let burst = burst as usize;
    let mut breaking = 0;
    for i in 0..log.len() {
        let broken = (i + burst..log.len()).any(|j| {
            let span = log[j].at_ms.saturating_sub(log[i].at_ms) as f64;
            span + slack_ms as f64 + 1e-9 < (j - i + 1 - burst) as f64 * period_ms
        });
        breaking += usize::from(broken);
    }
    let mut most = 0;
    let mut first = 0;
    for (last, r) in log.iter().enumerate() {
        while r.at_ms.saturating_sub(log[first].at_ms) >= 1000 {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    (breaking, most)
}

async fn run_python(
    server: &YahooServer,
    pg: &PostgresServer,
    tickers_file: &std::path::Path,
    size: &Size,
) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let mut requests = 0;
    for (interval, first, last) in size.ranges {
        let v = bench_common::run_python(
            "backfill_peer.py",
            &[
                "--base-url".into(),
                server.base_url(),
                "--database-url".into(),
                format!(
                    "postgresql+psycopg2://postgres@127.0.0.1:{}/bench",
                    pg.port()
                ),
                "--tickers-file".into(),
                tickers_file.display().to_string(),
                "--from".into(),
                first.into(),
                "--to".into(),
                last.into(),
                "--interval".into(),
                interval.into(),
            ],
        )
        .await?;
        requests += v["requests"]
            .as_u64()
            .context("no requests in the answer")?;
    }
    Ok((started.elapsed().as_secs_f64(), requests))
}

fn holidays_in(first: &str, last: &str) -> anyhow::Result<Vec<String>> {
    let (first, last) = (first.parse::<Date>()?, last.parse::<Date>()?);
    Ok(HOLIDAYS
        .iter()
        .filter_map(|&(y, m, d)| Date::new(y, m, d).ok())
        .filter(|d| *d >= first && *d <= last)
        .map(|d| d.to_string())
        .collect())
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.1}×", a / b)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench_common::warn_if_debug();
    let size = size();
    let symbols = instruments(&size);
    let tickers = symbols.join(",");
    let dups = duplicates(&symbols)?;

    let pg = PostgresServer::start_with(Durability::Default).context("starting PostgreSQL")?;
    let dsn = pg.create_database("bench")?;
    let (db, connection) = tokio_postgres::connect(&dsn, NoTls).await?;
    tokio::spawn(connection);
    let server = YahooServer::start()
        .await
        .context("starting the Yahoo server")?;
    server.set_latency(LATENCY);
    server.set_now(Some(NOW.parse::<Timestamp>()?.as_second()));
    server.set_null_every(Some(NULL_EVERY));
    for symbol in &symbols {
        let times: Vec<i64> = dups
            .iter()
            .filter(|(s, _)| s == symbol)
            .map(|(_, t)| *t)
            .collect();
        if !times.is_empty() {
            server.set_duplicate_bars(symbol, times);
        }
    }
    eprintln!("backfill: loading the expected bars");
    let (expected, nulls) = load_expected(&db, &size, &symbols, &dups).await?;

    eprintln!("backfill: quotestream, {} instruments", symbols.len());
    let load_before = bench_common::load_average();
    let (rust_s, _) = run_rust(&dsn, &server, &tickers, &size, "whole").await?;
    let rust_log = server.take_chart_requests();
    let rust_checks = check(&db, "whole.real_time_vendor_bars").await?;

    eprintln!("backfill: quotestream again");
    let (again_s, again_out) = run_rust(&dsn, &server, &tickers, &size, "whole").await?;
    let again_requests = server.take_chart_requests().len();
    let again_written = written(&again_out);
    let again_rows = scalar(&db, "SELECT count(*) FROM whole.real_time_vendor_bars").await?;

    eprintln!("backfill: quotestream killed with SIGKILL midway and resumed");
    let minute_windows = scalar(
        &db,
        "SELECT count(*) FROM whole.real_time_backfill_checkpoints WHERE timeframe = '1m'",
    )
    .await?;
    let at_kill =
        killed_and_resumed(&dsn, &db, &server, &tickers, &size, minute_windows / 2).await?;
    server.take_chart_requests();
    let resumed_diff = differing_rows(
        &db,
        "whole.real_time_vendor_bars",
        "killed.real_time_vendor_bars",
    )
    .await?;
    let resumed_rows = scalar(&db, "SELECT count(*) FROM killed.real_time_vendor_bars").await?;

    eprintln!("backfill: Python peer");
    let dir = tempfile::Builder::new()
        .prefix("bench-backfill-")
        .tempdir()?;
    let tickers_file = dir.path().join("tickers.txt");
    std::fs::write(&tickers_file, symbols.join("\n"))?;
    let (py_s, py_requests) = run_python(&server, &pg, &tickers_file, &size).await?;
    server.take_chart_requests();
    let py_checks = check(
        &db,
        "(SELECT symbol, timeframe, ts AS bucket, close, volume FROM public.market_prices)",
    )
    .await?;
    let load_after = bench_common::load_average();

    let (breaking, most) = budget(&rust_log, REQUESTS_PER_HOUR, BURST, 50);
    let [(_, d_first, d_last), (_, m_first, m_last)] = size.ranges;
    let holidays = holidays_in(d_first, d_last)?;
    let crypto = size.crypto;
    println!(
        "Local Yahoo chart server (tests/testkit/src/yahoo_chart.rs, same process as this harness) answering every request after {} ms; PostgreSQL 15 (testkit, default durability) on the same 2 cores; load average {load_before} before, {load_after} after. {} instruments ({} US stocks, {} indices, {crypto} crypto pairs): daily bars {d_first} … {d_last} and 1-minute bars {m_first} … {m_last}, {} bars at the server, of which {} come as nulls (one in {NULL_EVERY}: halts, minutes without trades); the first 3 minutes of {} are sent twice (Yahoo's revision second) for one symbol in ten; Yahoo's live bar ends every answer. quotestream: `quotestream-worker backfill --interval 1d`, then `--interval 1m`, `--concurrency {CONCURRENCY} --requests-per-hour {REQUESTS_PER_HOUR} --burst {BURST}` (the default 2 writers). Python (scripts/bench/backfill_peer.py, the seeds' way): one request per symbol and window one after another (requests), pandas, SQLAlchemy `insert().on_conflict_do_nothing()` per window through psycopg2. Times are wall clock of the processes, both intervals.{}{}\n",
        LATENCY.as_millis(),
        symbols.len(),
        size.stocks,
        size.indices.len(),
        thousands(expected as f64),
        thousands(nulls as f64),
        DST_DAYS.join(" and "),
        bench_common::build_note(),
        if quick() { " Quick mode." } else { "" }
    );
    println!("| | requests | bars stored | wall s | bars/s | ÷ Python |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rust_rate = rust_checks.rows as f64 / rust_s;
    let py_rate = py_checks.rows as f64 / py_s;
    println!(
        "| quotestream-worker backfill | {} | {} | {rust_s:.1} | {} | {} |",
        thousands(rust_log.len() as f64),
        thousands(rust_checks.rows as f64),
        thousands(rust_rate),
        ratio(rust_rate, py_rate)
    );
    println!(
        "| Python peer | {} | {} | {py_s:.1} | {} | 1.0× |",
        thousands(py_requests as f64),
        thousands(py_checks.rows as f64),
        thousands(py_rate)
    );
    println!(
        "\nThe stored rows against the server's bars (`bench_expected`, keyed as quotestream files them: minute bars at their minute, daily bars at their UTC day):\n"
    );
    println!(
        "| | duplicate keys | gaps explained by null bars | unexplained gaps | extra rows | wrong values | revised duplicates kept | DST days' minutes right |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, c) in [
        ("quotestream-worker backfill", &rust_checks),
        ("Python peer", &py_checks),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} of {} | {} of {} |",
            c.duplicates,
            thousands(c.explained as f64),
            c.unexplained,
            c.extra,
            c.wrong,
            c.revised.0,
            c.revised.1,
            thousands(c.dst.0 as f64),
            thousands(c.dst.1 as f64)
        );
    }
    println!(
        "\nGaps besides the null bars are days the market was closed and have no bar at the server: weekends for stocks and indices (crypto trades every day), and the NYSE holidays in the daily range: {}.\n",
        if holidays.is_empty() {
            "none".to_owned()
        } else {
            holidays.join(", ")
        }
    );
    println!("| quotestream check | result |\n|---|---|");
    println!(
        "| second run (same arguments) | {again_written} bars new or changed, {again_requests} requests, rows {} → {}, {again_s:.1} s |",
        thousands(rust_checks.rows as f64),
        thousands(again_rows as f64)
    );
    println!(
        "| minute run killed with SIGKILL at {at_kill} of {minute_windows} windows, then run again | {} rows, {resumed_diff} rows differ from the uninterrupted run's |",
        thousands(resumed_rows as f64)
    );
    println!(
        "| request budget {} an hour, burst {BURST}, from the server's log of the first run | {breaking} of {} requests closer than the bucket allows (50 ms slack); most in any one second: {most} (the bucket allows {}) |",
        thousands(REQUESTS_PER_HOUR as f64),
        thousands(rust_log.len() as f64),
        (REQUESTS_PER_HOUR / 3600) as usize + BURST as usize
    );
    Ok(())
}
