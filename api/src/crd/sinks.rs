//! `spec.sinks`: where quotes go.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SecretKeyRef, schema};

/// Channel of contract 004 for quotes.
pub const DEFAULT_QUOTES_CHANNEL: &str = "quotes.realtime";
/// Channel of contract 004 for heartbeats.
pub const DEFAULT_HEALTH_CHANNEL: &str = "system.health";
/// Table of the storage schema (seed 002).
pub const DEFAULT_TABLE: &str = "quotes.real_time";

/// The sinks of a stream; every quote that passes validation goes to each configured sink.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.redis) || has(self.storage) || has(self.postgres)")
    .message("configure at least one sink: sinks.redis, sinks.storage or sinks.postgres"))]
#[serde(rename_all = "camelCase")]
pub struct Sinks {
    /// Redis Pub/Sub (best effort, never blocks the durable sinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSink>,
    /// The storage HTTP API (POST {url}/quotes/batch), at least once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSink>,
    /// PostgreSQL/TimescaleDB (idempotent bulk writes), at least once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSink>,
}

impl Sinks {
    /// How many sinks are configured (each gets its own queue in the worker).
    pub fn configured(&self) -> usize {
        usize::from(self.redis.is_some())
            + usize::from(self.storage.is_some())
            + usize::from(self.postgres.is_some())
    }
}

/// Publish each quote to a Redis Pub/Sub channel.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.url) ? 1 : 0) + (has(self.urlSecretRef) ? 1 : 0) + (has(self.sentinel) ? 1 : 0) + (has(self.cluster) ? 1 : 0) == 1")
    .message("set exactly one of sinks.redis.url, sinks.redis.urlSecretRef (one server; use the Secret when the URL has a password), sinks.redis.sentinel and sinks.redis.cluster"))]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || !has(self.url) || self.url.startsWith('rediss://')")
    .message("sinks.redis.caSecretRef is used only over TLS: make sinks.redis.url a rediss:// URL"))]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || !has(self.sentinel) || (has(self.sentinel.tls) && self.sentinel.tls)")
    .message("sinks.redis.caSecretRef is used only over TLS: set sinks.redis.sentinel.tls: true"))]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || !has(self.cluster) || (has(self.cluster.tls) && self.cluster.tls)")
    .message("sinks.redis.caSecretRef is used only over TLS: set sinks.redis.cluster.tls: true"))]
#[x_kube(validation = Rule::new("!has(self.passwordSecretRef) || has(self.sentinel) || has(self.cluster)")
    .message("sinks.redis.passwordSecretRef is for sinks.redis.sentinel and sinks.redis.cluster; one server's password goes in the URL of sinks.redis.urlSecretRef"))]
#[x_kube(validation = Rule::new("!has(self.sharded) || !self.sharded || has(self.cluster)")
    .message("sinks.redis.sharded (SPUBLISH) needs sinks.redis.cluster: sharded Pub/Sub exists only in a Redis Cluster"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSink {
    /// redis:// or rediss:// URL without a password, e.g. redis://redis.cache:6379/0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::redis_url")]
    pub url: Option<String>,
    /// A Secret key holding the full URL (with AUTH user/password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// A Secret key holding the CA certificates (PEM) a rediss:// URL must chain to, instead of
    /// the system's (a Redis with a private CA). Mounted read-only into the worker at
    /// /etc/quotestream/ca/redis.crt, which QUOTESTREAM_REDIS_CA_FILE names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Redis behind Sentinel: the worker asks the Sentinels for the current master and follows
    /// a failover (docs/worker.md, "Redis Sentinel and Cluster").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<RedisSentinel>,
    /// A Redis Cluster: the worker learns the slot map from these seed nodes and follows a
    /// failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<RedisCluster>,
    /// A Secret key holding the AUTH password of the data nodes of sinks.redis.sentinel or
    /// sinks.redis.cluster (the Sentinels' own: sinks.redis.sentinel.passwordSecretRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Publish with sharded Pub/Sub (SPUBLISH, Redis 7+) instead of PUBLISH: only with
    /// sinks.redis.cluster, and only when every consumer subscribes with SSUBSCRIBE at the
    /// channel's shard. Classic PUBLISH in a cluster reaches subscribers on every node (each
    /// message crosses the cluster bus to all nodes); SPUBLISH stays inside the channel's shard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sharded: bool,
    /// Channel for quotes (default quotes.realtime).
    #[serde(default = "default_channel")]
    #[schemars(length(min = 1, max = 256))]
    pub channel: String,
    /// Message format: plain (the contract JSON, default) or cloudevents (CloudEvents 1.0 JSON
    /// envelope with the contract JSON as data).
    #[serde(default)]
    pub format: RedisFormat,
    /// Channel for the 30-second heartbeats (default system.health).
    #[serde(default = "default_health_channel")]
    #[schemars(length(min = 1, max = 256))]
    pub health_channel: String,
    /// Also publish share-class tickers (BRK.B, BF.B). Contract 004 says a ticker matches
    /// ^[A-Z]{1,5}$, so by default (false) their quotes are kept off Redis, counted in
    /// streamer_sink_dropped_quotes_total{sink="redis",reason="contract"} and logged once per
    /// ticker. Set true only when every consumer accepts the extended pattern
    /// ^[A-Z]{1,5}(\.[A-Z])?$.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_share_classes: bool,
}

/// A Redis master found through Sentinel.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSentinel {
    /// The name the Sentinels monitor the master under (`sentinel monitor <name> ...`).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub master_name: String,
    /// The Sentinels, host:port each (e.g. redis-sentinel-0.redis:26379); asked in order.
    #[schemars(schema_with = "schema::host_port_list")]
    pub addresses: Vec<String>,
    /// Connect to the master over TLS (the Sentinels in plain text); trusts
    /// sinks.redis.caSecretRef when set, else the system's CAs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// A Secret key holding the Sentinels' own AUTH password (their `requirepass`), when they
    /// have one; the data nodes' password is sinks.redis.passwordSecretRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// A Redis Cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisCluster {
    /// Seed nodes, host:port each; the rest of the cluster is learnt from them.
    #[schemars(schema_with = "schema::host_port_list")]
    pub addresses: Vec<String>,
    /// Connect to the nodes over TLS; trusts sinks.redis.caSecretRef when set, else the
    /// system's CAs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

/// Message formats of the Redis sink.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisFormat {
    #[default]
    Plain,
    Cloudevents,
}

