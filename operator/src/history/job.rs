//! The backfill Job of one batch, and reading one back: `quotestream-worker backfill` in the
//! worker image, under the same restricted pod security as the shard workers, owned by the
//! stream (deleting the stream deletes its Jobs and their pods).

use std::collections::BTreeMap;

use jiff::civil::Date;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use quotestream_api::crd::{STREAM_LABEL, WorkerTemplate};

use super::record::SeriesKey;
use crate::resources::meta::{
    APP_INSTANCE_LABEL, APP_NAME, APP_NAME_LABEL, MANAGED_BY, MANAGED_BY_LABEL, MAX_LABEL_VALUE,
};
use crate::resources::pod::{container_security, pod_security};

/// Label on every backfill Job and its pods: the bar interval (`1d`, `1m`, …). Pods with it are
/// not shard workers.
pub const HISTORY_LABEL: &str = "quotes.opa.io/history";
/// Annotations that say what a Job backfills (read back by the operator).
pub const TICKERS_ANNOTATION: &str = "quotes.opa.io/history-tickers";
pub const FROM_ANNOTATION: &str = "quotes.opa.io/history-from";
pub const SOURCE_ANNOTATION: &str = "quotes.opa.io/history-source";
pub const GENERATION_ANNOTATION: &str = "quotes.opa.io/history-generation";
/// Set by the operator once the Job's outcome is in the stream's status.
pub const RECORDED_ANNOTATION: &str = "quotes.opa.io/history-recorded";

/// Retries of a failed pod: the backfill resumes from its checkpoint in the database, so a
/// retry after a crash or a vendor outage costs only what was not written yet.
pub const BACKOFF_LIMIT: i32 = 2;
/// A finished Job (and its pod, with the logs) is kept a day, then deleted by Kubernetes.
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 86_400;
/// A Job still running after 6 hours is stopped (failed `DeadlineExceeded`): a hung vendor
/// must not hold one of the stream's slots forever.
pub const ACTIVE_DEADLINE_SECONDS: i64 = 6 * 3600;

/// Everything one Job needs.
#[derive(Debug, Clone)]
pub struct JobPlan<'a> {
    pub name: String,
    pub namespace: &'a str,
    pub stream: &'a str,
    pub owner: &'a OwnerReference,
    pub key: &'a SeriesKey,
    pub from: Date,
    pub to: Date,
    pub tickers: &'a [String],
    pub generation: i64,
    pub image: &'a str,
    pub worker: &'a WorkerTemplate,
    /// `spec.history.resources`.
    pub resources: Option<&'a ResourceRequirements>,
    pub base_url: Option<&'a str>,
    /// The PostgreSQL sink's table, when not the default (`--table`: the rollups the store
    /// serves are that table's).
    pub table: Option<&'a str>,
    /// DATABASE_URL, the vendor's credentials, the allowed hosts, then `spec.worker.env`.
    pub env: Vec<EnvVar>,
}

/// A Job name: `<stream>-history-<8 hex>` within the 63 characters a Job name may have (it
/// becomes the pods' `job-name` label). `salt` makes each attempt's name its own.
pub fn job_name(stream: &str, key: &SeriesKey, tickers: &[String], salt: &str) -> String {
    let text = format!(
        "{}\n{}\n{}\n{salt}",
        key.interval,
        key.source,
        tickers.join(",")
    );
    let hash = xxhash_rust::xxh64::xxh64(text.as_bytes(), 0) as u32;
    let suffix = format!("-history-{hash:08x}");
    let keep = MAX_LABEL_VALUE - suffix.len();
    let mut head: String = stream.chars().take(keep).collect();
    // A name may not end in '-' or '.' before the suffix's '-': trimming keeps it valid.
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    format!("{head}{suffix}")
}

/// The labels of a Job and its pods. The stream label puts the pods under the workers'
/// NetworkPolicy (they need the same egress: DNS, PostgreSQL, the vendor); there is no shard
/// label, and `quotes.opa.io/history` tells them apart from shard workers.
fn labels(stream: &str, interval: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (STREAM_LABEL.to_owned(), stream.to_owned()),
        (HISTORY_LABEL.to_owned(), interval.to_owned()),
        (APP_NAME_LABEL.to_owned(), APP_NAME.to_owned()),
        (APP_INSTANCE_LABEL.to_owned(), stream.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "backfill".to_owned(),
        ),
    ])
}

