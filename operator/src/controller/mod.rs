//! The reconciler: keeps each QuoteStream's shard ConfigMaps and Deployments equal to its plan
//! (`crate::resources`), removes shards beyond `spec.shards`, and reports status, conditions and
//! Events. Errors requeue with exponential backoff per stream.

mod acks;
mod apply;
mod error;
mod forget;
mod memo;
#[cfg(test)]
mod mock_api;
mod own_status;
mod planning;
#[cfg(test)]
mod tests;
mod worker_client;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{
    Action, Config as ControllerConfig, Controller, Error as ControllerError,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use quotestream_api::crd::HandoverStatus;
use quotestream_api::crd::STREAM_LABEL;
use quotestream_api::{QuoteStream, QuoteStreamStatus};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use error::Error;

use apply::{Applier, Writes, by_name};

use crate::metrics::{Metrics, Outcome, Written};
use crate::policy::{SecretPolicy, secret_references};
use crate::resources::conditions::{MAX_MESSAGE_BYTES, bounded, keep_transition_times};
use crate::resources::configmap::config_map;
use crate::resources::deployment::deployment;
use crate::resources::handover::{Handover, Release};
use crate::resources::meta::{FIELD_MANAGER, controlled_by, shard_index, shard_name};
use crate::resources::plan::{OperatorSettings, PlanError, StreamPlan};
use crate::resources::status::{
    DEGRADED, ShardObservation, failed_status, observe, planned_status, worker_failed,
};
use crate::resources::worker_failures::{WorkerFailure, worker_failures};

/// Shared by every reconciliation.
#[derive(Clone)]
pub struct Context {
    client: Client,
    settings: OperatorSettings,
    metrics: Metrics,
    recorder: Recorder,
    /// The operator-wide limit of writes in flight (`--api-concurrency`).
    writes: Writes,
    /// The retry backoff of each stream whose last reconcile failed.
    backoffs: Arc<Mutex<HashMap<String, ExponentialBackoff>>>,
    /// Per stream, the status this operator last wrote, while the watch cache may not show it
    /// yet (`StreamApi::write_status`).
    own_status: Arc<own_status::OwnStatuses>,
    /// The hand-overs waiting for their receivers' acknowledgement.
    acks: Arc<acks::Acks>,
    /// Asks workers that run but are not ready why (`/ready`).
    workers: worker_client::WorkerClient,
    /// Per stream, the last settled plan and what it was made of.
    memos: Arc<memo::Memos>,
}

impl Context {
    /// `instance` names this operator replica in the Events it records (the pod name).
    pub fn new(
        client: Client,
        settings: OperatorSettings,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        // One HTTP client for the workers' endpoints (one connection pool), shared by the
        // hand-over's /assignment requests and the not-ready workers' /ready.
        let workers = worker_client::WorkerClient::new();
        Self {
            client,
            writes: Writes::new(settings.api_concurrency),
            settings,
            metrics,
            recorder,
            backoffs: Arc::default(),
            own_status: Arc::default(),
            acks: Arc::new(acks::Acks::new(workers.clone())),
            workers,
            memos: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Runs the controller until `shutdown` is cancelled. `namespace` limits it to one namespace.
pub async fn run(
    client: Client,
    namespace: Option<&str>,
    settings: OperatorSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let streams: Api<QuoteStream> = scoped(&client, namespace);
    // The owned objects and the workers' pods are watched as triggers only (a reconcile reads
    // what it needs afresh), so their watches are metadata only (an `Api<PartialObjectMeta<_>>`
    // makes metadata-only requests): every change still arrives, and neither side encodes or
    // decodes the shards' ticker lists (about 1.3 MB per write of a 100 000-ticker stream)
    // or the Deployments' pod templates once more per event.
    let deployments: Api<PartialObjectMeta<Deployment>> = scoped(&client, namespace);
    let config_maps: Api<PartialObjectMeta<ConfigMap>> = scoped(&client, namespace);
    // The spec.history backfill Jobs: a finished one is folded into the stream's status.
    let jobs: Api<PartialObjectMeta<Job>> = scoped(&client, namespace);
    // Every ConfigMap of the watched namespaces, metadata only: the mapper needs the name, and
    // other people's ConfigMaps (up to 1 MiB each) are neither transferred nor held.
    let foreign_maps: Api<PartialObjectMeta<ConfigMap>> = scoped(&client, namespace);
    // The workers' pods (by the stream label): a worker that exits at start says why in its
    // termination message, and the stream's status shows it (`resources::worker_failures`).
    let pods: Api<PartialObjectMeta<Pod>> = scoped(&client, namespace);
    let owned = watcher::Config::default().labels(STREAM_LABEL);
    let ctx = Arc::new(Context::new(
        client,
        settings,
        metrics,
        std::env::var("POD_NAME").ok(),
    ));

    // At most --api-concurrency streams are reconciled at once (each makes at most two reads or
    // one Event at a time besides its shard writes, which share the same operator-wide limit):
    // at most three times that many requests in flight, whatever the number of streams.
    let concurrency = ctx.settings.api_concurrency.get();
    let controller = Controller::new(streams, watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency));
    let store = controller.store();
    let forgetting = tokio::spawn({
        let (ctx, stop) = (ctx.clone(), shutdown.clone());
        let streams = scoped(&ctx.client, namespace);
        async move { forget::forget_deleted_streams(streams, &ctx, stop).await }
    });
    let forgotten = ctx.clone();
    controller
        .owns(deployments, owned.clone())
        .owns(config_maps, owned.clone())
        .owns(jobs, owned.clone())
        .watches(pods, owned, |pod: PartialObjectMeta<Pod>| {
            let stream = pod.labels().get(STREAM_LABEL)?.clone();
            Some(ObjectRef::<QuoteStream>::new(&stream).within(&pod.namespace()?))
        })
        // A tickersFrom ConfigMap is the user's, not ours: map its changes to the streams naming it.
        .watches(
            foreign_maps,
            watcher::Config::default(),
            move |cm: PartialObjectMeta<ConfigMap>| {
                let (ns, name) = (cm.namespace(), cm.name_any());
                store
                    .state()
                    .into_iter()
                    .filter(|qs| qs.namespace() == ns)
                    .filter(|qs| {
                        qs.spec
                            .tickers_from
                            .as_ref()
                            .is_some_and(|f| f.config_map_key_ref.name == name)
                    })
                    .map(|qs| ObjectRef::from_obj(&*qs))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                // A deleted stream that was still queued (a requeue, its shards being
                // garbage-collected): forget it here too, in case a reconcile that ran while it
                // was being deleted set its gauges after the Delete event.
                Err(ControllerError::ObjectNotFound(gone)) => {
                    forgotten.forget(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
                }
                Err(e) => tracing::debug!(error = %e, "reconcile loop event"),
                Ok(_) => {}
            }
            std::future::ready(())
        })
        .await;
    if let Err(e) = forgetting.await {
        tracing::warn!(error = %e, "stream metadata watch task failed");
    }
}

impl Context {
    /// Drops what the operator keeps about a deleted stream: its metric series and backoff.
    fn forget(&self, namespace: &str, name: &str) {
        self.metrics.forget_stream(namespace, name);
        if let Ok(mut b) = self.backoffs.lock() {
            b.remove(&format!("{namespace}/{name}"));
        }
        self.own_status.forget(&format!("{namespace}/{name}"));
        self.acks.finish(&format!("{namespace}/{name}"));
        self.memos.forget(&format!("{namespace}/{name}"));
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn reconcile(qs: Arc<QuoteStream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match reconcile_stream(&qs, &ctx).await {
        // Deleted while it was being reconciled: nothing failed and nothing is left to do.
        // What the operator keeps about the stream goes with its Delete event (`forget.rs`, the
        // one deletion path); this reconcile set nothing, as gauges follow a written status.
        Err(e) if e.is_not_found() => {
            tracing::debug!(stream = %key(&qs), error = %e, "stream deleted during its reconcile");
            return Ok(Action::await_change());
        }
        other => other,
    };
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    };
    ctx.metrics.reconciliations(outcome).inc();
    ctx.metrics
        .reconcile_duration(outcome)
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut b) = ctx.backoffs.lock()
    {
        b.remove(&key(&qs));
    }
    result
}

fn key(qs: &QuoteStream) -> String {
    format!("{}/{}", qs.namespace().unwrap_or_default(), qs.name_any())
}

/// The longest wait before a failed stream is reconciled again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(128);

/// Per stream: 1 s, 2 s, 4 s … capped at [`MAX_RETRY_DELAY`], for as long as it fails (kube-runtime
/// backs off its watches, not reconciles). Not jittered: each stream keeps its own schedule.
fn retry_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_factor(2.0)
        .with_max_delay(MAX_RETRY_DELAY)
        .without_max_times()
        .build()
}

fn error_policy(qs: Arc<QuoteStream>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors(error.reason()).inc();
    let delay = ctx
        .backoffs
        .lock()
        .ok()
        .and_then(|mut b| b.entry(key(&qs)).or_insert_with(retry_backoff).next())
        .unwrap_or(MAX_RETRY_DELAY);
    tracing::warn!(stream = %key(&qs), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// One stream's reconcile, in named steps: resolve the tickers and plan, hand tickers to their
/// receivers, apply the Deployments, release and prune once the receivers are ready, report.
async fn reconcile_stream(qs: &QuoteStream, ctx: &Context) -> Result<Action, Error> {
    let stream = StreamApi::new(qs, ctx)?;
    let planned = match planning::plan(&stream, qs, ctx).await? {
        Ok(p) => p,
        Err(e) => return stream.degraded(qs, ctx, &e).await,
    };
    let (plan, tickers) = (planned.plan.clone(), planned.tickers.clone());
    let existing_maps = &planned.config_maps;
    if let Some(refused) = stream
        .refused_secret(qs, &ctx.settings.policy.secrets)
        .await?
    {
        return stream.degraded(qs, ctx, &refused).await;
    }

    // Make before break (`resources::handover`): the shards that take tickers over get their
    // new lists first, every Deployment is applied (new shards start), and only once every
    // shard taking a ticker over is ready do the other shards shrink their lists and removed
    // shards go. Until then a moving ticker is owned twice, never by nobody (sinks are
    // idempotent on (ticker, timestamp)).
    // A reused plan is settled: every shard ConfigMap holds it, nothing moves.
    let handover = if planned.settled {
        Handover::default()
    } else {
        Handover::new(&plan, planned.previous.as_ref())
    };
    let mut shard_maps = stream
        .apply_config_maps(&planned, |i| handover.first.contains(&i))
        .await?;
    // A settled plan writes no ConfigMap, so nothing orders the two LISTs: both at once (this
    // is most of such a reconcile's time). Otherwise the pods are read after the writes.
    let (listed, pods) = if planned.settled {
        let (d, p) = tokio::try_join!(stream.list_deployments(), stream.list_pods())?;
        (d, Some(p))
    } else {
        (stream.list_deployments().await?, None)
    };
    let deployments = stream.apply_deployments(&plan, listed).await?;
    let pods = match pods {
        Some(p) => p,
        None => stream.list_pods().await?,
    };
    // Workers that cannot start (termination messages), then sinks that failed while their
    // worker runs (its `/ready`).
    let mut failures = worker_failures(&pods);
    failures.extend(ctx.workers.failed_sinks(&pods).await);
    // Acknowledged: a receiver is ready *and* one of its ready pods streams the list written
    // for it (`controller::acks`), so kubelet's late ConfigMap refresh cannot open a gap.
    let listed = by_name(&deployments);
    let decision = ctx
        .acks
        .decide(
            &key(qs),
            &plan,
            &handover,
            |index| {
                let name = shard_name(&stream.name, index);
                observe(listed.get(&name).copied()).ready
            },
            &pods,
            ctx.settings.handover_timeout,
        )
        .await;
    ctx.metrics
        .handover_pending
        .with_label_values(&[stream.namespace.as_str(), stream.name.as_str()])
        .set(i64::try_from(handover.moving_tickers()).unwrap_or(i64::MAX));
    let released = !matches!(decision.release, Release::Wait { .. });
    let removed = if released {
        shard_maps.extend(
            stream
                .apply_config_maps(&planned, |i| !handover.first.contains(&i))
                .await?,
        );
        let removed = stream.prune(&plan, &deployments, existing_maps).await?;
        stream.handed_over(ctx, &handover, &decision).await;
        removed
    } else {
        tracing::info!(stream = %stream.name, waiting = ?decision.release, "shards taking tickers over are not ready or have not acknowledged their new lists: the others keep their tickers until then");
        0
    };

    let all_ready = stream
        .report(
            qs,
            ctx,
            &plan,
            Workers {
                deployments: &deployments,
                failures: &failures,
                handover: handover.status(
                    &decision.release,
                    decision.began,
                    ctx.settings.handover_timeout,
                ),
            },
            removed,
            tickers.len(),
        )
        .await?;
    // Every shard ConfigMap holds the plan now: the next reconcile may reuse it.
    if released {
        planning::remember(ctx, qs, planned, &shard_maps);
    }
    // spec.history: backfill Jobs for the tickers that lack history (`crate::history`).
    let history =
        crate::history::reconcile(&ctx.client, qs, &plan, &tickers, &ctx.settings.policy).await?;
    for note in history.notes {
        publish(ctx, &stream.reference, note.type_, note.reason, note.text).await;
    }
    // Readiness changes arrive as Deployment events; a requeue covers missed ones. A worker's
    // acknowledgement is no API event, so a waiting hand-over asks again every second.
    let requeue = if !released {
        Duration::from_secs(1)
    } else if all_ready {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(15)
    };
    // status.market changes at each session bound: come back just after the next one (one
    // reading of the clock for both, so the wait is to the bound that was found).
    let now = jiff::Timestamp::now();
    let requeue = match qs
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.next_transition(now))
    {
        Some(next) => {
            let until = Duration::try_from(next.duration_since(now)).unwrap_or_default();
            requeue.min(until + Duration::from_secs(1))
        }
        None => requeue,
    };
    let requeue = history.requeue.map_or(requeue, |h| h.min(requeue));
    Ok(Action::requeue(requeue))
}

/// What a reconcile saw of the stream's workers: their Deployments, the pods that stopped
/// with a reason, and the hand-over that waits for some of them (`status.handover`).
struct Workers<'a> {
    deployments: &'a [Deployment],
    failures: &'a [WorkerFailure],
    handover: Option<HandoverStatus>,
}

/// One stream's namespace, the APIs its reconcile uses, and its shards' selector.
struct StreamApi {
    name: String,
    namespace: String,
    streams: Api<QuoteStream>,
    deployments: Api<Deployment>,
    config_maps: Api<ConfigMap>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
    selector: ListParams,
    reference: ObjectReference,
    apply: PatchParams,
    writes: Writes,
    metrics: Metrics,
}

impl StreamApi {
    fn new(qs: &QuoteStream, ctx: &Context) -> Result<Self, Error> {
        let namespace = qs.namespace().ok_or(Error::Metadata("namespace"))?;
        let name = qs.name_any();
        let client = &ctx.client;
        Ok(Self {
            streams: Api::namespaced(client.clone(), &namespace),
            deployments: Api::namespaced(client.clone(), &namespace),
            config_maps: Api::namespaced(client.clone(), &namespace),
            secrets: Api::namespaced(client.clone(), &namespace),
            pods: Api::namespaced(client.clone(), &namespace),
            selector: ListParams::default().labels(&format!("{STREAM_LABEL}={name}")),
            reference: qs.object_ref(&()),
            apply: PatchParams::apply(FIELD_MANAGER).force(),
            writes: ctx.writes.clone(),
            metrics: ctx.metrics.clone(),
            name,
            namespace,
        })
    }

