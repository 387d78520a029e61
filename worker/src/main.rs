//! `quotestream-worker`: the quotestream data plane.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use quotestream_api::contract;
use quotestream_api::sink_failure::one_line;
use quotestream_worker::assembly::{RunOptions, Worker, WorkerError};
use quotestream_worker::backfill::BackfillArgs;
use quotestream_worker::local::{self, LocalOptions, LocalStream};
use quotestream_worker::quote::{validate, wire};
use quotestream_worker::sources::market_hours::Clock;
use quotestream_worker::{bounds, config_file, server};

/// The quotestream worker: streams one shard of a QuoteStream from its source to its sinks.
#[derive(Debug, Parser)]
#[command(
    name = "quotestream-worker",
    version,
    about,
    after_help = "Examples:\n  \
        quotestream-worker local                          # the S&P 500 example, 4 shards, synthetic quotes\n  \
        REDIS_URL=redis://127.0.0.1:6379 quotestream-worker local --shards 8 --interval 500ms\n  \
        quotestream-worker local --source yahoo-stream --source-url ws://127.0.0.1:9801/   # see SOURCE=... make run\n  \
        quotestream-worker run --config /etc/quotestream/worker.json\n  \
        quotestream-worker check recording.ndjson\n  \
        quotestream-worker backfill --tickers AAPL,^GSPC,BTC-USD --from 2024-01-01 --to 2025-12-31 --interval 1d --source yahoo"
)]
struct Cli {
    /// Log format (default: json inside Kubernetes, pretty elsewhere).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream one shard as configured by the operator (the container's command).
    Run {
        /// The worker configuration written by the operator.
        #[arg(long, env = contract::env::CONFIG, default_value = quotestream_api::worker_config::WORKER_CONFIG_PATH)]
        config: PathBuf,
        /// Address of /metrics, /health and /ready.
        #[arg(long, env = contract::env::LISTEN, default_value = contract::LISTEN_ADDR)]
        listen: SocketAddr,
        /// Time the sinks get to drain on SIGTERM (keep it below the pod's grace period).
        #[arg(long, env = contract::env::GRACE, default_value = contract::WORKER_GRACE, value_parser = parse_grace)]
        grace: Duration,
        /// How far ahead of this node's clock a quote may be dated (0-1h); later ones are
        /// dropped as invalid (`reason="timestamp"`).
        #[arg(long, env = contract::env::MAX_CLOCK_SKEW, default_value = "5s", value_parser = parse_max_clock_skew)]
        max_clock_skew: Duration,
        /// How often the configuration file is checked for a new ticker list.
        #[arg(long, default_value = "1s", value_parser = parse_reload_every)]
        reload_every: Duration,
        /// Bytes each sink queue may hold, a Kubernetes quantity (256Ki-64Gi; e.g. 16Mi).
        /// Default: worker.json's queueBytes (the operator derives it from the pod's memory
        /// limit), else a sixteenth of 128Mi split across the sinks.
        #[arg(long, env = contract::env::QUEUE_BYTES, value_parser = parse_queue_bytes)]
        queue_bytes: Option<u64>,
        /// Run the trading-hours schedule (spec.schedule) as if it were this instant now, an
        /// RFC 3339 time such as 2026-12-07T14:29:50Z: rehearse an open or a close. The clock
        /// then runs at the normal pace. Quotes keep their real timestamps.
        #[arg(long, value_name = "TIME")]
        schedule_clock: Option<jiff::Timestamp>,
        /// File that gets the one-line reason when the worker cannot start (the container's
        /// termination message, which the operator reads into the stream's status).
        #[arg(long, env = contract::env::TERMINATION_LOG)]
        termination_log: Option<PathBuf>,
        /// Directory of the disk buffers of sinks with `buffer.type: disk` (one directory per
        /// sink inside it); the operator mounts an emptyDir here.
        #[arg(long, env = contract::env::BUFFER_DIR, default_value = contract::BUFFER_DIR)]
        buffer_dir: PathBuf,
    },
    /// Run the example S&P 500 stream locally: every shard in this process, synthetic quotes,
    /// a live summary; publishes to Redis too when REDIS_URL is set.
    Local {
        /// Number of shards, 1-1024 (default: the example's 4).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        shards: Option<u16>,
        /// Tick of the synthetic market, a Go duration (default: the example's 5s is slow to
        /// watch, so 1s).
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: String,
        /// Seed of the synthetic market.
        #[arg(long, default_value_t = 1)]
        seed: i64,
        /// A ticker list file to stream instead of the S&P 500.
        #[arg(long)]
        tickers_file: Option<PathBuf>,
        /// Stop after this long (default: run until Ctrl-C).
        #[arg(long, value_parser = parse_local_duration)]
        duration: Option<Duration>,
        /// Stream from a streaming source instead of the synthetic market: yahoo-stream,
        /// alpaca or polygon, served at --source-url (`SOURCE=alpaca make run` starts a local
        /// server speaking the vendor's protocol and passes both).
        #[arg(long, requires = "source_url")]
        source: Option<String>,
        /// WebSocket URL of the --source server.
        #[arg(long, requires = "source")]
        source_url: Option<String>,
    },
    /// Fetch history (daily or intraday bars of stocks, indices, crypto) from a vendor into the
    /// store's database; resumable. See docs/history.md.
    Backfill(Box<BackfillArgs>),
    /// Validate a recording of contract quotes (NDJSON, one quote per line) exactly as the
    /// worker validates quotes before publishing, and report every line that would be dropped.
    Check {
        /// The NDJSON file, or - for standard input.
        file: PathBuf,
    },
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    bounds::GRACE.parse(s).map_err(|e| e.to_string())
}

