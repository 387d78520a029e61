//! `spec.source`: where quotes come from.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigMapKeyRef, SecretKeyRef, schema};

/// The market-data source of a stream. `type` picks it; the block of the same name (optional
/// for yahoo, synthetic and yahoo-stream) configures it. Credentials only by Secret reference.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.yahoo) || self.type == 'yahoo'").message("source.yahoo is set but source.type is not yahoo: set type: yahoo or remove source.yahoo"),
    validation = Rule::new("!has(self.synthetic) || self.type == 'synthetic'").message("source.synthetic is set but source.type is not synthetic: set type: synthetic or remove source.synthetic"),
    validation = Rule::new("!has(self.replay) || self.type == 'replay'").message("source.replay is set but source.type is not replay: set type: replay or remove source.replay"),
    validation = Rule::new("!has(self.yahooStream) || self.type == 'yahoo-stream'").message("source.yahooStream is set but source.type is not yahoo-stream: set type: yahoo-stream or remove source.yahooStream"),
    validation = Rule::new("!has(self.alpaca) || self.type == 'alpaca'").message("source.alpaca is set but source.type is not alpaca: set type: alpaca or remove source.alpaca"),
    validation = Rule::new("!has(self.polygon) || self.type == 'polygon'").message("source.polygon is set but source.type is not polygon: set type: polygon or remove source.polygon"),
    validation = Rule::new("!has(self.coalesce) || self.type in ['yahoo-stream', 'alpaca', 'polygon']").message("source.coalesce applies to the streaming sources (yahoo-stream, alpaca, polygon): remove it or pick a streaming source type"),
    validation = Rule::new("!has(self.idleTimeout) || self.type in ['yahoo-stream', 'alpaca', 'polygon']").message("source.idleTimeout applies to the streaming sources (yahoo-stream, alpaca, polygon): remove it or pick a streaming source type"),
    validation = Rule::new("self.type != 'replay' || has(self.replay)").message("source.type replay needs source.replay.configMapKeyRef: the ConfigMap key holding the recorded quotes"),
    validation = Rule::new("self.type != 'alpaca' || has(self.alpaca)").message("source.type alpaca needs source.alpaca.credentialsSecretRef: the Secret holding the API key id and secret"),
    validation = Rule::new("self.type != 'polygon' || has(self.polygon)").message("source.type polygon needs source.polygon.apiKeySecretRef: the Secret key holding the API key"),
)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The source: yahoo (HTTP polling of Yahoo Finance), synthetic (built-in market
    /// simulator, no network), replay (recorded quotes), or the streaming sources
    /// yahoo-stream, alpaca, polygon (WebSocket).
    #[serde(rename = "type")]
    pub kind: SourceType,

    /// Streaming sources: deliver at most one quote per ticker per window (the latest of the
    /// window), a Go duration such as 250ms. Unset: every tick is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::duration")]
    pub coalesce: Option<String>,

    /// Streaming sources: reconnect when nothing at all (not even a pong to our pings) arrived
    /// for this long, a Go duration (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::duration")]
    pub idle_timeout: Option<String>,

    /// Request budget of the whole stream, shared by all its shards.
    #[serde(default)]
    pub rate_limit: RateLimit,

    /// Settings of the yahoo source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yahoo: Option<YahooSource>,
    /// Settings of the synthetic source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticSource>,
    /// Settings of the replay source (required with type replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplaySource>,
    /// Settings of the yahoo-stream source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yahoo_stream: Option<YahooStreamSource>,
    /// Settings of the alpaca source (required with type alpaca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpaca: Option<AlpacaSource>,
    /// Settings of the polygon source (required with type polygon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon: Option<PolygonSource>,
}

impl Source {
    /// A source of this type with every setting at its default.
    pub fn of(kind: SourceType) -> Self {
        Self {
            kind,
            coalesce: None,
            idle_timeout: None,
            rate_limit: RateLimit::default(),
            yahoo: None,
            synthetic: None,
            replay: None,
            yahoo_stream: None,
            alpaca: None,
            polygon: None,
        }
    }
}

/// The kinds of source a stream can use.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SourceType {
    Yahoo,
    Synthetic,
    Replay,
    YahooStream,
    Alpaca,
    Polygon,
}

