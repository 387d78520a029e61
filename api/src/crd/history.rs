//! `spec.history`: how much past each ticker of the stream should have in the database. The
//! operator backfills it with Kubernetes Jobs (`quotestream-worker backfill`) for the tickers
//! that lack it, and reports progress in `status.history`.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{AlpacaCredentials, SecretKeyRef, Source, SourceType, schema};

/// The depth a history field accepts: a whole number of days (d), weeks (w), months (mo, 30
/// days) or years (y, 365 days).
pub const DEPTH_PATTERN: &str = "^[1-9][0-9]{0,3}(d|w|mo|y)$";
/// The longest depth, in days (100 years).
pub const MAX_DEPTH_DAYS: u32 = 36_500;

/// How much history every ticker of the stream should have, and from which vendor. The operator
/// runs `quotestream-worker backfill` Jobs for the tickers that lack it (adding a ticker
/// backfills that ticker only) and reports progress in status.history. The bars go to the
/// database of spec.sinks.postgres.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.daily) || has(self.intraday)")
        .message("spec.history needs spec.history.daily (e.g. 2y) or spec.history.intraday (e.g. {interval: 1m, depth: 7d}), or remove spec.history"),
    validation = Rule::new("!has(self.alpaca) || self.source == 'alpaca'")
        .message("spec.history.alpaca is set but spec.history.source is not alpaca: set source: alpaca or remove spec.history.alpaca"),
    validation = Rule::new("!has(self.polygon) || self.source == 'polygon'")
        .message("spec.history.polygon is set but spec.history.source is not polygon: set source: polygon or remove spec.history.polygon"),
    validation = Rule::new(yahoo_intraday_rule())
        .message("spec.history.intraday.depth is more than Yahoo serves at this interval (1m: 30d, 2m to 90m: 60d, 1h: 730d): lower the depth, pick a coarser interval, or use source alpaca or polygon")
        .field_path(".intraday.depth"),
)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Vendor of the historical bars: yahoo (default, no credentials), alpaca or polygon.
    #[serde(default)]
    pub source: HistorySource,

    /// Daily bars this far back, e.g. 2y, 18mo, 90d (d days, w weeks, mo 30 days, y 365 days;
    /// at most 100y).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "depth")]
    pub daily: Option<String>,

    /// Intraday bars: their interval and how far back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intraday: Option<IntradayHistory>,

    /// Base URL of the vendor's bars API (a proxy or a test server). Unset: the vendor's own
    /// (for yahoo, spec.source.yahoo.baseUrl when the stream polls Yahoo). Checked against the
    /// cluster admin's hosts for the vendor, like the live source's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::http_url")]
    pub base_url: Option<String>,

    /// Alpaca credentials (source alpaca). Unset: those of spec.source.alpaca.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpaca: Option<HistoryAlpaca>,

    /// Massive/Polygon API key (source polygon). Unset: that of spec.source.polygon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon: Option<HistoryPolygon>,

    /// Tickers per backfill Job (default 100).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: i32,

    /// Backfill Jobs of this stream running at once (default 2).
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 16))]
    pub parallelism: i32,

    /// Requests per hour the stream's backfill may make to the vendor, shared by its running
    /// Jobs (each gets requestsPerHour / parallelism). Default: yahoo 2000, alpaca 12000 (200
    /// a minute), polygon 300 (5 a minute, the free plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub requests_per_hour: Option<i64>,

    /// CPU/memory of a backfill pod (default requests 100m/64Mi, limit memory 512Mi: it holds
    /// a batch of bars, more than a streaming worker). The other pod settings are spec.worker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl HistorySpec {
    /// The bars API the backfill reads, with the field that sets it: `spec.history.baseUrl`,
    /// else for Yahoo the live source's `spec.source.yahoo.baseUrl` (the chart API is served
    /// beside the quote API, so a proxy or test server of one is one of the other). The
    /// streaming vendors' live `url` is a WebSocket, another host than their bars API, so it
    /// is not inherited. None: the vendor's own.
    pub fn base_url<'a>(&'a self, live: &'a Source) -> Option<(&'static str, &'a str)> {
        if let Some(url) = &self.base_url {
            return Some(("spec.history.baseUrl", url));
        }
        match (
            self.source,
            live.yahoo.as_ref().and_then(|y| y.base_url.as_deref()),
        ) {
            (HistorySource::Yahoo, Some(url)) if live.kind == SourceType::Yahoo => {
                Some(("spec.source.yahoo.baseUrl", url))
            }
            _ => None,
        }
    }
}

/// Intraday history: bars of `interval`, `depth` back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IntradayHistory {
    /// Bar interval: 1m, 2m, 5m, 15m, 30m, 60m, 90m or 1h.
    pub interval: IntradayInterval,
    /// How far back, e.g. 7d, 30d (d days, w weeks, mo 30 days, y 365 days). Yahoo serves 1m
    /// bars for the last 30 days, 2m to 90m for 60 days, 1h for 730 days.
    #[schemars(schema_with = "depth")]
    pub depth: String,
}

/// The vendors that serve historical bars.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum HistorySource {
    #[default]
    Yahoo,
    Alpaca,
    Polygon,
}

impl HistorySource {
    /// The spelling of `spec.history.source` and of the backfill's `--source`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Yahoo => "yahoo",
            Self::Alpaca => "alpaca",
            Self::Polygon => "polygon",
        }
    }

    /// The request budget of a stream's backfill when `requestsPerHour` is unset: Yahoo's as
    /// the live source's default, Alpaca's and Polygon's free plans (200 and 5 a minute).
    pub fn default_requests_per_hour(self) -> i64 {
        match self {
            Self::Yahoo => 2000,
            Self::Alpaca => 12_000,
            Self::Polygon => 300,
        }
    }

    /// The live source type of the same vendor: its credentials and its allowed hosts.
    pub fn source_type(self) -> SourceType {
        match self {
            Self::Yahoo => SourceType::Yahoo,
            Self::Alpaca => SourceType::Alpaca,
            Self::Polygon => SourceType::Polygon,
        }
    }
}

