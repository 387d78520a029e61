//! `quotestream-worker`: the quotestream data plane.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quotestream_worker::quote::{validate, wire};

/// The quotestream worker: streams one shard of a QuoteStream from its source to its sinks.
#[derive(Debug, Parser)]
#[command(
    name = "quotestream-worker",
    version,
    about,
    after_help = "Examples:\n  \
        quotestream-worker check recording.ndjson\n  \
        cat recording.ndjson | quotestream-worker check -"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a recording of contract quotes (NDJSON, one quote per line) exactly as the
    /// worker validates quotes before publishing, and report every line that would be dropped.
    Check {
        /// The NDJSON file, or - for standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { file } => match check(&file) {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(2)
            }
        },
    }
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
