//! The writes of a reconcile's shard objects: only the objects that changed
//! (`resources::applied`), several at once, and never more than `--api-concurrency` in flight
//! for the whole operator, so that 100 streams of 1024 shards resyncing together stay within
//! the API server's priority-and-fairness share of one client (docs/operator.md#scale).

use std::collections::HashMap;
use std::fmt::Debug;
use std::num::NonZeroU16;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::Error;
use crate::metrics::{Metrics, Written};
use crate::resources::applied::{contains, stamped};

/// The operator's write budget: at most `limit` writes in flight, across every reconcile.
#[derive(Debug, Clone)]
pub(super) struct Writes {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Writes {
    pub(super) fn new(limit: NonZeroU16) -> Self {
        let limit = usize::from(limit.get());
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Runs `write` once a slot is free.
    pub(super) async fn send<T>(
        &self,
        write: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        // The semaphore is never closed; a closed one would only mean no limit.
        let _permit = self.permits.acquire().await.ok();
        Ok(write.await?)
    }
}

/// What one batch of applies writes with.
pub(super) struct Applier<'a, K: Resource> {
    pub api: &'a Api<K>,
    pub params: &'a PatchParams,
    pub writes: &'a Writes,
    pub metrics: &'a Metrics,
    pub resource: Written,
}

impl<K> Applier<'_, K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    /// Server-side applies each of `desired` that `live` (the objects as listed, by name) does
    /// not already hold, up to the write limit at once; returns every desired object as it is
    /// now (the API server's answer, or the live object when nothing was written). Stops at the
    /// first failure (what was written stays written; the retry writes the rest).
    pub async fn apply_changed(
        &self,
        desired: impl IntoIterator<Item = K>,
        live: &HashMap<String, &K>,
    ) -> Result<Vec<K>, Error> {
        let mut writes = Vec::new();
        let mut now = Vec::new();
        for object in desired {
            let name = object.name_any();
            let body = stamped(&object).map_err(Error::Serialize)?;
            let current = live.get(&name).copied();
            if let Some(current) = current
                && contains(
                    &serde_json::to_value(current).map_err(Error::Serialize)?,
                    &body,
                )
            {
                self.metrics.unchanged(self.resource).inc();
                now.push(current.clone());
            } else {
                writes.push((name, body));
            }
        }
        let applied: Vec<K> = futures_util::stream::iter(writes)
            .map(|(name, body)| async move {
                self.metrics.writes(self.resource, "apply").inc();
                self.writes
                    .send(self.api.patch(&name, self.params, &Patch::Apply(&body)))
                    .await
            })
            .buffer_unordered(self.writes.limit)
            .try_collect()
            .await?;
        now.extend(applied);
        Ok(now)
    }
}

/// `objects` by name, for [`Applier::apply_changed`].
pub(super) fn by_name<K: Resource>(objects: &[K]) -> HashMap<String, &K> {
    objects.iter().map(|o| (o.name_any(), o)).collect()
}
