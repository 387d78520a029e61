//! `quotestream-operator`: the quotestream control plane and its offline tools.

mod assign;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The quotestream operator: reconciles QuoteStream resources into sharded worker Deployments.
#[derive(Debug, Parser)]
#[command(
    name = "quotestream-operator",
    version,
    about,
    after_help = "Examples:\n  \
        quotestream-operator crd > crds/quotestream.yaml\n  \
        quotestream-operator assign -f examples/sp500.yaml\n  \
        quotestream-operator assign -f examples/sp500.yaml --shards 8 --ticker AAPL\n  \
        quotestream-operator assign --tickers-file tickers.txt --shards 4 --output json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the QuoteStream CustomResourceDefinition (YAML), generated from the Rust types.
    Crd,
    /// Show which shard owns which ticker, exactly as the operator assigns them.
    Assign(assign::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
