//! `quotestream-worker`: the quotestream data plane.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use quotestream_api::contract;
use quotestream_worker::assembly::{RunOptions, Worker};
use quotestream_worker::local::{self, LocalOptions, LocalStream};
use quotestream_worker::quote::{validate, wire};
use quotestream_worker::{config_file, server};

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
        quotestream-worker check recording.ndjson"
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
        #[arg(long, env = contract::env::GRACE, default_value = contract::WORKER_GRACE, value_parser = parse_duration)]
        grace: Duration,
        /// How often the configuration file is checked for a new ticker list.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        reload_every: Duration,
    },
    /// Run the example S&P 500 stream locally: every shard in this process, synthetic quotes,
    /// a live summary; publishes to Redis too when REDIS_URL is set.
    Local {
        /// Number of shards (default: the example's 4).
        #[arg(long)]
        shards: Option<usize>,
        /// Tick of the synthetic market, a Go duration (default: the example's 5s is slow to
        /// watch, so 1s).
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Seed of the synthetic market.
        #[arg(long, default_value_t = 1)]
        seed: i64,
        /// A ticker list file to stream instead of the S&P 500.
        #[arg(long)]
        tickers_file: Option<PathBuf>,
        /// Stop after this long (default: run until Ctrl-C).
        #[arg(long, value_parser = parse_duration)]
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
    /// Validate a recording of contract quotes (NDJSON, one quote per line) exactly as the
    /// worker validates quotes before publishing, and report every line that would be dropped.
    Check {
        /// The NDJSON file, or - for standard input.
        file: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    quotestream_api::duration::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let local = matches!(cli.command, Command::Local { .. });
    init_tracing(cli.log_format, local);
    quotestream_runtime::install_crypto_provider();
    let result = match cli.command {
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
            reload_every,
        } => runtime().and_then(|rt| rt.block_on(run(config, listen, grace, reload_every))),
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
                    shards,
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
            ExitCode::FAILURE
        }
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
    grace: Duration,
    reload_every: Duration,
) -> anyhow::Result<()> {
    let config = config_file::load(&path)?;
    let options = RunOptions {
        grace,
        ..RunOptions::default()
    }
    .with_process_env();
    let worker = Worker::new(config.clone(), options, None)?;
    let shutdown = quotestream_runtime::shutdown_on_signal("draining");
    let (bound, server) = server::serve(
        listen,
        worker.metrics().clone(),
        worker.health().clone(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%bound, "serving /metrics, /health, /ready");
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