    /// The `tickersFrom` ConfigMap, when the stream names one that exists.
    async fn ticker_list(&self, qs: &QuoteStream) -> Result<Option<ConfigMap>, Error> {
        let Some(from) = &qs.spec.tickers_from else {
            return Ok(None);
        };
        Ok(self
            .config_maps
            .get_opt(&from.config_map_key_ref.name)
            .await?)
    }

    /// The first Secret reference the admin's policy refuses (an unlabelled or missing
    /// Secret), if any. Reads each named Secret's metadata only (a metadata-only `get`: the
    /// data is neither requested nor held), once per name.
    async fn refused_secret(
        &self,
        qs: &QuoteStream,
        policy: &SecretPolicy,
    ) -> Result<Option<PlanError>, Error> {
        let Some(label) = policy.label() else {
            return Ok(None);
        };
        let mut checked = std::collections::BTreeSet::new();
        for reference in secret_references(&qs.spec) {
            if !checked.insert(reference.secret.clone()) {
                continue;
            }
            let meta = self.secrets.get_metadata_opt(&reference.secret).await?;
            if !policy.allows(meta.as_ref().and_then(|m| m.metadata.labels.as_ref())) {
                return Ok(Some(PlanError::SecretNotAllowed {
                    field: reference.field,
                    secret: reference.secret,
                    label,
                    exists: meta.is_some(),
                }));
            }
        }
        Ok(None)
    }

