//! The worker's queue budget (`queueBytes` in worker.json), derived from the memory limit its
//! container gets, so the sink queues fit the pod however large the operator's user makes it.
//! The rule is [`queue_bytes_per_sink`]: a sixteenth of the limit, split evenly across the sinks.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use quotestream_api::crd::{Sinks, WorkerTemplate};
use quotestream_api::worker_config::queue_bytes_per_sink;

use super::pod::default_resources;

/// A memory limit the operator cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "spec.worker.resources.limits.memory {value:?} is not a memory quantity: write bytes or a Kubernetes quantity such as 128Mi or 1Gi"
)]
pub struct BadMemoryLimit {
    pub value: String,
}

/// Bytes each sink queue of a worker built from `worker` and `sinks` may hold: the rule applied
/// to the container's memory limit (`spec.worker.resources`, else the default 128Mi). `None`
/// when the stream sets resources without a memory limit: the worker then sizes its queues
/// for 128Mi itself.
pub fn queue_bytes(worker: &WorkerTemplate, sinks: &Sinks) -> Result<Option<u64>, BadMemoryLimit> {
    let resources = worker.resources.clone().unwrap_or_else(default_resources);
    let Some(limit) = resources.limits.as_ref().and_then(|l| l.get("memory")) else {
        return Ok(None);
    };
    let bytes = quantity_bytes(limit).ok_or_else(|| BadMemoryLimit {
        value: limit.0.clone(),
    })?;
    Ok(Some(queue_bytes_per_sink(bytes, sinks.configured())))
}

/// The bytes a memory quantity stands for (a fraction rounded down; `None` for text that is not
/// a quantity, or a negative one). Also the disk buffers' `maxSize` (pod.rs).
pub(crate) fn quantity_bytes(q: &Quantity) -> Option<u64> {
    let bytes = kube_quantity::ParsedQuantity::try_from(q)
        .ok()?
        .to_bytes_f64()?;
    // `as` saturates: a quantity beyond u64 is simply very large.
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ResourceRequirements;

    use super::*;
    use crate::resources::fixtures::{postgres_sink, redis_sinks};

    const MI: u64 = 1 << 20;

    fn limited(memory: &str) -> WorkerTemplate {
        WorkerTemplate {
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    Quantity(memory.to_owned()),
                )])),
                ..ResourceRequirements::default()
            }),
            ..WorkerTemplate::default()
        }
    }

    fn redis_and_postgres() -> Sinks {
        Sinks {
            postgres: Some(postgres_sink()),
            ..redis_sinks()
        }
    }

    #[test]
    fn a_sixteenth_of_the_limit_split_across_the_sinks() {
        let two = redis_and_postgres();
        assert_eq!(
            queue_bytes(&WorkerTemplate::default(), &two),
            Ok(Some(4 * MI)),
            "the default 128Mi pod, Redis + PostgreSQL"
        );
        assert_eq!(queue_bytes(&limited("1Gi"), &two), Ok(Some(32 * MI)));
        assert_eq!(
            queue_bytes(&limited("512Mi"), &redis_sinks()),
            Ok(Some(32 * MI))
        );
        assert_eq!(
            queue_bytes(&limited("1G"), &two),
            Ok(Some(1_000_000_000 / 32)),
            "decimal units too"
        );
        assert_eq!(
            queue_bytes(&limited("1Mi"), &two),
            Ok(Some(quotestream_api::worker_config::MIN_QUEUE_BYTES)),
            "never below the minimum"
        );
    }

    #[test]
    fn no_memory_limit_leaves_the_worker_default_and_a_bad_one_is_named() {
        let requests_only = WorkerTemplate {
            resources: Some(ResourceRequirements::default()),
            ..WorkerTemplate::default()
        };
        assert_eq!(queue_bytes(&requests_only, &redis_sinks()), Ok(None));
        let err = queue_bytes(&limited("lots"), &redis_sinks()).unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.worker.resources.limits.memory \"lots\""),
            "{err}"
        );
    }
}
