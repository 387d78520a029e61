//! `quotestream-operator assign`: compute a stream's shard assignment offline, for planning a
//! reshard or debugging which worker owns a ticker.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::ValueEnum;
use quotestream_api::sharding::{Assignment, balanced_split, rebalance};
use quotestream_api::{QuoteStream, Ticker, TickerSet};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A QuoteStream manifest (YAML); its spec.tickers and spec.shards are used.
    #[arg(short = 'f', long = "file", value_name = "MANIFEST")]
    manifest: Option<PathBuf>,
    /// A ticker list (one per line or comma separated), e.g. the data of a tickersFrom ConfigMap.
    /// Combined with the manifest's inline tickers when both are given.
    #[arg(long, value_name = "FILE")]
    tickers_file: Option<PathBuf>,
    /// Shard count (overrides the manifest's spec.shards).
    #[arg(long, value_name = "N")]
    shards: Option<NonZeroUsize>,
    /// Also show what changes when going from the assignment at this shard count to --shards,
    /// evolving the stored assignment the way the operator does.
    #[arg(long, value_name = "N")]
    from_shards: Option<NonZeroUsize>,
    /// Only print the shard that owns this ticker.
    #[arg(long, value_name = "SYMBOL")]
    ticker: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    /// Shard, size and tickers per line.
    Table,
    /// {"shards": [["AAPL", ...], ...], "hash": "..."}.
    Json,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (tickers, manifest_shards) = load(args)?;
    let shards = match (args.shards, manifest_shards) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => bail!("give --shards N (or a manifest with spec.shards)"),
    };
    let assignment = match args.from_shards {
        Some(from) => {
            let before = balanced_split(&tickers, from);
            let after = rebalance(&before, &tickers, shards);
            eprintln!(
                "{from} -> {shards} shards: {} of {} tickers move (minimum possible: {})",
                before.moved_to(&after),
                tickers.len(),
                before.minimum_moves(shards)
            );
            after
        }
        None => balanced_split(&tickers, shards),
    };

    if let Some(symbol) = &args.ticker {
        let ticker = Ticker::parse(symbol).with_context(|| format!("--ticker {symbol}"))?;
        let owners = assignment.owners();
        let shard = owners
            .get(&ticker)
            .with_context(|| format!("{ticker} is not one of the stream's tickers"))?;
        println!("{ticker} -> shard {shard}");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Table => print_table(&mut out, &assignment)?,
        Output::Json => {
            let shards: Vec<Vec<&str>> = assignment
                .shards()
                .iter()
                .map(|s| s.iter().map(Ticker::as_str).collect())
                .collect();
            let doc = serde_json::json!({ "shards": shards, "hash": assignment.fingerprint() });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(())
}

fn load(args: &Args) -> anyhow::Result<(TickerSet, Option<NonZeroUsize>)> {
    let list = args
        .tickers_file
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let Some(path) = &args.manifest else {
        let text =
            list.context("give a QuoteStream manifest (-f) or a ticker list (--tickers-file)")?;
        return Ok((
            TickerSet::parse_list(&text).context("--tickers-file")?,
            None,
        ));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let stream: QuoteStream = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a QuoteStream manifest", path.display()))?;
    let spec = &stream.spec;
    // With tickersFrom but no --tickers-file there is nothing to read the ConfigMap list from.
    let tickers = if spec.tickers_from.is_some() && list.is_none() {
        bail!(
            "{} reads tickers from a ConfigMap (spec.tickersFrom); pass its list with --tickers-file",
            path.display()
        )
    } else if spec.tickers_from.is_none() && list.is_some() {
        let inline = spec.ticker_set(None)?;
        let extra =
            TickerSet::parse_list(list.as_deref().unwrap_or_default()).context("--tickers-file")?;
        inline.union_disjoint(extra).map_err(|t| {
            anyhow::anyhow!("ticker {t} is both in the manifest and in --tickers-file")
        })?
    } else {
        spec.ticker_set(list.as_deref())?
    };
    let shards = spec.shard_count(&tickers)?;
    Ok((tickers, Some(shards)))
}

fn print_table(out: &mut impl Write, a: &Assignment) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>5}  {:>7}  {:<16}  tickers",
        "shard", "tickers", "fingerprint"
    )?;
    for (i, list) in a.shards().iter().enumerate() {
        let names: Vec<&str> = list.iter().map(Ticker::as_str).collect();
        writeln!(
            out,
            "{i:>5}  {:>7}  {:<16}  {}",
            list.len(),
            a.shard_fingerprint(i),
            names.join(",")
        )?;
    }
    let sizes = a.sizes();
    writeln!(
        out,
        "{} tickers over {} shards (min {}, max {}), assignment {}",
        a.ticker_count(),
        a.shard_count(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        a.fingerprint()
    )
}
