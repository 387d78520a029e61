//! `quotestream-store`: the storage service. POST /quotes/batch in front of PostgreSQL /
//! TimescaleDB (seed 001 contract, seed 002 storage layer); see docs/store.md.

use std::process::ExitCode;

use quotestream_store::cli::{Cli, Command};
use quotestream_store::server;

fn main() -> ExitCode {
    let cli = match Cli::parse_with_default(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    quotestream_runtime::init_logging(cli.log_json(), "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads())
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quotestream-store: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => server::serve(args).await,
            Command::Migrate(args) => server::migrate_only(args).await,
            Command::Openapi => quotestream_store::openapi::spec()
                .to_pretty_json()
                .map(|json| println!("{json}"))
                .map_err(anyhow::Error::from),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error chain says what failed and what to fix; logged and printed so it is
            // seen in `kubectl logs` whatever the log format.
            tracing::error!(error = format!("{e:#}"), "quotestream-store stopped");
            eprintln!("quotestream-store: {e:#}");
            ExitCode::FAILURE
        }
    }
}
