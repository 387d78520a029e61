//! `status`: what the operator observed and did.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a QuoteStream, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuoteStreamStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Shards whose worker Deployment is ready (the scale subresource's replicas).
    #[serde(default)]
    pub ready_shards: i32,
    /// Label selector of the worker pods (the scale subresource's selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Tickers streamed: inline plus ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickers: Option<i32>,
    /// Ready, Progressing and Degraded, with reasons a person can act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One entry per shard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// The current ticker assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<AssignmentStatus>,
}

/// Summary of one shard.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard index, from 0.
    pub index: i32,
    /// Number of tickers the shard owns.
    pub tickers: i32,
    /// Name of the shard's Deployment (<stream>-shard-<index>).
    pub deployment: String,
    /// Whether the shard's worker is ready.
    pub ready: bool,
}

/// Identity of the current ticker assignment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentStatus {
    /// Incremented each time the assignment changes.
    pub epoch: i64,
    /// Fingerprint of the assignment (hex XXH64, see docs/sharding.md).
    pub hash: String,
}
