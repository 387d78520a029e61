//! Reading a recording: NDJSON (one contract 004 quote per line) or CSV with a header
//! (`ticker,timestamp,price,volume[,bid,ask,open,high,low][,source]`). A recording is read one
//! line at a time ([`read_each`]): a million quotes cost the memory of one line, not of the
//! file.

use std::io::BufRead;
use std::path::Path;

use jiff::Timestamp;
use quotestream_api::crd::ReplayFormat;
use serde::Deserialize;

use crate::quote::RawQuote;
use crate::quote::wire::{STORAGE_SOURCES, parse_contract_json};

/// A line of the recording that could not be read, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// Bad lines kept for the log; beyond them they are only counted.
const BAD_LINES_KEPT: usize = 20;

/// What one pass over a recording found, without keeping its quotes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    pub quotes: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// Every quote at or after the one before it: the file can be played as it is read.
    pub in_order: bool,
    /// The first bad lines (at most 20) and how many there are.
    pub bad: Vec<BadLine>,
    pub bad_lines: u64,
}

/// Reads the recording at `path` once, keeping only its bounds and the first bad lines.
/// Blocking: run it on a blocking thread.
pub fn scan(path: &Path, format: ReplayFormat) -> std::io::Result<Scan> {
    let mut scan = Scan {
        in_order: true,
        ..Scan::default()
    };
    read_each(path, format, |item| {
        match item {
            Ok(q) => {
                scan.quotes += 1;
                if scan.last.is_some_and(|last| q.timestamp < last) {
                    scan.in_order = false;
                }
                scan.first = Some(scan.first.map_or(q.timestamp, |f| f.min(q.timestamp)));
                scan.last = Some(scan.last.map_or(q.timestamp, |l| l.max(q.timestamp)));
            }
            Err(bad) => {
                scan.bad_lines += 1;
                if scan.bad.len() < BAD_LINES_KEPT {
                    scan.bad.push(bad);
                }
            }
        }
        true
    })?;
    Ok(scan)
}

/// Reads the recording at `path` in file order, calling `each` for every quote or bad line
/// until it returns false. Blocking: run it on a blocking thread.
pub fn read_each(
    path: &Path,
    format: ReplayFormat,
    each: impl FnMut(Result<RawQuote, BadLine>) -> bool,
) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    read_from(std::io::BufReader::new(file), format, each)
}

/// The quotes of a recording held in memory, in time order, and the lines that could not be
/// read.
pub fn parse(text: &str, format: ReplayFormat) -> (Vec<RawQuote>, Vec<BadLine>) {
    let (mut quotes, mut bad) = (Vec::new(), Vec::new());
    // Reading from memory cannot fail.
    let _ = read_from(text.as_bytes(), format, |item| {
        match item {
            Ok(q) => quotes.push(q),
            Err(b) => bad.push(b),
        }
        true
    });
    quotes.sort_by_key(|q| q.timestamp);
    (quotes, bad)
}

fn read_from(
    reader: impl BufRead,
    format: ReplayFormat,
    mut each: impl FnMut(Result<RawQuote, BadLine>) -> bool,
) -> std::io::Result<()> {
    match format {
        ReplayFormat::Ndjson => {
            for (i, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let item = parse_contract_json(&line).map_err(|e| BadLine {
                    line: i + 1,
                    reason: e.to_string(),
                });
                if !each(item) {
                    break;
                }
            }
            Ok(())
        }
        ReplayFormat::Csv => read_csv(reader, each),
    }
}

#[derive(Debug, Deserialize)]
struct CsvRow {
    ticker: String,
    timestamp: String,
    price: f64,
    volume: f64,
    bid: Option<f64>,
    ask: Option<f64>,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    source: Option<String>,
}

fn read_csv(
    reader: impl std::io::Read,
    mut each: impl FnMut(Result<RawQuote, BadLine>) -> bool,
) -> std::io::Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            each(Err(BadLine {
                line: 1,
                reason: format!("header: {e}"),
            }));
            return Ok(());
        }
    };
    let mut record = csv::StringRecord::new();
    loop {
        let item = match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                record
                    .deserialize::<CsvRow>(Some(&headers))
                    .map_err(|e| e.to_string())
                    .and_then(csv_quote)
                    .map_err(|reason| BadLine { line, reason })
            }
            Err(e) => {
                each(Err(BadLine {
                    line: e.position().map_or(0, |p| p.line() as usize),
                    reason: e.to_string(),
                }));
                return Ok(());
            }
        };
        if !each(item) {
            return Ok(());
        }
    }
}