    /// Applies the ConfigMaps of the shards `which` selects that differ from the listed ones,
    /// several at once; returns them as they are now, when all are written. A reused plan
    /// (`planned.settled`) is already what they hold: nothing is compared or written.
    async fn apply_config_maps(
        &self,
        planned: &planning::Planned,
        which: impl Fn(u32) -> bool,
    ) -> Result<Vec<ConfigMap>, Error> {
        let plan = &planned.plan;
        let selected = plan.shards.iter().filter(|s| which(s.index));
        if planned.settled {
            let unchanged = self.metrics.unchanged(Written::ConfigMap);
            unchanged.inc_by(selected.count() as u64);
            return Ok(Vec::new());
        }
        let desired = selected.map(|shard| config_map(plan, shard));
        self.applier(&self.config_maps, Written::ConfigMap)
            .apply_changed(desired, &by_name(&planned.config_maps))
            .await
    }

    /// The stream's Deployments.
    async fn list_deployments(&self) -> Result<Vec<Deployment>, kube::Error> {
        Ok(self.deployments.list(&self.selector).await?.items)
    }

    /// The stream's workers' pods, from the API server's cache (`resourceVersion=0`).
    ///
    /// Why not a consistent read: the API server serves one from its watch cache only once
    /// that cache has caught up with etcd, and the pods' cache of a namespace whose pods do not
    /// change learns how far etcd is only from a progress notification it requests every 100
    /// ms — a LIST of no pods took 65-70 ms, most of a settled reconcile (docs/operator.md#scale).
    /// A cached list is as fresh as every pod event this API server sent the operator's watch
    /// (the cache applies an event before it sends it), and what the pods decide tolerates a
    /// staler one (another API server's cache): a ready pod missed is seen at the next event or
    /// the requeue, and a pod listed after it stopped may still answer for its acknowledgement
    /// during its grace period, but no hand-over is released on that alone: the receiver's
    /// Deployment must be ready too, and the Deployments are read consistently.
    async fn list_pods(&self) -> Result<Vec<Pod>, kube::Error> {
        Ok(self
            .pods
            .list(&self.selector.clone().match_any())
            .await?
            .items)
    }

