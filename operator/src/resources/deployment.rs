//! The shard Deployment `<stream>-shard-<i>`: one worker pod, rolled when the shard's
//! configuration hash changes and left running when only its ticker list does.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use quotestream_api::contract::{HTTP_PORT, METRICS_PATH};

use super::meta::{selector_labels, shard_labels, shard_meta};
use super::plan::{ShardPlan, StreamPlan, connection_limit};
use super::pod::pod_spec;

/// Pod-template annotation holding the shard's configuration hash: changing it rolls the pod.
pub const CONFIG_HASH_ANNOTATION: &str = "quotes.opa.io/config-hash";
/// Old ReplicaSets kept per shard (each source/sink change leaves one).
const REVISION_HISTORY: i32 = 3;

/// The Deployment of `shard`, ready for server-side apply (apiVersion and kind set).
pub fn deployment(plan: &StreamPlan, shard: &ShardPlan) -> Deployment {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(plan, shard)),
            annotations: Some(pod_annotations(plan, shard)),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(plan, shard)),
    };
    Deployment {
        metadata: shard_meta(&plan.namespace, &plan.stream, shard.index, &plan.owner),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&plan.stream, shard.index)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy(plan)),
            revision_history_limit: Some(REVISION_HISTORY),
            template,
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// How a shard's pod is replaced when its configuration changes.
///
/// RollingUpdate with maxSurge 1 and maxUnavailable 0 (make before break): the new pod starts
/// and must pass /ready before the old one gets SIGTERM, so the shard's tickers are never
/// unowned; for a few seconds both pods stream them, which SPEC §4 accepts (the sinks are
/// idempotent on (ticker, timestamp)). Recreate would leave the tickers unstreamed for the old
/// pod's drain plus the new pod's start, far longer than one interval.
///
/// The exception is a source whose vendor caps concurrent connections (Alpaca, Polygon): a
/// source change rolls every shard at once, so surging needs twice the shards in connections.
/// When the cap does not allow that, the surge pod would be refused (Alpaca answers 406) and
/// never become ready, so those streams use Recreate and accept the gap.
pub fn strategy(plan: &StreamPlan) -> DeploymentStrategy {
    let source = plan.shards.first().map(|s| &s.config.source);
    let limit = source.and_then(connection_limit).map(|(_, max)| max);
    if limit.is_some_and(|max| max < 2 * plan.shards.len()) {
        return DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        };
    }
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_owned()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

/// `spec.worker.labels` below the operator's own labels, which always win: the selector and
/// the stream's pod selector (`status.selector`) depend on them.
fn pod_labels(plan: &StreamPlan, shard: &ShardPlan) -> BTreeMap<String, String> {
    let mut labels = plan.worker.labels.clone().unwrap_or_default();
    labels.extend(shard_labels(&plan.stream, shard.index));
    labels
}

/// `spec.worker.annotations`, then the Prometheus scrape hints and the configuration hash.
fn pod_annotations(plan: &StreamPlan, shard: &ShardPlan) -> BTreeMap<String, String> {
    let mut annotations = plan.worker.annotations.clone().unwrap_or_default();
    annotations.extend([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), HTTP_PORT.to_string()),
        ("prometheus.io/path".to_owned(), METRICS_PATH.to_owned()),
        (CONFIG_HASH_ANNOTATION.to_owned(), shard.config_hash.clone()),
    ]);
    annotations
}

#[cfg(test)]
mod tests;