/// The command line of the backfill (its interface: docs/history.md).
pub fn args(plan: &JobPlan<'_>) -> Vec<String> {
    let mut args = vec![
        "quotestream-worker".to_owned(),
        "backfill".to_owned(),
        "--tickers".to_owned(),
        plan.tickers.join(","),
        "--from".to_owned(),
        plan.from.to_string(),
        "--to".to_owned(),
        plan.to.to_string(),
        "--interval".to_owned(),
        plan.key.interval.clone(),
        "--source".to_owned(),
        plan.key.source.clone(),
    ];
    if let Some(url) = plan.base_url {
        args.push("--base-url".to_owned());
        args.push(url.to_owned());
    }
    if let Some(table) = plan.table {
        args.push("--table".to_owned());
        args.push(table.to_owned());
    }
    args
}

/// `spec.history.resources`, else requests 100m CPU / 64Mi, limit 512Mi memory (a backfill
/// holds a batch of bars in memory, more than a streaming shard, whose `spec.worker.resources`
/// would be too tight).
fn resources(set: Option<&ResourceRequirements>) -> ResourceRequirements {
    set.cloned().unwrap_or_else(|| {
        let q = |s: &str| Quantity(s.to_owned());
        ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), q("100m")),
                ("memory".to_owned(), q("64Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), q("512Mi"))])),
            ..ResourceRequirements::default()
        }
    })
}

/// The Job of `plan`.
pub fn job(plan: &JobPlan<'_>) -> Job {
    let labels = labels(plan.stream, &plan.key.interval);
    let annotations = BTreeMap::from([
        (TICKERS_ANNOTATION.to_owned(), plan.tickers.join(",")),
        (FROM_ANNOTATION.to_owned(), plan.from.to_string()),
        (SOURCE_ANNOTATION.to_owned(), plan.key.source.clone()),
        (
            GENERATION_ANNOTATION.to_owned(),
            plan.generation.to_string(),
        ),
    ]);
    let w = plan.worker;
    let mut pod_labels = w.labels.clone().unwrap_or_default();
    pod_labels.extend(labels.clone());
    let container = Container {
        name: "backfill".to_owned(),
        image: Some(plan.image.to_owned()),
        image_pull_policy: w.image_pull_policy.clone(),
        command: Some(args(plan)),
        env: Some(plan.env.clone()),
        resources: Some(resources(plan.resources)),
        security_context: Some(container_security()),
        // The backfill's last lines (the tickers that failed and why) become the termination
        // message the operator reads when the pod fails.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(plan.name.clone()),
            namespace: Some(plan.namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![plan.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            completions: Some(1),
            parallelism: Some(1),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: w.annotations.clone(),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("Never".to_owned()),
                    security_context: Some(pod_security()),
                    // The backfill never calls the Kubernetes API.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: w.node_selector.clone(),
                    tolerations: w.tolerations.clone(),
                    affinity: w.affinity.clone(),
                    priority_class_name: w.priority_class_name.clone(),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Where a Job of the stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Complete,
    /// Failed for good (backoff limit, deadline): the reason and message of its condition.
    Failed,
}

/// What a backfill Job of the stream does, read back from its annotations and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub name: String,
    pub key: SeriesKey,
    pub from: Date,
    pub tickers: Vec<String>,
    pub generation: i64,
    pub state: JobState,
    /// The Job's `Failed` condition, `Reason: message`.
    pub condition: Option<String>,
    pub recorded: bool,
}

/// Most tickers read from one Job's annotation (the CRD allows 1000 per batch).
const MAX_JOB_TICKERS: usize = 1000;

/// Reads one of the stream's Jobs; None when it does not carry what the operator writes (then
/// it is not one of the backfill Jobs, and it is left alone).
pub fn read(job: &Job) -> Option<JobInfo> {
    let meta = &job.metadata;
    let interval = meta.labels.as_ref()?.get(HISTORY_LABEL)?;
    let notes = meta.annotations.as_ref()?;
    let tickers: Vec<String> = notes
        .get(TICKERS_ANNOTATION)?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .take(MAX_JOB_TICKERS)
        .map(str::to_owned)
        .collect();
    let from = notes.get(FROM_ANNOTATION)?.parse::<Date>().ok()?;
    let source = notes.get(SOURCE_ANNOTATION)?;
    let generation = notes
        .get(GENERATION_ANNOTATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let is = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    let (state, condition) = if is("Complete").is_some() {
        (JobState::Complete, None)
    } else if let Some(c) = is("Failed") {
        let text = format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Failed"),
            c.message.as_deref().unwrap_or("the Job failed")
        );
        (JobState::Failed, Some(text))
    } else {
        (JobState::Running, None)
    };
    Some(JobInfo {
        name: meta.name.clone()?,
        key: SeriesKey {
            interval: interval.clone(),
            source: source.clone(),
        },
        from,
        tickers,
        generation,
        state,
        condition,
        recorded: notes.get(RECORDED_ANNOTATION).is_some_and(|v| v == "true"),
    })
}
