//! The chart answer: `chart.result[0].timestamp[]` and `indicators.quote[0].{open, high, low,
//! close, volume}[]`, parallel arrays in which a bar without data is null in every array. An
//! answer without `timestamp` is a range without bars. `chart.error` is Yahoo's refusal.

use jiff::Timestamp;
use serde::Deserialize;

use crate::backfill::sources::RawBar;

#[derive(Deserialize)]
struct Envelope {
    chart: Chart,
}

#[derive(Deserialize)]
struct Chart {
    result: Option<Vec<ChartResult>>,
    error: Option<ChartError>,
}

#[derive(Deserialize)]
struct ChartError {
    code: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct ChartResult {
    #[serde(default)]
    timestamp: Vec<i64>,
    indicators: Indicators,
}

#[derive(Deserialize)]
struct Indicators {
    #[serde(default)]
    quote: Vec<Arrays>,
}

#[derive(Deserialize, Default)]
struct Arrays {
    #[serde(default)]
    open: Vec<Option<f64>>,
    #[serde(default)]
    high: Vec<Option<f64>>,
    #[serde(default)]
    low: Vec<Option<f64>>,
    #[serde(default)]
    close: Vec<Option<f64>>,
    #[serde(default)]
    volume: Vec<Option<f64>>,
}

/// The bars of a 200 answer, in the order sent.
pub fn decode(body: &[u8]) -> Result<Vec<RawBar>, String> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| format!("{e}"))?;
    if let Some(error) = envelope.chart.error {
        return Err(format!(
            "chart.error {}: {}",
            error.code.unwrap_or_default(),
            error.description.unwrap_or_default()
        ));
    }
    let Some(result) = envelope.chart.result.and_then(|r| r.into_iter().next()) else {
        return Err("chart.result is empty and chart.error is null".to_owned());
    };
    let n = result.timestamp.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let arrays = result
        .indicators
        .quote
        .into_iter()
        .next()
        .unwrap_or_default();
    for (name, len) in [
        ("open", arrays.open.len()),
        ("high", arrays.high.len()),
        ("low", arrays.low.len()),
        ("close", arrays.close.len()),
        ("volume", arrays.volume.len()),
    ] {
        if len != n {
            return Err(format!(
                "indicators.quote[0].{name} has {len} values for {n} timestamps"
            ));
        }
    }
    result
        .timestamp
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let start =
                Timestamp::from_second(t).map_err(|e| format!("timestamp[{i}] = {t}: {e}"))?;
            Ok(RawBar {
                start,
                open: arrays.open[i],
                high: arrays.high[i],
                low: arrays.low[i],
                close: arrays.close[i],
                volume: arrays.volume[i],
                trades: None,
                vwap: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded answer (shared/reference/yahoo-captures/chart-AAPL.json), body only.
    const RECORDED: &str = r#"{"chart":{"result":[{"meta":{"currency":"USD","symbol":"AAPL","exchangeName":"NMS","instrumentType":"EQUITY","gmtoffset":-14400,"timezone":"EDT","exchangeTimezoneName":"America/New_York","dataGranularity":"1d","range":""},"timestamp":[1645540200],"indicators":{"quote":[{"high":[166.69000244140625],"volume":[91162800],"low":[162.14999389648438],"open":[164.97999572753906],"close":[164.32000732421875]}],"adjclose":[{"adjclose":[161.6998748779297]}]}}],"error":null}}"#;

    #[test]
    fn decodes_the_recorded_answer() {
        let bars = decode(RECORDED.as_bytes()).unwrap();
        assert_eq!(bars.len(), 1);
        assert_eq!(bars[0].start.as_second(), 1_645_540_200);
        assert_eq!(bars[0].close, Some(164.320_007_324_218_75));
        assert_eq!(bars[0].volume, Some(91_162_800.0));
    }

    #[test]
    fn nulls_empty_ranges_and_errors() {
        let nulls = r#"{"chart":{"result":[{"timestamp":[1,2],"indicators":{"quote":[{"open":[1.0,null],"high":[1.0,null],"low":[1.0,null],"close":[1.0,null],"volume":[5,null]}]}}],"error":null}}"#;
        let bars = decode(nulls.as_bytes()).unwrap();
        assert_eq!(bars[1].close, None);
        let empty =
            r#"{"chart":{"result":[{"meta":{},"indicators":{"quote":[{}]}}],"error":null}}"#;
        assert_eq!(decode(empty.as_bytes()).unwrap(), vec![]);
        let refused = r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;
        assert!(
            decode(refused.as_bytes())
                .unwrap_err()
                .contains("symbol may be delisted")
        );
        let ragged = r#"{"chart":{"result":[{"timestamp":[1,2],"indicators":{"quote":[{"open":[1.0],"high":[1.0,1.0],"low":[1.0,1.0],"close":[1.0,1.0],"volume":[1,1]}]}}],"error":null}}"#;
        assert!(
            decode(ragged.as_bytes())
                .unwrap_err()
                .contains("open has 1 values")
        );
    }
}
