//! The `QuoteStream` custom resource (`quotes.opa.io/v1alpha1`).
//!
//! Doc comments on fields become `kubectl explain` text; validation that the API server must
//! enforce (patterns, bounds, CEL `x-kubernetes-validations`) is declared here, next to the
//! fields, and lands in `crds/quotestream.yaml` through `quotestream-operator crd`.

mod autoscale;
mod history;
mod resolve;
mod schedule;
mod schema;
mod sinks;
mod source;
mod status;
mod worker;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use autoscale::Autoscale;
pub use history::{
    DEPTH_PATTERN, DepthError, HistoryAlpaca, HistoryPolygon, HistorySource, HistorySpec,
    IntradayHistory, IntradayInterval, MAX_DEPTH_DAYS, depth_days,
};
pub use resolve::SpecError;
pub use schedule::{ExchangeCalendar, Schedule};
pub use sinks::{
    BUFFER_SIZE_PATTERN, BufferType, DEFAULT_BUFFER_MAX_SIZE, DEFAULT_BUFFER_MAX_SIZE_BYTES,
    DEFAULT_HEALTH_CHANNEL, DEFAULT_QUOTES_CHANNEL, DEFAULT_TABLE, MIN_BUFFER_MAX_SIZE_BYTES,
    PostgresSink, RedisCluster, RedisFormat, RedisSentinel, RedisSink, SinkBuffer, Sinks,
    StorageSink, WhenFull,
};
pub use source::{
    AlpacaCredentials, AlpacaFeed, AlpacaSource, PolygonSource, RateLimit, ReplayFormat,
    ReplaySource, Source, SourceType, SyntheticSource, YahooSource, YahooStreamSource,
};
pub use status::{
    AssignmentStatus, HandoverStatus, HistoryDone, HistoryFailure, HistoryStatus, MarketStatus,
    QuoteStreamStatus, ShardStatus,
};
pub use worker::WorkerTemplate;

/// API group of every quotestream resource and label.
pub const GROUP: &str = "quotes.opa.io";
/// Label on everything the operator creates for a stream: `quotes.opa.io/stream=<name>`.
pub const STREAM_LABEL: &str = "quotes.opa.io/stream";
/// Label on each shard's objects: `quotes.opa.io/shard=<index>`.
pub const SHARD_LABEL: &str = "quotes.opa.io/shard";
/// Shortest and longest polling interval a stream accepts.
pub const MIN_INTERVAL: &str = "100ms";
pub const MAX_INTERVAL: &str = "1h";
/// Inline tickers a manifest may list; longer lists go in a ConfigMap (`tickersFrom`).
pub const MAX_INLINE_TICKERS: usize = 10_000;
/// Upper bound on shards per stream (each is a Deployment).
pub const MAX_SHARDS: i32 = 1024;