/// POST batches of quotes to the storage service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSink {
    /// Base URL of the storage API; quotes go to POST {url}/quotes/batch.
    #[schemars(schema_with = "schema::http_url")]
    pub url: String,
    /// Quotes per batch, 1-1000 (default 500; the contract's limit is 1000).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: i32,
    /// Where quotes wait for storage: in memory (default) or in a disk buffer that survives a
    /// crash of the worker (see SinkBuffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<SinkBuffer>,
}

/// Write quotes to PostgreSQL (a TimescaleDB hypertable when the extension is present).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSink {
    /// A Secret key holding the connection string (postgres://user:password@host/db).
    pub dsn_secret_ref: SecretKeyRef,
    /// Schema-qualified table (default quotes.real_time); created by the worker's migrations.
    #[serde(default = "default_table")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$"))]
    pub table: String,
    /// Where quotes wait for PostgreSQL: in memory (default) or in a disk buffer that survives
    /// a crash of the worker (see SinkBuffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<SinkBuffer>,
}

/// The default `maxSize` of a disk buffer.
pub const DEFAULT_BUFFER_MAX_SIZE: &str = "1Gi";
/// [`DEFAULT_BUFFER_MAX_SIZE`] in bytes.
pub const DEFAULT_BUFFER_MAX_SIZE_BYTES: u64 = 1 << 30;
/// The smallest `maxSize` (1Mi): room for a few of the largest batches.
pub const MIN_BUFFER_MAX_SIZE_BYTES: u64 = 1 << 20;
/// The CRD's pattern for `maxSize`: a whole number with an optional binary or decimal suffix.
pub const BUFFER_SIZE_PATTERN: &str = r"^[0-9]{1,19}(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// The buffer in front of a durable sink. `type: memory` (the default) keeps waiting quotes in
/// the worker's memory: a crash of the worker loses them. `type: disk` appends them to a log on
/// an emptyDir volume the operator mounts (sizeLimit maxSize plus a margin) and deletes them only
/// once the sink confirms them: after a crash of the worker process (kill -9, OOM kill) the
/// restarted container delivers them. The emptyDir lives as long as the pod: deleting or
/// rescheduling the pod loses what is still buffered (a graceful shutdown first drains).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.type) && self.type == 'disk') || (!has(self.maxSize) && !has(self.whenFull))")
    .message("buffer.maxSize and buffer.whenFull apply to a disk buffer: set buffer.type: disk, or remove them"))]
#[serde(rename_all = "camelCase")]
pub struct SinkBuffer {
    /// memory (default) or disk.
    #[serde(rename = "type", default)]
    pub kind: BufferType,
    /// Disk buffer: the most bytes it may take on disk, a quantity (default 1Gi, at least 1Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::byte_quantity")]
    pub max_size: Option<String>,
    /// Disk buffer: what happens when it is full. block (default): the worker holds the source
    /// back until the sink confirms more (nothing accepted is lost; Redis waits too).
    /// drop_newest: batches that do not fit are dropped and counted in
    /// streamer_sink_dropped_quotes_total{reason="buffer_full"} (Redis keeps streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_full: Option<WhenFull>,
}

/// Where a sink's waiting quotes are kept.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BufferType {
    #[default]
    Memory,
    Disk,
}

/// What a full disk buffer does.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    #[default]
    Block,
    DropNewest,
}

fn default_channel() -> String {
    DEFAULT_QUOTES_CHANNEL.to_owned()
}

fn default_health_channel() -> String {
    DEFAULT_HEALTH_CHANNEL.to_owned()
}

fn default_batch_size() -> i32 {
    500
}

fn default_table() -> String {
    DEFAULT_TABLE.to_owned()
}