    /// Applies every shard Deployment that differs from the `listed` one, several at once;
    /// returns the stream's Deployments as they are now (the shards' and any beyond them).
    async fn apply_deployments(
        &self,
        plan: &StreamPlan,
        listed: Vec<Deployment>,
    ) -> Result<Vec<Deployment>, Error> {
        let desired = plan.shards.iter().map(|shard| deployment(plan, shard));
        let mut now = self
            .applier(&self.deployments, Written::Deployment)
            .apply_changed(desired, &by_name(&listed))
            .await?;
        let planned: std::collections::HashSet<&str> =
            plan.shards.iter().map(|s| s.name.as_str()).collect();
        now.extend(
            listed
                .into_iter()
                .filter(|d| !planned.contains(d.name_any().as_str())),
        );
        Ok(now)
    }

    /// Writes `resource` objects through `api` with the operator's apply parameters and limit.
    fn applier<'a, K: Resource>(&'a self, api: &'a Api<K>, resource: Written) -> Applier<'a, K> {
        Applier {
            api,
            params: &self.apply,
            writes: &self.writes,
            metrics: &self.metrics,
            resource,
        }
    }

    /// After a release: the metrics, and an Event naming what moved and the measured gap
    /// (Normal `HandedOver`), or that the receivers never acknowledged (Warning
    /// `HandoverUnacknowledged`).
    async fn handed_over(&self, ctx: &Context, handover: &Handover, decision: &acks::Decision) {
        ctx.acks
            .finish(&format!("{}/{}", self.namespace, self.name));
        if handover.receivers.is_empty() {
            return;
        }
        let gap = acks::record_release(&ctx.metrics, handover, decision, jiff::Timestamp::now());
        let (tickers, to, waited) = (
            handover.moving_tickers(),
            &handover.receivers,
            decision.waited,
        );
        let timeout = ctx.settings.handover_timeout;
        let (type_, reason, note) = match gap {
            None if timeout.is_zero() => (
                EventType::Normal,
                "HandedOver",
                format!(
                    "{tickers} tickers handed to shards {to:?} once ready (--handover-timeout=0s: not acknowledged, the gap is not measured)"
                ),
            ),
            Some(gap) => (
                EventType::Normal,
                "HandedOver",
                format!(
                    "{tickers} tickers handed to shards {to:?}, acknowledged after {waited:.1?}; ownership gap {gap:.3} s"
                ),
            ),
            None => (
                EventType::Warning,
                "HandoverUnacknowledged",
                format!(
                    "shards {to:?} ready but did not acknowledge their new lists on /assignment within {timeout:?} (is the operator allowed to reach the workers' port 8080?); {tickers} tickers released unacknowledged: they may be unstreamed until those shards reload"
                ),
            ),
        };
        tracing::info!(stream = %self.name, tickers, receivers = ?to, ?waited, ?gap, "hand-over released");
        publish(ctx, &self.reference, type_, reason, note).await;
    }

