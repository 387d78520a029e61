//! What the benchmark harnesses (`bench_*` examples) share: quick mode, quote generation,
//! medians, number formatting, the machine line, and the Python interpreter of the seeds' stack.
//! Not an example itself (a directory without main.rs); each harness includes it with `mod`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use jiff::Timestamp;
use quotestream_worker::quote::{Quote, RawQuote, validate};

/// 2026-01-20T14:30:15.123Z: the first timestamp of generated quotes.
pub const T0_MS: i64 = 1_768_919_415_123;

/// `--quick` on the command line: a few seconds per row (CI runs it so the harness cannot
/// rot; its numbers are not the ones in docs/benchmarks.md).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// Full or quick value of a size.
pub fn pick<T>(full: T, quick_value: T) -> T {
    if quick() { quick_value } else { full }
}

/// A ticker symbol for index `i`: AAA, AAB, … (three letters, 17 576 of them), then four.
pub fn symbol(i: usize) -> String {
    let len = if i < 17_576 { 3 } else { 4 };
    (0..len)
        .rev()
        .map(|k| char::from(b'A' + (i / 26usize.pow(k) % 26) as u8))
        .collect()
}

/// `n` symbols.
pub fn symbols(n: usize) -> Vec<String> {
    (0..n).map(symbol).collect()
}

/// Quote number `seq` of a stream over `tickers` symbols, one quote per ticker per second,
/// validated; prices in whole cents with a one-cent spread, every optional field present.
pub fn quote(symbols: &[String], seq: usize, now: Timestamp) -> anyhow::Result<Quote> {
    let tickers = symbols.len();
    let cents = 10_000 + (seq % 997) as i64 * 7;
    let price = cents as f64 / 100.0;
    let q = validate(
        RawQuote {
            ticker: symbols[seq % tickers].clone(),
            timestamp: Timestamp::from_millisecond(T0_MS + (seq / tickers) as i64 * 1000)?,
            price,
            volume: (40_000_000 + seq) as f64,
            bid: Some((cents - 1) as f64 / 100.0),
            ask: Some((cents + 1) as f64 / 100.0),
            open: Some(price - 0.5),
            high: Some(price + 1.0),
            low: Some(price - 1.0),
            source: "synthetic",
        },
        now,
    )?;
    Ok(q)
}

/// The median of `values` (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `1234567.8` → `1 234 568`.
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let s = format!("{v:.0}");
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::from(sign);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Seconds with three decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The 1-minute load average: on a shared machine it tells whether a run had the cores to
/// itself.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// A line for the report saying how the numbers were made.
pub fn build_note() -> &'static str {
    if cfg!(debug_assertions) {
        " DEBUG build: the numbers say only that the harness works."
    } else {
        ""
    }
}

/// Warns on stderr when the harness runs unoptimised.
pub fn warn_if_debug() {
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for meaningful numbers");
    }
}

/// `target/<profile>/quotestream-worker`, next to this example's directory.
pub fn worker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|profile| profile.join("quotestream-worker"));
    match bin {
        Some(bin) if bin.is_file() => Ok(bin),
        _ => bail!(
            "build the worker first: cargo build --release -p quotestream-worker --bins --examples (looked for {bin:?})"
        ),
    }
}

/// The Python interpreter with the seeds' stack (`BENCH_PYTHON`, set by scripts/bench.sh from
/// scripts/bench/python-env.sh).
pub fn python() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("BENCH_PYTHON").context(
        "BENCH_PYTHON is not set: run the harness through scripts/bench.sh, or set it to the python of scripts/bench/python-env.sh",
    )?;
    Ok(PathBuf::from(path))
}

/// A script under scripts/bench/.
pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/bench")
        .join(name)
}

/// Runs a Python baseline script and parses the JSON object it prints last on stdout.
pub async fn run_python(script: &str, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let python = python()?;
    let path = python_script(script);
    let out = tokio::process::Command::new(&python)
        .arg(&path)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {} {}", python.display(), path.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{script} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{script} printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("{script} printed {line:?}, not JSON"))
}
