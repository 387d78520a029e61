//! `quotestream-worker backfill` (the real binary) against the local Yahoo chart server, a real
//! PostgreSQL 15 and the real store serving what it wrote under `/v1/bars`: stocks, indices and
//! crypto; nulls, DST, duplicated bars, the live bar past the end, 429 with Retry-After, 5xx;
//! the vendor bar winning over the live rollup; kill -9 mid-run resuming with identical rows;
//! the request budget; failures named in the exit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::process::Stdio;
use std::time::Duration;

use quotestream_testkit::PostgresServer;
use quotestream_testkit::yahoo::YahooServer;
use quotestream_testkit::yahoo_chart::{ChartFault, bar_times, chart_bar};
use serde_json::Value;
use support::{Store, client, count, database, workspace_binary};

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The command against the vendor at `base_url`.
fn backfill_command(dsn: &str, base_url: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(workspace_binary("quotestream-worker"));
    cmd.arg("backfill")
        .args(args)
        .args(["--base-url", base_url, "--progress", "lines"])
        .env("DATABASE_URL", dsn)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn backfill(dsn: &str, yahoo: &YahooServer, args: &[&str]) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        backfill_command(dsn, &yahoo.base_url(), args).output(),
    )
    .await
    .expect("backfill finished within 120 s")
    .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ts(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

fn rfc3339(s: i64) -> String {
    jiff::Timestamp::from_second(s).unwrap().to_string()
}

async fn bars(store: &Store, symbol: &str, query: &str) -> Vec<Value> {
    let (status, url, body) = try_bars(store, symbol, query).await;
    assert_eq!(status, 200, "{url}: {body}");
    body["bars"].as_array().cloned().unwrap_or_default()
}

/// The answer of `/v1/bars` (status, URL, body), retried while the store answers 503.
async fn try_bars(store: &Store, symbol: &str, query: &str) -> (u16, String, Value) {
    let url = format!(
        "{}/v1/bars/{}?{query}&limit=10000",
        store.url(),
        symbol.replace('^', "%5E")
    );
    // A 503 (the store's read pool busy on a loaded machine) says to try again: bounded.
    let mut answer = (0, Value::Null);
    for _ in 0..50 {
        let r = client().get(&url).send().await.unwrap();
        answer = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
        if answer.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = answer;
    (status, url, body)
}

/// A price as served equals the vendor's: serde_json's default float parser (the worker's and
/// this test's) may land one unit in the last place off a 17-digit decimal.
fn same(served: &Value, vendor: f64) -> bool {
    served
        .as_f64()
        .is_some_and(|p| (p - vendor).abs() <= vendor.abs() * 1e-12)
}

/// 2026-01-10T00:00Z: the clock of the server and of the runs.
const NOW: &str = "2026-01-10T00:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_bars_of_stocks_indices_and_crypto_are_stored_served_and_not_added_twice() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "daily");
    let store = Store::start(&dsn, &[]);
    let yahoo = YahooServer::start().await.unwrap();
    yahoo.set_now(Some(ts(NOW)));
    let args = [
        "--tickers",
        "AAPL,^GSPC,BTC-USD,BRK.B",
        "--from",
        "2025-12-01",
        "--to",
        "2025-12-31",
        "--interval",
        "1d",
        "--source",
        "yahoo",
        "--now",
        NOW,
    ];
    let run = backfill(&dsn, &yahoo, &args).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let (p1, p2) = (ts("2025-12-01T00:00:00Z"), ts("2026-01-01T00:00:00Z"));
    for (symbol, yahoo_symbol) in [
        ("AAPL", "AAPL"),
        ("^GSPC", "^GSPC"),
        ("BTC-USD", "BTC-USD"),
        ("BRK.B", "BRK-B"),
    ] {
        let expected = bar_times(yahoo_symbol, "1d", p1, p2);
        let served = bars(
            &store,
            symbol,
            "timeframe=1Day&start=2025-12-01&end=2025-12-31",
        )
        .await;
        assert_eq!(served.len(), expected.len(), "{symbol}: {served:?}");
        for (bar, start) in served.iter().zip(&expected) {
            let want = chart_bar(yahoo_symbol, *start);
            let day = *start - start.rem_euclid(86_400);
            assert_eq!(bar["t"], rfc3339(day), "{symbol}: filed under its UTC day");
            assert!(same(&bar["o"], want.open), "{symbol}: {bar} {want:?}");
            assert!(same(&bar["c"], want.close), "{symbol}: {bar} {want:?}");
            assert_eq!(bar["v"].as_u64(), Some(want.volume), "{symbol}");
            assert_eq!(bar["n"], 0, "a vendor bar counts no quotes of ours");
        }
    }
    // US stocks miss weekends and Christmas; crypto has every day.
    assert_eq!(
        bars(
            &store,
            "BTC-USD",
            "timeframe=1Day&start=2025-12-01&end=2025-12-31"
        )
        .await
        .len(),
        31
    );
    let stored = count(
        &pg,
        "daily",
        "SELECT count(*) FROM quotes.real_time_vendor_bars",
    );
    let requests = yahoo.chart_requests().len();
    assert_eq!(
        requests, 4,
        "one request per ticker for a month of daily bars"
    );

    // Again: every window is checkpointed, nothing is fetched or added.
    let again = backfill(&dsn, &yahoo, &args).await;
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("1 already stored"),
        "{}",
        again.stdout
    );
    assert_eq!(yahoo.chart_requests().len(), requests);
    // And with the checkpoints gone: everything is fetched again and nothing added.
    pg.psql("daily", "DELETE FROM quotes.real_time_backfill_checkpoints")
        .unwrap();
    let refetch = backfill(&dsn, &yahoo, &args).await;
    assert_eq!(refetch.code, Some(0), "{}", refetch.stderr);
    assert!(
        refetch.stdout.contains("(0 new, 0 changed"),
        "{}",
        refetch.stdout
    );
    assert_eq!(
        count(
            &pg,
            "daily",
            "SELECT count(*) FROM quotes.real_time_vendor_bars"
        ),
        stored
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minute_bars_survive_nulls_dst_duplicates_the_live_bar_429_and_5xx() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "minute");
    let store = Store::start(&dsn, &[]);
    let yahoo = YahooServer::start().await.unwrap();
    let now = "2024-03-15T00:00:00Z";
    yahoo.set_now(Some(ts(now)));
    // Friday 2024-03-08 (EST, open 14:30Z) and Monday 2024-03-11 (EDT, open 13:30Z).
    let (fri, mon) = (ts("2024-03-08T14:30:00Z"), ts("2024-03-11T13:30:00Z"));
    let nulls = [fri + 60, fri + 120, mon + 300];
    yahoo.set_null_bars("AAPL", nulls);
    yahoo.set_duplicate_bars("AAPL", [mon + 600]);
    yahoo.inject_chart(
        ChartFault::TooManyRequests {
            retry_after: Some(1),
        },
        1,
    );
    yahoo.inject_chart(ChartFault::ServerError(503), 1);
    let run = backfill(
        &dsn,
        &yahoo,
        &[
            "--tickers",
            "AAPL",
            "--from",
            "2024-03-08",
            "--to",
            "2024-03-11",
            "--interval",
            "1m",
            "--now",
            now,
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("3 null bars (gaps), 1 duplicates, 1 outside the range"),
        "nulls, the revised bar and the live bar past the end are counted: {}",
        run.stdout
    );
    let log = yahoo.chart_requests();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 200], "{log:?}");
    assert!(
        log[1].at_ms - log[0].at_ms >= 1000,
        "Retry-After: 1 honoured: {log:?}"
    );
    let friday = bars(
        &store,
        "AAPL",
        "timeframe=1Min&start=2024-03-08T00:00:00Z&end=2024-03-08T23:59:59Z",
    )
    .await;
    let monday = bars(
        &store,
        "AAPL",
        "timeframe=1Min&start=2024-03-11T00:00:00Z&end=2024-03-11T23:59:59Z",
    )
    .await;
    assert_eq!(friday.len(), 390 - 2);
    assert_eq!(monday.len(), 390 - 1);
    assert_eq!(
        friday[0]["t"],
        rfc3339(fri),
        "EST: the session opens 14:30Z"
    );
    assert_eq!(
        monday[0]["t"],
        rfc3339(mon),
        "EDT: the session opens 13:30Z"
    );
    let revised = monday
        .iter()
        .find(|b| b["t"] == rfc3339(mon + 600))
        .unwrap();
    let original = chart_bar("AAPL", mon + 600);
    let later = f64::from(((original.close + 0.01) * 100.0).round() as f32 / 100.0);
    assert!(
        (revised["c"].as_f64().unwrap() - later).abs() < 1e-6,
        "the later copy of a duplicated bar is kept: {revised}"
    );
    // 5-minute bars regroup the vendor's minutes.
    let five = bars(
        &store,
        "AAPL",
        "timeframe=5Min&start=2024-03-11T13:30:00Z&end=2024-03-11T13:34:59Z",
    )
    .await;
    assert_eq!(five.len(), 1);
    let minutes: u64 = (0..5)
        .map(|i| mon + 60 * i)
        .filter(|t| !nulls.contains(t))
        .map(|t| chart_bar("AAPL", t).volume)
        .sum();
    assert_eq!(five[0]["v"].as_u64(), Some(minutes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_bar_wins_over_the_live_rollup_of_the_same_bucket() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "wins");
    let store = Store::start(&dsn, &[]);
    // Live quotes of AAPL on 2025-12-01 and 2025-12-02 (UTC days), through the store.
    let quotes = vec![
        support::quote("AAPL", ts("2025-12-01T15:00:00Z") * 1000, 100.0, 10),
        support::quote("AAPL", ts("2025-12-01T16:00:00Z") * 1000, 101.0, 20),
        support::quote("AAPL", ts("2025-12-02T15:00:00Z") * 1000, 102.0, 30),
    ];
    let (status, _, body) = support::post(&client(), &store, support::batch(quotes), &[]).await;
    assert_eq!(status, 200, "{body}");
    // The rollup merger folds the batch in the background: until it has, the symbol is
    // unknown (404) or its days are not all there. Bounded wait (10 s).
    let mut answer = (0, String::new(), Value::Null);
    for _ in 0..200 {
        answer = try_bars(
            &store,
            "AAPL",
            "timeframe=1Day&start=2025-12-01&end=2025-12-02",
        )
        .await;
        if answer.0 == 200 && answer.2["bars"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, url, body) = answer;
    assert_eq!(status, 200, "{url}: {body}");
    let ready = body["bars"].as_array().cloned().unwrap_or_default();
    assert_eq!(ready.len(), 2, "the live rollup has both days: {ready:?}");
    assert_eq!(ready[0]["n"], 2);

    // The vendor's daily bar of 2025-12-01 only.
    let yahoo = YahooServer::start().await.unwrap();
    yahoo.set_now(Some(ts(NOW)));
    let run = backfill(
        &dsn,
        &yahoo,
        &[
            "--tickers",
            "AAPL",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-01",
            "--now",
            NOW,
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let served = bars(
        &store,
        "AAPL",
        "timeframe=1Day&start=2025-12-01&end=2025-12-02",
    )
    .await;
    assert_eq!(served.len(), 2, "{served:?}");
    let vendor = chart_bar("AAPL", ts("2025-12-01T14:30:00Z"));
    assert_eq!(served[0]["t"], "2025-12-01T00:00:00Z");
    assert!(
        same(&served[0]["c"], vendor.close),
        "the vendor's bar wins: {served:?}"
    );
    assert_eq!(served[0]["n"], 0);
    assert_eq!(
        served[1]["c"].as_f64(),
        Some(102.0),
        "the live bar where no vendor bar is"
    );
    assert_eq!(served[1]["n"], 1);
}

/// The rows of the vendor bars table, as one text (for equality).
fn all_rows(pg: &PostgresServer, db: &str) -> String {
    pg.psql(
        db,
        "SELECT count(*) || ' ' || md5(string_agg(symbol || timeframe || bucket || open || high || low || close || volume, ',' ORDER BY symbol, timeframe, bucket)) FROM quotes.real_time_vendor_bars",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_with_sigkill_resumes_and_ends_with_the_same_rows() {
    let pg = PostgresServer::start().unwrap();
    let (killed_db, whole_db) = (database(&pg, "killed"), database(&pg, "whole"));
    let yahoo = YahooServer::start().await.unwrap();
    yahoo.set_now(Some(ts(NOW)));
    yahoo.set_null_every(Some(97));
    yahoo.set_latency(Duration::from_millis(100));
    let tickers: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "K{}{}",
                char::from(b'A' + i / 26),
                char::from(b'A' + i % 26)
            )
        })
        .collect();
    let list = tickers.join(",");
    let args = [
        "--tickers",
        list.as_str(),
        "--from",
        "2024-01-01",
        "--to",
        "2025-12-31",
        "--interval",
        "1d",
        "--concurrency",
        "2",
        "--now",
        NOW,
        "--requests-per-hour",
        "1000000",
    ];
    let mut child = backfill_command(&killed_db, &yahoo.base_url(), &args)
        .spawn()
        .unwrap();
    let midway = {
        let mut done = 0;
        for _ in 0..1200 {
            // Until the run has migrated, the table does not exist: 0.
            done = pg
                .psql(
                    "killed",
                    "SELECT count(*) FROM quotes.real_time_backfill_checkpoints",
                )
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if done >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done
    };
    assert!(midway >= 5, "the run got going");
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let after_kill = count(
        &pg,
        "killed",
        "SELECT count(*) FROM quotes.real_time_backfill_checkpoints",
    );
    assert!(after_kill < 40, "killed midway ({after_kill} of 40 done)");

    let resumed = backfill(&killed_db, &yahoo, &args).await;
    assert_eq!(
        resumed.code,
        Some(0),
        "{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
    assert!(
        resumed.stdout.contains("1 already stored"),
        "{}",
        resumed.stdout
    );
    let whole = backfill(&whole_db, &yahoo, &args).await;
    assert_eq!(whole.code, Some(0), "{}", whole.stderr);
    assert_eq!(all_rows(&pg, "killed"), all_rows(&pg, "whole"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_budget_is_never_exceeded() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "budget");
    let yahoo = YahooServer::start().await.unwrap();
    yahoo.set_now(Some(ts(NOW)));
    let tickers: Vec<String> = (0..20)
        .map(|i| format!("B{}", char::from(b'A' + i)))
        .collect();
    let list = tickers.join(",");
    // 36 000 an hour = one every 100 ms, burst 2.
    let run = backfill(
        &dsn,
        &yahoo,
        &[
            "--tickers",
            &list,
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-31",
            "--now",
            NOW,
            "--requests-per-hour",
            "36000",
            "--burst",
            "2",
            "--concurrency",
            "8",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let log = yahoo.chart_requests();
    assert_eq!(log.len(), 20);
    // Any k consecutive requests span at least (k - burst) periods (50 ms of slack for the
    // scheduling between the bucket and the server's log).
    for (i, first) in log.iter().enumerate() {
        for (j, last) in log.iter().enumerate().skip(i + 2) {
            let span = last.at_ms - first.at_ms;
            let allowed = (j - i + 1 - 2) as u64 * 100;
            assert!(
                span + 50 >= allowed,
                "requests {i}..={j} within {span} ms: {log:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_the_ticker_and_the_reason() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "failures");
    let yahoo = YahooServer::start().await.unwrap();
    yahoo.set_now(Some(ts(NOW)));
    yahoo.set_unknown(["ZZZZ"]);
    let run = backfill(
        &dsn,
        &yahoo,
        &[
            "--tickers",
            "AAPL,ZZZZ",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-31",
            "--now",
            NOW,
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("ZZZZ: Yahoo's chart API answered HTTP 404")
            && run.stderr.contains("symbol may be delisted"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("  AAPL:"),
        "AAPL is done: {}",
        run.stderr
    );
    assert!(run.stdout.contains("AAPL: done"), "{}", run.stdout);

    // Arguments the vendor would refuse are refused before any request, naming the flag.
    let before = yahoo.chart_requests().len();
    for (args, says) in [
        (
            vec![
                "--tickers",
                "AAPL",
                "--from",
                "2025-10-01",
                "--to",
                "2025-12-31",
                "--interval",
                "1m",
            ],
            "--from 2025-10-01: yahoo keeps 1m bars for the last 30 days",
        ),
        (
            vec![
                "--tickers",
                "X:BTCUSD",
                "--from",
                "2025-12-01",
                "--to",
                "2025-12-31",
            ],
            "write the canonical id \"BTC-USD\"",
        ),
        (
            vec![
                "--tickers",
                "AAPL",
                "--from",
                "2025-12-31",
                "--to",
                "2025-12-01",
            ],
            "--to 2025-12-01 is before --from 2025-12-31",
        ),
    ] {
        let mut args = args;
        args.extend(["--now", NOW]);
        let run = backfill(&dsn, &yahoo, &args).await;
        assert_ne!(run.code, Some(0));
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    assert_eq!(yahoo.chart_requests().len(), before);
}

/// The cluster admin's host list (`QUOTESTREAM_SOURCE_HOSTS`, which the operator gives the
/// Job) holds for `--base-url` as for the live sources: a vendor address outside it ends the
/// run with exit 2 before any request or database connection, naming the flag and the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_outside_the_allowed_hosts_is_refused_before_any_request() {
    let yahoo = YahooServer::start().await.unwrap();
    yahoo.set_now(Some(ts(NOW)));
    // Nothing listens on port 1: a run that got as far as the database would fail otherwise.
    let dsn = "postgres://nobody@127.0.0.1:1/none";
    let stream_url = yahoo.base_url().replace("http://", "ws://");
    for (source, base_url, hosts) in [
        ("yahoo", yahoo.base_url(), "*.yahoo.com"),
        (
            "polygon",
            stream_url.clone(),
            "api.massive.com,socket.massive.com",
        ),
        ("alpaca", stream_url, "data.alpaca.markets"),
    ] {
        let out = backfill_command(
            dsn,
            &base_url,
            &[
                "--tickers",
                "AAPL",
                "--from",
                "2025-12-01",
                "--to",
                "2025-12-31",
                "--now",
                NOW,
                "--source",
                source,
            ],
        )
        .env("QUOTESTREAM_SOURCE_HOSTS", hosts)
        .env("POLYGON_API_KEY", "key")
        .env("APCA_API_KEY_ID", "id")
        .env("APCA_API_SECRET_KEY", "secret")
        .output()
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{source}: {stderr}");
        assert!(
            stderr.contains("--base-url")
                && stderr.contains("127.0.0.1")
                && stderr.contains("QUOTESTREAM_SOURCE_HOSTS"),
            "{source}: {stderr}"
        );
    }
    assert!(yahoo.chart_requests().is_empty(), "no request left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpaca_pages_and_polygon_next_urls_are_followed_for_stocks_indices_and_crypto() {
    use quotestream_testkit::vendor_bars::{
        ALPACA_KEY_ID, ALPACA_SECRET, POLYGON_KEY, VendorBarsServer,
    };
    let pg = PostgresServer::start().unwrap();
    let vendors = VendorBarsServer::start().await.unwrap();
    // Small pages, so that a month of daily bars takes several.
    vendors.set_page_size(Some(7));
    vendors.inject_too_many_requests(Some(1));
    let run =
        |db: &'static str, source: &'static str, tickers: &'static str, stream_url: String| {
            let dsn = database(&pg, db);
            let mut cmd = backfill_command(
                &dsn,
                &stream_url,
                &[
                    "--tickers",
                    tickers,
                    "--from",
                    "2025-12-01",
                    "--to",
                    "2025-12-31",
                    "--source",
                    source,
                    "--now",
                    NOW,
                    // Polygon's default is its free plan's 5 a minute.
                    "--requests-per-hour",
                    "1000000",
                ],
            );
            cmd.env("APCA_API_KEY_ID", ALPACA_KEY_ID)
                .env("APCA_API_SECRET_KEY", ALPACA_SECRET)
                .env("POLYGON_API_KEY", POLYGON_KEY);
            async move {
                let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
                    .await
                    .unwrap()
                    .unwrap();
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
        };
    // --base-url is the live source's stream URL; the REST host is found from it.
    let ws = vendors.base_url().replace("http://", "ws://");
    let (code, stdout, stderr) =
        run("alpaca", "alpaca", "AAPL,BTC-USD", format!("{ws}/v2/iex")).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let (code, stdout, stderr) = run(
        "polygon",
        "polygon",
        "AAPL,^GSPC,BTC-USD",
        format!("{ws}/stocks"),
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let (p1, p2) = (ts("2025-12-01T00:00:00Z"), ts("2026-01-01T00:00:00Z"));
    for (db, symbols) in [
        ("alpaca", &["AAPL", "BTC-USD"][..]),
        ("polygon", &["AAPL", "^GSPC", "BTC-USD"][..]),
    ] {
        for symbol in symbols {
            let yahoo_symbol = symbol.to_string();
            let want: Vec<f64> = bar_times(&yahoo_symbol, "1d", p1, p2)
                .into_iter()
                .map(|t| chart_bar(&yahoo_symbol, t).close)
                .collect();
            let got: Vec<f64> = pg
                .psql(db, &format!("SELECT string_agg(close::text, ',' ORDER BY bucket) FROM quotes.real_time_vendor_bars WHERE symbol = '{symbol}'"))
                .unwrap()
                .split(',')
                .filter_map(|v| v.parse().ok())
                .collect();
            assert_eq!(got.len(), want.len(), "{db} {symbol}");
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| (a - b).abs() <= b * 1e-12),
                "{db} {symbol}"
            );
        }
    }
    let log = vendors.requests();
    assert_eq!(log[0].status, 429);
    assert!(
        log.iter()
            .filter(|r| r.path.starts_with("/v2/stocks/AAPL"))
            .count()
            >= 4,
        "23 trading days in pages of 7: {log:?}"
    );
    assert!(
        log.iter()
            .filter(|r| r.path.starts_with("/v2/aggs/ticker/X:BTCUSD"))
            .count()
            >= 5,
        "31 days in pages of 7 base bars, by next_url: {log:?}"
    );

    // Alpaca has no index data: that ticker fails, named, the others are done.
    let (code, _, stderr) = run(
        "alpaca_index",
        "alpaca",
        "AAPL,^GSPC",
        format!("{ws}/v2/iex"),
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("^GSPC: ^GSPC is an index, and alpaca has no index data"),
        "{stderr}"
    );
}