    /// Deletes the shards beyond `spec.shards` (their tickers are with their new, ready
    /// owners); returns how many Deployments went.
    async fn prune(
        &self,
        plan: &StreamPlan,
        deployments: &[Deployment],
        config_maps: &[ConfigMap],
    ) -> Result<usize, Error> {
        let wanted = plan.shards.len() as u32;
        // Only the stream's own objects: a look-alike with its labels is left alone.
        let uid = plan.owner.uid.as_str();
        let beyond =
            |meta| controlled_by(meta, uid) && shard_index(meta).is_some_and(|i| i >= wanted);
        let mut removed = 0;
        let background = DeleteParams::background();
        for d in deployments.iter().filter(|d| beyond(&d.metadata)) {
            self.metrics.writes(Written::Deployment, "delete").inc();
            self.writes
                .send(self.deployments.delete(&d.name_any(), &background))
                .await?;
            removed += 1;
        }
        for cm in config_maps.iter().filter(|cm| beyond(&cm.metadata)) {
            self.metrics.writes(Written::ConfigMap, "delete").inc();
            self.writes
                .send(self.config_maps.delete(&cm.name_any(), &background))
                .await?;
        }
        Ok(removed)
    }

    /// Writes the status, sets the stream's gauges and records the Events of what changed;
    /// returns whether every shard is ready.
    async fn report(
        &self,
        qs: &QuoteStream,
        ctx: &Context,
        plan: &StreamPlan,
        workers: Workers<'_>,
        removed: usize,
        tickers: usize,
    ) -> Result<bool, Error> {
        let Workers {
            deployments,
            failures,
            handover,
        } = workers;
        // By name once: a linear search per shard is quadratic at 1024 shards.
        let listed = by_name(deployments);
        let observed: Vec<ShardObservation> = plan
            .shards
            .iter()
            .map(|shard| observe(listed.get(&shard.name).copied()))
            .collect();
        let previous_epoch = qs
            .status
            .as_ref()
            .and_then(|s| s.assignment.as_ref())
            .map(|a| a.epoch);
        let previous_shards = qs.status.as_ref().map_or(0, |s| s.shards.len());
        let now = Time(jiff::Timestamp::now());
        let mut status = planned_status(qs, plan, &observed, &now);
        worker_failed(&mut status, failures, qs.metadata.generation, &now);
        status.handover = handover;
        if let Some(before) = stored_status(qs, ctx) {
            keep_transition_times(&mut status.conditions, &before.conditions);
        }
        let ready = status.ready_shards;
        let total = plan.shards.len();
        self.write_status(qs, ctx, &status).await?;

        // One Event per new failure (the condition changed), not one per reconcile.
        if let Some(first) = failures.first() {
            let degraded = |s: &QuoteStreamStatus| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == DEGRADED && c.status == "True")
                    .map(|c| (c.reason.clone(), c.message.clone()))
            };
            let before = qs.status.as_ref().and_then(degraded);
            let now = degraded(&status);
            if before != now
                && let Some((_, message)) = now
            {
                tracing::warn!(stream = %key(qs), reason = first.reason(), %message, "workers report a failure");
                publish(
                    ctx,
                    &self.reference,
                    EventType::Warning,
                    first.reason(),
                    message,
                )
                .await;
            }
        }
        ctx.metrics
            .set_stream_shards(&self.namespace, &self.name, total, ready);
        if previous_shards != total && previous_shards > 0 {
            let why = match &qs.spec.autoscale {
                Some(a) => format!(
                    "; spec.autoscale: {tickers} tickers at {} per shard, spec.shards {}, bounds {}..{}",
                    a.tickers_per_shard, qs.spec.shards, a.min_shards, a.max_shards
                ),
                None => String::new(),
            };
            let note = format!("{previous_shards} -> {total} shards ({removed} removed){why}");
            publish(ctx, &self.reference, EventType::Normal, "Scaled", note).await;
        }
        if previous_epoch.is_some_and(|e| e != plan.epoch) {
            let note = format!(
                "assignment epoch {} ({tickers} tickers over {total} shards)",
                plan.epoch
            );
            publish(ctx, &self.reference, EventType::Normal, "Resharded", note).await;
        } else if previous_epoch.is_none() {
            let note = format!("{total} shards for {tickers} tickers");
            publish(ctx, &self.reference, EventType::Normal, "Created", note).await;
        }
        Ok(ready as usize == total)
    }

