//! The shard ConfigMap `<stream>-shard-<i>`: the worker's `worker.json`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use quotestream_api::worker_config::WORKER_CONFIG_KEY;

use super::meta::shard_meta;
use super::plan::{ShardPlan, StreamPlan};

/// The ConfigMap of `shard`, ready for server-side apply (apiVersion and kind set).
///
/// The worker re-reads the mounted file, so updating this object alone hands a shard its new
/// ticker list without a restart (kubelet refreshes ConfigMap volumes within about a minute).
pub fn config_map(plan: &StreamPlan, shard: &ShardPlan) -> ConfigMap {
    ConfigMap {
        metadata: shard_meta(&plan.namespace, &plan.stream, shard.index, &plan.owner),
        data: Some(BTreeMap::from([(
            WORKER_CONFIG_KEY.to_owned(),
            shard.config_json.clone(),
        )])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use quotestream_api::WorkerConfig;

    use super::*;
    use crate::resources::fixtures::{plan, stream, tickers};

    #[test]
    fn holds_worker_json_and_is_owned_by_the_stream() {
        let p = plan(&stream("sp500", 2), &tickers(&["AAPL", "MSFT", "NVDA"]));
        let cm = config_map(&p, &p.shards[1]);
        let meta = &cm.metadata;
        assert_eq!(meta.name.as_deref(), Some("sp500-shard-1"));
        assert_eq!(meta.namespace.as_deref(), Some("markets"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["quotes.opa.io/stream"], "sp500");
        assert_eq!(labels["quotes.opa.io/shard"], "1");
        assert_eq!(labels["app.kubernetes.io/name"], "quotestream-worker");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "quotestream-operator"
        );

        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        let o = &owners[0];
        assert_eq!((o.kind.as_str(), o.name.as_str()), ("QuoteStream", "sp500"));
        assert_eq!(o.uid, "0b5e7a9c-1111-4222-8333-944455556666");
        assert_eq!(
            (o.controller, o.block_owner_deletion),
            (Some(true), Some(true))
        );

        let json = &cm.data.as_ref().unwrap()["worker.json"];
        let config: WorkerConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config, p.shards[1].config);
        // Server-side apply needs apiVersion/kind in the body; k8s-openapi adds them when
        // serialising.
        let body = serde_json::to_value(&cm).unwrap();
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["kind"], "ConfigMap");
    }
}
