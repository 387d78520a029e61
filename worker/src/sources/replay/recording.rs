//! Reading a recording: NDJSON (one contract 004 quote per line) or CSV with a header
//! (`ticker,timestamp,price,volume[,bid,ask,open,high,low][,source]`).

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

/// The quotes of a recording in time order, and the lines that could not be read.
pub fn parse(text: &str, format: ReplayFormat) -> (Vec<RawQuote>, Vec<BadLine>) {
    let (mut quotes, bad) = match format {
        ReplayFormat::Ndjson => parse_ndjson(text),
        ReplayFormat::Csv => parse_csv(text),
    };
    quotes.sort_by_key(|q| q.timestamp);
    (quotes, bad)
}

fn parse_ndjson(text: &str) -> (Vec<RawQuote>, Vec<BadLine>) {
    let mut quotes = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_contract_json(line) {
            Ok(q) => quotes.push(q),
            Err(e) => bad.push(BadLine {
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    (quotes, bad)
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

fn parse_csv(text: &str) -> (Vec<RawQuote>, Vec<BadLine>) {
    let mut quotes = Vec::new();
    let mut bad = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            bad.push(BadLine {
                line: 1,
                reason: format!("header: {e}"),
            });
            return (quotes, bad);
        }
    };
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                let row = record
                    .deserialize::<CsvRow>(Some(&headers))
                    .map_err(|e| e.to_string())
                    .and_then(csv_quote);
                match row {
                    Ok(q) => quotes.push(q),
                    Err(reason) => bad.push(BadLine { line, reason }),
                }
            }
            Err(e) => {
                bad.push(BadLine {
                    line: e.position().map_or(0, |p| p.line() as usize),
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
    (quotes, bad)
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