    /// A spec the operator cannot act on: Degraded with the reason and the fix, a warning
    /// Event, and no change to the running shards.
    async fn degraded(
        &self,
        qs: &QuoteStream,
        ctx: &Context,
        error: &PlanError,
    ) -> Result<Action, Error> {
        let status = failed_status(qs, error, &[], &Time(jiff::Timestamp::now()));
        self.write_status(qs, ctx, &status).await?;
        ctx.metrics.reconcile_errors(error.reason()).inc();
        let note = error.to_string();
        publish(
            ctx,
            &self.reference,
            EventType::Warning,
            error.reason(),
            note,
        )
        .await;
        // The spec or the ConfigMap must change first; both trigger a reconcile by themselves.
        // Secrets are not watched (the operator may only `get` them), so a label added to a
        // Secret is seen by the next look, within 30 s.
        let again = match error {
            PlanError::SecretNotAllowed { .. } => 30,
            _ => 300,
        };
        Ok(Action::requeue(Duration::from_secs(again)))
    }

    /// Patches the stream's status unless it already is `status` (a resync of an unchanged
    /// stream writes nothing; `status.history` is the history step's and not compared).
    ///
    /// The stream comes from the watch cache, which may not have seen this operator's last
    /// status write yet (a reconcile triggered by a Deployment event right after it): then
    /// the status to compare with is the one written, not the cached one.
    async fn write_status(
        &self,
        qs: &QuoteStream,
        ctx: &Context,
        status: &QuoteStreamStatus,
    ) -> Result<(), Error> {
        let without_history = |s: &QuoteStreamStatus| QuoteStreamStatus {
            history: None,
            ..s.clone()
        };
        let desired = without_history(status);
        let current = stored_status(qs, ctx).map(|s| without_history(&s));
        if current.as_ref() == Some(&desired) {
            self.metrics.unchanged(Written::Status).inc();
            return Ok(());
        }
        self.metrics.writes(Written::Status, "patch").inc();
        let produced = self
            .writes
            .send(patch_status(&self.streams, &self.name, status))
            .await?;
        let version = qs.resource_version().unwrap_or_default();
        ctx.own_status
            .remember(&key(qs), &version, produced, desired);
        Ok(())
    }
}

/// The stream's status as stored: the one this operator last wrote while the watch cache still
/// shows a version from before that write (`own_status`), else the cached one.
fn stored_status(qs: &QuoteStream, ctx: &Context) -> Option<QuoteStreamStatus> {
    let version = qs.resource_version().unwrap_or_default();
    ctx.own_status
        .stored(&key(qs), &version)
        .or_else(|| qs.status.clone())
}

/// Merge-patches the status; returns the stream's resourceVersion after the write.
async fn patch_status(
    streams: &Api<QuoteStream>,
    name: &str,
    status: &QuoteStreamStatus,
) -> Result<Option<String>, kube::Error> {
    // status.history is the history step's alone (`crate::history`, from a fresh read): left
    // out here, a stale copy of it can never overwrite a newer one.
    let status = QuoteStreamStatus {
        history: None,
        ..status.clone()
    };
    let body = json!({ "status": status });
    let written = streams
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(written.metadata.resource_version)
}

async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(bounded(note, MAX_MESSAGE_BYTES)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "event not recorded");
    }
}