/// Intraday bar intervals (Yahoo's chart intervals below a day).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntradayInterval {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "2m")]
    M2,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "30m")]
    M30,
    #[serde(rename = "60m")]
    M60,
    #[serde(rename = "90m")]
    M90,
    #[serde(rename = "1h")]
    H1,
}

impl IntradayInterval {
    /// The spelling of the manifest and of the backfill's `--interval`.
    pub fn name(self) -> &'static str {
        match self {
            Self::M1 => "1m",
            Self::M2 => "2m",
            Self::M5 => "5m",
            Self::M15 => "15m",
            Self::M30 => "30m",
            Self::M60 => "60m",
            Self::M90 => "90m",
            Self::H1 => "1h",
        }
    }

    /// How many days back Yahoo serves bars of this interval.
    pub fn yahoo_max_days(self) -> u32 {
        match self {
            Self::M1 => 30,
            Self::H1 => 730,
            _ => 60,
        }
    }
}

/// Alpaca credentials of the history source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryAlpaca {
    /// The Secret holding the API key id and secret key.
    pub credentials_secret_ref: AlpacaCredentials,
}

/// Massive/Polygon credentials of the history source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPolygon {
    /// The Secret key holding the API key.
    pub api_key_secret_ref: SecretKeyRef,
}

fn default_batch_size() -> i32 {
    100
}

fn default_parallelism() -> i32 {
    2
}

/// A depth field is malformed (the CRD's pattern keeps such values out; the operator checks
/// again for objects written before a schema change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field} {value:?} is not a depth: write a whole number and a unit, d (days), w (weeks), mo (30 days) or y (365 days), at most 100y (e.g. 2y, 18mo, 7d)"
)]
pub struct DepthError {
    pub field: &'static str,
    pub value: String,
}

/// The days a depth (`2y`, `18mo`, `7d`) stands for: d 1, w 7, mo 30, y 365.
pub fn depth_days(field: &'static str, value: &str) -> Result<u32, DepthError> {
    let bad = || DepthError {
        field,
        value: value.to_owned(),
    };
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    let per = match unit {
        "d" => 1,
        "w" => 7,
        "mo" => 30,
        "y" => 365,
        _ => return Err(bad()),
    };
    if digits.is_empty() || digits.len() > 4 || digits.starts_with('0') {
        return Err(bad());
    }
    let n: u32 = digits.parse().map_err(|_| bad())?;
    let days = n * per;
    if days > MAX_DEPTH_DAYS {
        return Err(bad());
    }
    Ok(days)
}

/// CEL: the days of the depth string `e` (which the pattern has already checked).
fn days_cel(e: &str) -> String {
    format!(
        "int({e}.find('^[0-9]+')) * ({e}.endsWith('mo') ? 30 : {e}.endsWith('y') ? 365 : {e}.endsWith('w') ? 7 : 1)"
    )
}

/// CEL on `spec.history`: Yahoo serves intraday bars only so far back (1m: 30 days, 2m to 90m:
/// 60 days, 1h: 730 days). A malformed depth is the pattern's to report.
fn yahoo_intraday_rule() -> String {
    let depth = "self.intraday.depth";
    format!(
        "self.source != 'yahoo' || !has(self.intraday) || !{depth}.matches('{DEPTH_PATTERN}') || {days} <= (self.intraday.interval == '1m' ? 30 : self.intraday.interval == '1h' ? 730 : 60)",
        days = days_cel(depth),
    )
}

/// A depth: the pattern, and at most [`MAX_DEPTH_DAYS`].
fn depth(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": DEPTH_PATTERN,
        "maxLength": 8,
        "x-kubernetes-validations": [{
            "rule": format!("!self.matches('{DEPTH_PATTERN}') || {} <= {MAX_DEPTH_DAYS}", days_cel("self")),
            "message": "a history depth is at most 100y (36500 days): lower it",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_are_days() {
        assert_eq!(depth_days("f", "2y"), Ok(730));
        assert_eq!(depth_days("f", "18mo"), Ok(540));
        assert_eq!(depth_days("f", "3w"), Ok(21));
        assert_eq!(depth_days("f", "7d"), Ok(7));
        assert_eq!(depth_days("f", "100y"), Ok(36_500));
        for bad in [
            "", "d", "0d", "07d", "101y", "2", "2h", "1.5y", "-1d", "99999d",
        ] {
            let e = depth_days("spec.history.daily", bad).unwrap_err();
            assert!(
                e.to_string().starts_with("spec.history.daily"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn yahoo_limits_follow_the_interval() {
        assert_eq!(IntradayInterval::M1.yahoo_max_days(), 30);
        assert_eq!(IntradayInterval::M90.yahoo_max_days(), 60);
        assert_eq!(IntradayInterval::H1.yahoo_max_days(), 730);
    }

    #[test]
    fn names_are_the_manifest_spelling() {
        for i in [
            IntradayInterval::M1,
            IntradayInterval::M2,
            IntradayInterval::M5,
            IntradayInterval::M15,
            IntradayInterval::M30,
            IntradayInterval::M60,
            IntradayInterval::M90,
            IntradayInterval::H1,
        ] {
            assert_eq!(serde_json::to_value(i).unwrap(), i.name());
        }
        for s in [
            HistorySource::Yahoo,
            HistorySource::Alpaca,
            HistorySource::Polygon,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert_eq!(s.source_type().name(), s.name());
        }
    }
}
