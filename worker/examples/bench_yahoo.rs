//! The Yahoo part of `make bench`: how long one poll cycle of the `yahoo` source takes for 300,
//! 1 000 and 10 000 tickers against the local Yahoo-protocol server
//! (`quotestream_testkit::yahoo::YahooServer`) with a fixed latency per quote request, next to
//! the seeds' approach (one request per ticker, scripts/bench/yahoo_per_ticker.py) against the
//! same server in the same run. A measurement, not a test: it prints a markdown table.
//!
//! BENCH_PYTHON=… cargo run --release -p quotestream-worker --example bench_yahoo [-- --quick]

#[allow(dead_code)] // each harness uses part of it
mod bench_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_common::{median, pick, quick, thousands};
use quotestream_api::TickerSet;
use quotestream_testkit::yahoo::YahooServer;
use quotestream_worker::metrics::Metrics;
use quotestream_worker::rate_limit::RateLimiter;
use quotestream_worker::sources::yahoo::{YahooConfig, YahooSource};
use quotestream_worker::sources::{Source, SourceContext};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// One cycle's time per ticker count: the first (new session and connections) and the warm ones.
struct Cycles {
    cold: Duration,
    warm: Vec<Duration>,
}

/// Runs the source with back-to-back cycles (a 1 ms interval: each cycle starts as soon as the
/// previous one ended) and reads each cycle's duration from `streamer_fetch_duration_seconds`,
/// which the source observes once per cycle from its start to the last chunk delivered.
async fn rust_cycles(
    server: &YahooServer,
    tickers: &[String],
    warm: usize,
) -> anyhow::Result<Cycles> {
    let config = YahooConfig {
        base_url: server.base_url(),
        cookie_url: server.cookie_url(),
        ..YahooConfig::default()
    };
    let source = YahooSource::new(config)?;
    let metrics = Metrics::new("bench", 0)?;
    let (_tickers_tx, tickers_rx) = watch::channel(TickerSet::from_symbols(tickers)?);
    let (out, mut delivered) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let ctx = SourceContext {
        tickers: tickers_rx,
        interval: Duration::from_millis(1),
        out,
        metrics: metrics.clone(),
        // The budget is not what is measured: Yahoo's real one is the operator's to share.
        rate_limit: Arc::new(RateLimiter::unlimited()),
        shutdown: shutdown.clone(),
    };
    let task = tokio::spawn(source.run(ctx));
    let drain = tokio::spawn(async move {
        let mut quotes = 0usize;
        while let Some(batch) = delivered.recv().await {
            quotes += batch.len();
        }
        quotes
    });
    let mut seen = 0;
    let mut last_sum = 0.0;
    let mut cycles = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while cycles.len() < warm + 1 {
        if Instant::now() > deadline || task.is_finished() {
            bail!(
                "the yahoo source completed {} cycles within 120 s",
                cycles.len()
            );
        }
        let count = metrics.fetch_duration.get_sample_count();
        if count > seen {
            let sum = metrics.fetch_duration.get_sample_sum();
            if count > seen + 1 {
                bail!("two cycles ended between samples: cycles are shorter than the 1 ms poll");
            }
            cycles.push(Duration::from_secs_f64(sum - last_sum));
            (seen, last_sum) = (count, sum);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    shutdown.cancel();
    task.await??;
    let quotes = drain.await?;
    let fetch_errors = metrics.errors.with_label_values(&["fetch"]).get();
    if fetch_errors > 0 || quotes < tickers.len() * cycles.len() {
        bail!(
            "{fetch_errors} failed chunks; {quotes} quotes in {} cycles of {} tickers",
            cycles.len(),
            tickers.len()
        );
    }
    Ok(Cycles {
        cold: cycles[0],
        warm: cycles[1..].to_vec(),
    })
}

/// The seeds' approach, by scripts/bench/yahoo_per_ticker.py: (seconds, quotes) of one cycle.
async fn python_cycle(
    server: &YahooServer,
    file: &std::path::Path,
    mode: &str,
) -> anyhow::Result<(f64, usize)> {
    let v = bench_common::run_python(
        "yahoo_per_ticker.py",
        &[
            "--base-url".into(),
            server.base_url(),
            "--tickers-file".into(),
            file.display().to_string(),
            "--mode".into(),
            mode.into(),
            "--concurrency".into(),
            YahooConfig::default().concurrency.to_string(),
        ],
    )
    .await?;
    let seconds = v["seconds"].as_f64().context("no seconds in the answer")?;
    let quotes = v["quotes"].as_u64().context("no quotes in the answer")?;
    Ok((seconds, usize::try_from(quotes)?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench_common::warn_if_debug();
    let latency = Duration::from_millis(pick(50, 10));
    let counts: Vec<usize> = pick(vec![300, 1_000, 10_000], vec![300, 1_000]);
    let warm = pick(3, 1);
    // The per-ticker baselines take (tickers × latency) / in-flight: run where that stays short.
    let sequential_up_to = 300;
    let concurrent_up_to = pick(1_000, 300);
    let defaults = YahooConfig::default();

    let server = YahooServer::start()
        .await
        .context("starting the Yahoo server")?;
    server.set_latency(latency);
    let dir = tempfile::Builder::new().prefix("bench-yahoo-").tempdir()?;

    let mut rows = Vec::new();
    for &n in &counts {
        let tickers = bench_common::symbols(n);
        let file = dir.path().join(format!("tickers-{n}.txt"));
        std::fs::write(&file, tickers.join("\n"))?;
        eprintln!("yahoo: {n} tickers, quotestream");
        let cycles = rust_cycles(&server, &tickers, warm).await?;
        let requests = n.div_ceil(defaults.symbols_per_request);
        let seq = if n <= sequential_up_to {
            eprintln!("yahoo: {n} tickers, Python sequential");
            Some(python_cycle(&server, &file, "sequential").await?)
        } else {
            None
        };
        let conc = if n <= concurrent_up_to {
            eprintln!("yahoo: {n} tickers, Python aiohttp");
            Some(python_cycle(&server, &file, "aiohttp").await?)
        } else {
            None
        };
        // The log is only for tests; a long run would keep every request.
        server.take_requests();
        rows.push((n, cycles, requests, seq, conc));
    }

    println!(
        "Local Yahoo-protocol server (tests/testkit/src/yahoo.rs, same process) answering every quote request after {} ms, as a distant API would; cookie and crumb requests have no delay. quotestream: the `yahoo` source with its defaults ({} symbols per request, {} requests in flight, retries on), cycles back to back, each timed by the source itself (`streamer_fetch_duration_seconds`: first request to last chunk delivered); the cold cycle includes the cookie + crumb flow and new connections, warm is the median of {warm}. Python (scripts/bench/yahoo_per_ticker.py, the seeds' approach of one request per ticker, cookie + crumb included): `requests` one after another as yfinance does, and `aiohttp` with {} in flight like quotestream. Target: 300 tickers in < 1 s.{}{}\n",
        latency.as_millis(),
        defaults.symbols_per_request,
        defaults.concurrency,
        defaults.concurrency,
        bench_common::build_note(),
        if quick() { " Quick mode." } else { "" }
    );
    println!(
        "| tickers | quotestream requests | quotestream cold s | quotestream warm s | quotes/s (warm) | Python sequential s | ÷ quotestream warm | Python aiohttp ×{} s | ÷ quotestream warm |",
        defaults.concurrency
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (n, cycles, requests, seq, conc) in rows {
        let warm_s = median(
            &cycles
                .warm
                .iter()
                .map(Duration::as_secs_f64)
                .collect::<Vec<_>>(),
        );
        let baseline = |r: Option<(f64, usize)>| match r {
            Some((s, quotes)) if quotes == n => (format!("{s:.3}"), format!("{:.1}×", s / warm_s)),
            Some((s, quotes)) => (format!("{s:.3} ({quotes} quotes)"), "n/a".into()),
            None => ("not run".into(), "—".into()),
        };
        let (seq_s, seq_x) = baseline(seq);
        let (conc_s, conc_x) = baseline(conc);
        println!(
            "| {} | {requests} | {:.3} | {warm_s:.3} | {} | {seq_s} | {seq_x} | {conc_s} | {conc_x} |",
            thousands(n as f64),
            cycles.cold.as_secs_f64(),
            thousands(n as f64 / warm_s),
        );
    }
    println!(
        "\nPer-ticker baselines not run take about tickers × {} ms (sequential) or ÷ {} of that (aiohttp); they are left out to keep `make bench` short.",
        latency.as_millis(),
        defaults.concurrency
    );
    Ok(())
}