impl SourceType {
    /// The `source` field of published quotes, as the contracts name vendors.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Yahoo | Self::YahooStream => "yfinance",
            Self::Synthetic => "synthetic",
            Self::Replay => "replay",
            Self::Alpaca => "alpaca",
            Self::Polygon => "polygon",
        }
    }

    /// The name `spec.source.type` spells it with.
    pub fn name(self) -> &'static str {
        match self {
            Self::Yahoo => "yahoo",
            Self::Synthetic => "synthetic",
            Self::Replay => "replay",
            Self::YahooStream => "yahoo-stream",
            Self::Alpaca => "alpaca",
            Self::Polygon => "polygon",
        }
    }

    /// Whether the live source can stream instruments of `class`: the Yahoo sources (polling
    /// and streaming) quote indices (`^GSPC`) and crypto (`BTC-USD`) under the same ids, the
    /// synthetic and replay sources take any id; the alpaca and polygon sources read their
    /// vendors' stock feeds only (indices and crypto are other feeds there, not supported).
    pub fn streams(self, class: crate::instrument::AssetClass) -> bool {
        class == crate::instrument::AssetClass::Stock
            || !matches!(self, Self::Alpaca | Self::Polygon)
    }

    /// Whether the source keeps a WebSocket open and receives every tick as it happens.
    pub fn is_streaming(self) -> bool {
        matches!(self, Self::YahooStream | Self::Alpaca | Self::Polygon)
    }

    /// Whether the source polls at `spec.interval` (and so spends the request budget).
    pub fn is_polling(self) -> bool {
        matches!(self, Self::Yahoo)
    }
}

/// A request budget shared by all shards of the stream (a token bucket per shard holding its
/// share: requestsPerHour / shards).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests per hour for the whole stream (the seeds' Yahoo budget is 2000).
    #[serde(default = "default_requests_per_hour")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub requests_per_hour: i64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests_per_hour: default_requests_per_hour(),
        }
    }
}

fn default_requests_per_hour() -> i64 {
    2000
}

/// Yahoo Finance HTTP polling: many symbols per request, cookie/crumb flow, backoff on 429.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct YahooSource {
    /// Base URL of the quote API (default https://query1.finance.yahoo.com). Change it only
    /// to point at a proxy or a test server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::http_url")]
    pub base_url: Option<String>,
    /// Symbols per request (default 50; Yahoo refuses much more than 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 200))]
    pub symbols_per_request: Option<i32>,
    /// Timeout of one request, a Go duration (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::duration")]
    pub timeout: Option<String>,
}

/// The built-in market simulator: random-walk prices with a bid/ask spread and growing
/// volume. Needs nothing external; deterministic for a given seed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyntheticSource {
    /// Seed of the random walk (default 1); the same seed gives the same prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Only produce quotes during US regular trading hours (9:30-16:00 America/New_York).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market_hours: Option<bool>,
    /// Annualised volatility in percent (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 500))]
    pub volatility_percent: Option<i32>,
}

/// Recorded quotes played back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySource {
    /// The ConfigMap key holding the recording.
    pub config_map_key_ref: ConfigMapKeyRef,
    /// Format of the recording (default ndjson: one contract JSON quote per line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ReplayFormat>,
    /// Playback speed relative to the recorded timestamps, in percent (default 100; 0 plays
    /// as fast as the sinks accept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100_000))]
    pub speed_percent: Option<i32>,
    /// Start over at the end of the recording (default false).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "loop")]
    pub looped: Option<bool>,
}

/// Recording formats of the replay source.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplayFormat {
    Ndjson,
    Csv,
}

/// Yahoo Finance's live WebSocket stream (base64 protobuf PricingData frames).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct YahooStreamSource {
    /// WebSocket URL (default wss://streamer.finance.yahoo.com/?version=2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ws_url")]
    pub url: Option<String>,
}

/// Alpaca market data v2 (WebSocket).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlpacaSource {
    /// The Secret holding the API key id and secret key.
    pub credentials_secret_ref: AlpacaCredentials,
    /// Data feed (default iex; sip needs a paid plan; test serves fake symbols).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<AlpacaFeed>,
    /// WebSocket URL override (default wss://stream.data.alpaca.markets/v2/{feed}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ws_url")]
    pub url: Option<String>,
    /// Connections the account may hold at once (Alpaca allows one per endpoint); the operator
    /// refuses more shards than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_connections: Option<i32>,
}

/// Where the Alpaca credentials are.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlpacaCredentials {
    /// Name of the Secret.
    #[schemars(schema_with = "schema::object_name")]
    pub name: String,
    /// Key of the API key id (default APCA_API_KEY_ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::config_key")]
    pub key_id_key: Option<String>,
    /// Key of the secret key (default APCA_API_SECRET_KEY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::config_key")]
    pub secret_key_key: Option<String>,
}

/// Alpaca data feeds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlpacaFeed {
    Iex,
    Sip,
    Test,
}

/// Massive (formerly Polygon.io) stocks WebSocket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolygonSource {
    /// The Secret key holding the API key.
    pub api_key_secret_ref: SecretKeyRef,
    /// WebSocket URL override (default wss://socket.massive.com/stocks, real time;
    /// wss://delayed.massive.com/stocks is the delayed feed). The hosts were socket.polygon.io
    /// and delayed.polygon.io before the rename to Massive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ws_url")]
    pub url: Option<String>,
    /// Connections the account may hold at once; the operator refuses more shards than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_connections: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::SourceType;

    #[test]
    fn names_are_the_manifest_spelling() {
        for kind in [
            SourceType::Yahoo,
            SourceType::Synthetic,
            SourceType::Replay,
            SourceType::YahooStream,
            SourceType::Alpaca,
            SourceType::Polygon,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }
}