fn csv_quote(r: CsvRow) -> Result<RawQuote, String> {
    let timestamp: Timestamp = r.timestamp.parse().map_err(|e| {
        format!(
            "timestamp {:?} is not ISO 8601 UTC (e.g. 2026-01-20T14:30:15.123Z): {e}",
            r.timestamp
        )
    })?;
    let source = match r.source.as_deref() {
        None | Some("") => "replay",
        Some(s) => STORAGE_SOURCES
            .iter()
            .find(|k| **k == s)
            .copied()
            .ok_or_else(|| format!("source {s:?} is unknown; use one of {STORAGE_SOURCES:?}"))?,
    };
    Ok(RawQuote {
        ticker: r.ticker,
        timestamp,
        price: r.price,
        volume: r.volume,
        bid: r.bid,
        ask: r.ask,
        open: r.open,
        high: r.high,
        low: r.low,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_in_time_order_with_bad_lines_reported() {
        let text = concat!(
            r#"{"ticker":"MSFT","timestamp":"2026-01-20T14:30:16.000Z","price":400.5,"volume":10,"source":"yfinance"}"#,
            "\n",
            "\n",
            "not json\n",
            r#"{"ticker":"AAPL","timestamp":"2026-01-20T14:30:15.000Z","price":185.5,"volume":10,"source":"yfinance"}"#,
            "\n",
        );
        let (quotes, bad) = parse(text, ReplayFormat::Ndjson);
        assert_eq!(
            quotes.iter().map(|q| q.ticker.as_str()).collect::<Vec<_>>(),
            ["AAPL", "MSFT"]
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
    }

    #[test]
    fn a_scan_keeps_the_bounds_not_the_quotes_and_tells_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.ndjson");
        let line = |t: &str, s: u32| {
            format!(
                r#"{{"ticker":"{t}","timestamp":"2026-01-20T14:30:{s:02}.000Z","price":1.5,"volume":1,"source":"replay"}}"#
            )
        };
        let in_order = [
            line("AAPL", 1),
            line("MSFT", 2),
            "oops".into(),
            line("AAPL", 3),
        ];
        std::fs::write(&path, in_order.join("\n")).unwrap();
        let s = scan(&path, ReplayFormat::Ndjson).unwrap();
        assert_eq!((s.quotes, s.bad_lines, s.in_order), (3, 1, true));
        assert_eq!(s.first.unwrap().to_string(), "2026-01-20T14:30:01Z");
        assert_eq!(s.last.unwrap().to_string(), "2026-01-20T14:30:03Z");
        assert_eq!(s.bad[0].line, 3);
        let mut read = Vec::new();
        read_each(&path, ReplayFormat::Ndjson, |item| {
            read.extend(item.ok().map(|q| q.ticker));
            read.len() < 2
        })
        .unwrap();
        assert_eq!(
            read,
            ["AAPL", "MSFT"],
            "file order, and it stops when asked"
        );
        std::fs::write(&path, [line("AAPL", 5), line("MSFT", 4)].join("\n")).unwrap();
        let s = scan(&path, ReplayFormat::Ndjson).unwrap();
        assert!(!s.in_order);
        assert_eq!(s.first.unwrap().to_string(), "2026-01-20T14:30:04Z");
    }

    #[test]
    fn csv_with_optional_columns() {
        let text = "ticker,timestamp,price,volume,bid,ask\nAAPL,2026-01-20T14:30:15.123Z,185.5,100,185.4,185.6\nMSFT,yesterday,1,1,,\n";
        let (quotes, bad) = parse(text, ReplayFormat::Csv);
        assert_eq!(quotes.len(), 1);
        assert_eq!(quotes[0].bid, Some(185.4));
        assert_eq!(quotes[0].source, "replay");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.contains("yesterday"), "{}", bad[0].reason);
    }
}