/// Desired state of a QuoteStream: which tickers to stream, from which source, to which sinks,
/// over how many shards. Each shard is a worker Deployment owning a balanced, consistent share
/// of the tickers.
// Several print columns share a `type_`; clippy mistakes them for repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "quotes.opa.io",
    version = "v1alpha1",
    kind = "QuoteStream",
    plural = "quotestreams",
    shortname = "qs",
    category = "quotes",
    namespaced,
    status = "QuoteStreamStatus",
    derive = "PartialEq",
    doc = "QuoteStream streams real-time stock quotes for a list of tickers, sharded over worker Deployments.",
    scale(
        spec_replicas_path = ".spec.shards",
        status_replicas_path = ".status.readyShards",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".status.desiredShards",
        description = "Shards the operator runs: spec.shards, or what spec.autoscale chose"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyShards",
        description = "Shards whose worker is ready"
    ),
    printcolumn(
        name = "Tickers",
        type_ = "integer",
        json_path = ".status.tickers",
        description = "Tickers streamed (inline plus ConfigMap)"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.source.type",
        description = "Market-data source"
    ),
    printcolumn(
        name = "Interval",
        type_ = "string",
        json_path = ".spec.interval",
        priority = 1,
        description = "Polling interval"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Reason of the Ready condition"
    ),
    printcolumn(
        name = "History",
        type_ = "string",
        json_path = ".status.history.progress",
        description = "Backfill of spec.history: tickers done, pending, failed"
    ),
    printcolumn(
        name = "Moving",
        type_ = "integer",
        json_path = ".status.handover.movingTickers",
        priority = 1,
        description = "Tickers listed by two shards while a reshard's hand-over waits for the receivers (status.handover)"
    ),
    printcolumn(
        name = "Market",
        type_ = "string",
        json_path = ".status.market.state",
        description = "The exchange's session, for a stream with spec.schedule"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.tickers) || has(self.tickersFrom)")
        .message("list the symbols to stream in spec.tickers or point spec.tickersFrom.configMapKeyRef at a ConfigMap key"),
    validation = Rule::new("!has(self.tickers) || has(self.tickersFrom) || self.shards <= size(self.tickers)")
        .message("spec.shards must not exceed the number of tickers in spec.tickers: lower spec.shards or add tickers")
        .field_path(".shards"),
    validation = Rule::new("!has(self.history) || has(self.sinks.postgres)")
        .message("spec.history writes bars to the stream's PostgreSQL database: add spec.sinks.postgres.dsnSecretRef, or remove spec.history")
        .field_path(".history"),
    validation = Rule::new("!has(self.history) || self.history.source != 'alpaca' || has(self.history.alpaca) || self.source.type == 'alpaca'")
        .message("spec.history.source alpaca needs credentials: set spec.history.alpaca.credentialsSecretRef (a stream with source.type alpaca lends its own)")
        .field_path(".history"),
    validation = Rule::new("!has(self.history) || self.history.source != 'polygon' || has(self.history.polygon) || self.source.type == 'polygon'")
        .message("spec.history.source polygon needs an API key: set spec.history.polygon.apiKeySecretRef (a stream with source.type polygon lends its own)")
        .field_path(".history"),
)]
// Client-side evaluation of those rules (`QuoteStream::validate_cel`, `QuoteStreamSpec::validate_cel`)
// is generated for the unit tests only: it needs `kube/cel`, a dev-dependency (see cel_tests.rs).
#[cfg_attr(test, kube(cel), x_kube(cel))]
#[serde(rename_all = "camelCase")]
pub struct QuoteStreamSpec {
    /// Ticker symbols to stream, upper case, e.g. AAPL. Share classes are written with a dot
    /// (BRK.B, BF.B); indices and crypto pairs by their canonical ids (^GSPC, BTC-USD: sources
    /// yahoo, yahoo-stream, synthetic, replay). quotestream maps them to each vendor's spelling.
    /// Each symbol at most once. For long lists use tickersFrom (both may be combined; a symbol
    /// in both is an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ticker_list")]
    pub tickers: Option<Vec<String>>,

    /// A ConfigMap key holding more tickers, one per line or comma separated (`#` starts a
    /// comment). The operator watches it: editing the list re-shards the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickers_from: Option<TickersFrom>,

    /// How often polling sources (yahoo) fetch quotes, as a Go duration between 100ms and 1h
    /// (500ms, 5s, 1m). Streaming sources ignore it except as the synthetic source's tick.
    #[serde(default = "default_interval")]
    #[schemars(schema_with = "schema::interval")]
    pub interval: String,

    /// Number of worker shards (Deployments), at least 1 and at most the number of tickers.
    /// Scale with `kubectl scale qs/NAME --replicas=N`: only the minimum of tickers moves.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 1024))]
    pub shards: i32,

    /// Where quotes come from.
    pub source: Source,

    /// Where quotes go. At least one sink is required.
    pub sinks: Sinks,

    /// Pod settings of the worker Deployments (and of the history backfill Jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerTemplate>,

    /// How much history each ticker should have (daily and intraday bars), backfilled by Jobs
    /// for the tickers that lack it. Needs spec.sinks.postgres (the bars go to its database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistorySpec>,

    /// Stream only during the exchange's trading hours. Absent: around the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,

    /// Choose the shard count from the ticker count: ceil(tickers / tickersPerShard) within
    /// [minShards, maxShards]; spec.shards (kubectl scale, an HPA) can raise it, not lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
}

/// Where to read a ticker list.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TickersFrom {
    /// The ConfigMap (in the stream's namespace) and key holding the list.
    pub config_map_key_ref: ConfigMapKeyRef,
}

/// A key of a ConfigMap in the stream's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(schema_with = "schema::object_name")]
    pub name: String,
    /// Key within the ConfigMap.
    #[schemars(schema_with = "schema::config_key")]
    pub key: String,
}

/// A key of a Secret in the stream's namespace. Credentials are only ever read from Secrets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(schema_with = "schema::object_name")]
    pub name: String,
    /// Key within the Secret.
    #[schemars(schema_with = "schema::config_key")]
    pub key: String,
}

fn default_interval() -> String {
    "5s".to_owned()
}

fn default_shards() -> i32 {
    1
}

impl QuoteStream {
    /// The label selector of all worker pods of this stream (`.status.selector`).
    pub fn selector(&self) -> String {
        format!(
            "{STREAM_LABEL}={}",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod cel_tests;

/// The CRD as YAML, exactly as checked in at `crds/quotestream.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let body = serde_yaml::to_string(&QuoteStream::crd())?;
    Ok(format!(
        "# Generated by `quotestream-operator crd` from api/src/crd. Do not edit by hand:\n# run `make crd` and commit the result.\n{body}"
    ))
}
