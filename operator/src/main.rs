//! `quotestream-operator`: the quotestream control plane and its offline tools.

mod assign;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quotestream_operator::run::RunArgs;

/// The quotestream operator: reconciles QuoteStream resources into sharded worker Deployments.
#[derive(Debug, Parser)]
#[command(
    name = "quotestream-operator",
    version,
    about,
    after_help = "Examples:\n  \
        quotestream-operator                                   # run the controller (KUBECONFIG or in-cluster)\n  \
        quotestream-operator run --namespace markets --leader-election\n  \
        quotestream-operator crd > crds/quotestream.yaml\n  \
        quotestream-operator assign -f examples/sp500.yaml\n  \
        quotestream-operator assign -f examples/sp500.yaml --shards 8 --ticker AAPL\n  \
        quotestream-operator assign --tickers-file tickers.txt --shards 4 --output json"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (the default): watch QuoteStreams and reconcile their shards.
    Run(RunArgs),
    /// Print the QuoteStream CustomResourceDefinition (YAML), generated from the Rust types.
    Crd,
    /// Show which shard owns which ticker, exactly as the operator assigns them.
    Assign(assign::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // No subcommand runs the controller with its flags' defaults and environment variables.
    let command = cli
        .command
        .unwrap_or_else(|| Command::Run(RunOnly::parse_from(["quotestream-operator"]).args));
    let result = match command {
        Command::Run(args) => run_controller(args),
        Command::Crd => quotestream_api::crd::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Assign(args) => assign::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `run`'s arguments (defaults and environment) for the bare invocation.
#[derive(Debug, Parser)]
struct RunOnly {
    #[command(flatten)]
    args: RunArgs,
}

fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    quotestream_runtime::init_logging(None, "info");
    quotestream_runtime::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = quotestream_runtime::shutdown_on_signal("stopping the controller");
        quotestream_operator::run::run(args, shutdown).await
    })
}