fn parse_max_clock_skew(s: &str) -> Result<Duration, String> {
    bounds::MAX_CLOCK_SKEW.parse(s).map_err(|e| e.to_string())
}

fn parse_queue_bytes(s: &str) -> Result<u64, String> {
    bounds::QUEUE_BYTES.parse(s)
}

fn parse_reload_every(s: &str) -> Result<Duration, String> {
    bounds::RELOAD_EVERY.parse(s).map_err(|e| e.to_string())
}

fn parse_local_duration(s: &str) -> Result<Duration, String> {
    bounds::LOCAL_DURATION.parse(s).map_err(|e| e.to_string())
}

/// Checked here so the error names `--interval`; the worker keeps the text (worker.json's form).
fn parse_interval(s: &str) -> Result<String, String> {
    bounds::INTERVAL
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Parses the command line. A bad value exits 1 (like every other refusal of this binary) with
/// clap's message, which names the flag; `--help` and `--version` exit 0.
fn parse_cli() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let local = matches!(cli.command, Command::Local { .. } | Command::Backfill(_));
    init_tracing(cli.log_format, local);
    quotestream_runtime::install_crypto_provider();
    let mut termination_log = None;
    let result = match cli.command {
        Command::Backfill(args) => return backfill(*args),
        Command::Check { file } => {
            return match check(&file) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Run {
            config,
            listen,
            grace,
            max_clock_skew,
            reload_every,
            queue_bytes,
            schedule_clock,
            termination_log: log,
            buffer_dir,
        } => runtime().and_then(|rt| {
            termination_log = log;
            let options = RunOptions {
                grace,
                max_clock_skew,
                queue_bytes,
                clock: schedule_clock.map(Clock::starting_at).unwrap_or_default(),
                buffer_dir,
                ..RunOptions::default()
            };
            rt.block_on(run(config, listen, options, reload_every))
        }),
        Command::Local {
            shards,
            interval,
            seed,
            tickers_file,
            duration,
            source,
            source_url,
        } => runtime().and_then(|rt| {
            rt.block_on(async move {
                let tickers = tickers_file
                    .map(|p| {
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("reading {}", p.display()))
                    })
                    .transpose()?;
                let opts = LocalOptions {
                    shards: shards.map(usize::from),
                    interval: Some(interval),
                    seed,
                    tickers,
                    duration,
                    refresh: Duration::from_secs(1),
                    stream: match (source, source_url) {
                        (Some(kind), Some(url)) => Some(LocalStream::new(&kind, url)?),
                        _ => None,
                    },
                };
                let shutdown = quotestream_runtime::shutdown_on_signal("draining");
                local::run(opts, RunOptions::default().with_process_env(), shutdown).await?;
                Ok(())
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if let Some(path) = termination_log {
                write_termination_message(&path, &err);
            }
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 when every ticker is done, 1 naming the failed ones, 2 when the run could not start.
fn backfill(args: BackfillArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    let report = match rt.block_on(args.execute()) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    for ticker in &report.tickers {
        println!("{}", ticker.line());
    }
    let failed = report.failed();
    println!(
        "backfill: {} tickers, {} done, {} failed, in {:.1}s ({} waits for the request budget)",
        report.tickers.len(),
        report.tickers.len() - failed.len(),
        failed.len(),
        report.elapsed.as_secs_f64(),
        report.rate_limit_waits
    );
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "error: backfill failed for {} of {} tickers (a rerun resumes where this one stopped):",
        failed.len(),
        report.tickers.len()
    );
    for t in failed {
        eprintln!(
            "  {}: {}",
            t.symbol,
            t.error.as_deref().unwrap_or("unknown")
        );
    }
    ExitCode::FAILURE
}

/// Writes why the worker stopped, in one line, where kubelet reads the termination message:
/// a sink failure as its `SinkFailure::line` (the operator turns it into the stream's
/// `Degraded` condition), anything else as the error's text.
fn write_termination_message(path: &std::path::Path, err: &anyhow::Error) {
    let line = match err.downcast_ref::<WorkerError>() {
        Some(WorkerError::SinkFailed(failure)) => failure.line(),
        _ => one_line(&format!("{err:#}")),
    };
    if let Err(e) = std::fs::write(path, line + "\n") {
        eprintln!(
            "error: writing the termination message to {}: {e}",
            path.display()
        );
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn run(
    path: PathBuf,
    listen: SocketAddr,
    options: RunOptions,
    reload_every: Duration,
) -> anyhow::Result<()> {
    let config = config_file::load(&path)?;
    let options = options.with_process_env();
    let mut worker = Worker::new(config.clone(), options, None)?;
    let shutdown = quotestream_runtime::shutdown_on_signal("draining");
    // Not the shutdown token: /metrics stays up while the sinks drain, so the last scrape
    // sees the final counters; it stops once the worker has logged its summary.
    let server_stop = tokio_util::sync::CancellationToken::new();
    let (bound, server) = server::serve(
        listen,
        worker.metrics().clone(),
        worker.health().clone(),
        worker.in_force().clone(),
        server_stop.clone(),
    )
    .await
    .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%bound, "serving /metrics, /health, /ready");
    // After the endpoints are up (/health answers while a slow database is reached), before
    // any quote is taken: a permanent failure here exits 1 naming the sink and the setting.
    // A SIGTERM meanwhile ends the wait; the worker then starts and drains at once.
    let connected = tokio::select! {
        r = worker.connect() => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    if let Err(e) = connected {
        server_stop.cancel();
        let _ = server.await;
        return Err(e.into());
    }
    let watcher = tokio::spawn(config_file::watch(
        path,
        config,
        reload_every,
        worker.reload_handle(),
        shutdown.clone(),
    ));
    let result = worker.run(shutdown.clone()).await;
    shutdown.cancel();
    let _ = watcher.await;
    server_stop.cancel();
    let _ = server.await;
    result?;
    Ok(())
}

fn init_tracing(format: Option<LogFormat>, local: bool) {
    let json = format.map(|f| matches!(f, LogFormat::Json));
    quotestream_runtime::init_logging(json, if local { "warn" } else { "info" });
}

/// Returns the number of invalid lines.
fn check(file: &PathBuf) -> anyhow::Result<usize> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        Box::new(BufReader::new(f))
    };
    let now = jiff::Timestamp::now();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let verdict = wire::parse_contract_json(&line)
            .map_err(|e| e.to_string())
            .and_then(|raw| validate(raw, now).map_err(|e| e.to_string()));
        match verdict {
            Ok(_) => valid += 1,
            Err(why) => {
                invalid += 1;
                println!("line {}: {why}", i + 1);
            }
        }
    }
    println!("{valid} valid, {invalid} invalid");
    Ok(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("quotestream-worker").chain(args.iter().copied()))
    }

    #[test]
    fn zero_durations_are_refused_naming_the_flag() {
        for (args, flag) in [
            (vec!["run", "--reload-every", "0s"], "--reload-every"),
            (vec!["run", "--grace", "0ms"], "--grace"),
            (vec!["local", "--interval", "0s"], "--interval"),
            (vec!["local", "--duration", "0s"], "--duration"),
            (vec!["local", "--shards", "0"], "--shards"),
            (vec!["run", "--queue-bytes", "0"], "--queue-bytes"),
            (vec!["run", "--queue-bytes", "lots"], "--queue-bytes"),
        ] {
            let err = parse(&args)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    proptest! {
        /// Any text for a duration flag either parses within the flag's bounds or is an error
        /// naming the flag; nothing panics.
        #[test]
        fn duration_flags_never_accept_what_the_runtime_cannot_use(
            text in "-?[0-9]{1,22}(\\.[0-9]{1,9})?(ns|us|ms|s|m|h)|\\PC{0,12}",
        ) {
            // `--flag=value`: a value starting with `-` is still the flag's value.
            let (grace, reload) = (format!("--grace={text}"), format!("--reload-every={text}"));
            match parse(&["run", &grace, &reload]) {
                Ok(Cli { command: Command::Run { grace, reload_every, .. }, .. }) => {
                    prop_assert!(grace >= bounds::GRACE.min && grace <= bounds::GRACE.max);
                    prop_assert!(reload_every >= bounds::RELOAD_EVERY.min && reload_every <= bounds::RELOAD_EVERY.max);
                }
                Ok(_) => prop_assert!(false, "parsed as another command"),
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("--grace") || msg.contains("--reload-every"), "{}", msg);
                }
            }
            let (interval, duration) = (format!("--interval={text}"), format!("--duration={text}"));
            match parse(&["local", &interval, &duration]) {
                Ok(Cli { command: Command::Local { interval, duration, .. }, .. }) => {
                    let interval = bounds::INTERVAL.parse(&interval);
                    prop_assert!(interval.is_ok_and(|d| !d.is_zero()));
                    prop_assert!(duration.is_some_and(|d| !d.is_zero()));
                }
                Ok(_) => prop_assert!(false, "parsed as another command"),
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("--interval") || msg.contains("--duration"), "{}", msg);
                }
            }
        }
    }
}
