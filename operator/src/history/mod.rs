//! `spec.history`: the operator backfills each ticker's past with Kubernetes Jobs running
//! `quotestream-worker backfill`, only for the tickers that lack it, and reports progress in
//! `status.history` and Events (docs/history.md, "From a QuoteStream").
//!
//! - [`plan`]: what the spec asks for and what is left to run (pure);
//! - [`record`]: what each ticker has, kept in `status.history`;
//! - [`job`]: the Job of one batch, and reading one back;
//! - [`outcome`]: what a finished Job did, ticker by ticker.
//!
//! One step of the stream's reconcile, after its shards: read the stream's backfill Jobs, fold
//! the finished ones into the record, start Jobs for what is due (at most
//! `spec.history.parallelism` at once), write `status.history`.

pub mod job;
pub mod outcome;
pub mod plan;
pub mod record;

#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, ResourceExt};
use quotestream_api::contract::env::{
    BACKFILL_REQUESTS_PER_HOUR, DATABASE_URL, POLYGON_API_KEY, SOURCE_HOSTS,
};
use quotestream_api::crd::{
    DEFAULT_TABLE, DepthError, HistorySource, HistorySpec, HistoryStatus, STREAM_LABEL, depth_days,
};
use quotestream_api::{QuoteStream, QuoteStreamSpec, TickerSet};
use serde_json::{Value, json};

use crate::policy::Policy;
use crate::resources::env::{alpaca_env, from_secret, value};
use crate::resources::meta::controlled_by;
use crate::resources::plan::{PlanError, StreamPlan, check_host};
use job::{HISTORY_LABEL, JobInfo, JobPlan, JobState, RECORDED_ANNOTATION};
use plan::{Assessment, Running, Series};
use record::{Failure, Record};

/// Why `spec.history` cannot be acted on (the CRD refuses these; the operator checks again for
/// streams stored before the CRD had the rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Depth(#[from] DepthError),
    #[error(
        "spec.history writes bars to the stream's PostgreSQL database, but the stream has no spec.sinks.postgres: add spec.sinks.postgres.dsnSecretRef, or remove spec.history"
    )]
    NoDatabase,
    #[error(
        "spec.history.source {0} needs credentials: set spec.history.{0} (or stream from {0}, whose spec.source.{0} it then uses)"
    )]
    NoCredentials(&'static str),
}

/// The checks of `spec.history` made with the stream's plan: depths, the database, the
/// credentials, and the bars API's host against the admin's list for the vendor.
pub fn check(spec: &QuoteStreamSpec, policy: &Policy) -> Result<(), PlanError> {
    let Some(h) = &spec.history else {
        return Ok(());
    };
    if let Some(d) = &h.daily {
        depth_days("spec.history.daily", d).map_err(HistoryError::from)?;
    }
    if let Some(i) = &h.intraday {
        depth_days("spec.history.intraday.depth", &i.depth).map_err(HistoryError::from)?;
    }
    if spec.sinks.postgres.is_none() {
        return Err(HistoryError::NoDatabase.into());
    }
    if credentials(spec, h).is_none() {
        return Err(HistoryError::NoCredentials(h.source.name()).into());
    }
    if let Some((field, url)) = h.base_url(&spec.source) {
        check_host(policy, h.source.source_type(), field, url)?;
    }
    Ok(())
}

/// The vendor credentials of the backfill: `spec.history`'s own, else the live source's of the
/// same vendor. Some(empty) for Yahoo (none needed); None when missing.
fn credentials(spec: &QuoteStreamSpec, h: &HistorySpec) -> Option<Vec<EnvVar>> {
    match h.source {
        HistorySource::Yahoo => Some(Vec::new()),
        HistorySource::Alpaca => {
            let creds = h
                .alpaca
                .as_ref()
                .map(|a| &a.credentials_secret_ref)
                .or_else(|| {
                    spec.source
                        .alpaca
                        .as_ref()
                        .map(|a| &a.credentials_secret_ref)
                })?;
            Some(alpaca_env(creds).to_vec())
        }
        HistorySource::Polygon => {
            let key = h
                .polygon
                .as_ref()
                .map(|p| &p.api_key_secret_ref)
                .or_else(|| spec.source.polygon.as_ref().map(|p| &p.api_key_secret_ref))?;
            Some(vec![from_secret(POLYGON_API_KEY, key)])
        }
    }
}

/// An Event the controller records on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub text: String,
}

/// What the history step asks of the controller.
#[derive(Debug, Default)]
pub struct Report {
    pub notes: Vec<Note>,
    /// Look again this soon (a failed ticker's retry is due); None: the Job watch suffices.
    pub requeue: Option<Duration>,
}

/// The history step of one stream's reconcile (after its shards are applied).
pub async fn reconcile(
    client: &Client,
    qs: &QuoteStream,
    plan: &StreamPlan,
    tickers: &TickerSet,
    policy: &Policy,
) -> Result<Report, kube::Error> {
    let had = qs.status.as_ref().is_some_and(|s| s.history.is_some());
    if qs.spec.history.is_none() && !had {
        // Never had history: no request at all.
        return Ok(Report::default());
    }
    let ns = plan.namespace.as_str();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let selector = format!("{STREAM_LABEL}={},{HISTORY_LABEL}", plan.stream);
    // Only the stream's own Jobs, and only those that say what they backfill.
    let owned: Vec<(JobInfo, Job)> = jobs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(&j.metadata, &plan.owner.uid))
        .filter_map(|j| Some((job::read(&j)?, j)))
        .collect();
    let infos: Vec<&JobInfo> = owned.iter().map(|(i, _)| i).collect();
    let streams: Api<QuoteStream> = Api::namespaced(client.clone(), ns);
    // The record as written last, not as the watch cache may still show it: a reconcile can
    // run on a stream object older than the previous reconcile's status write.
    let current = streams.get_status(&plan.stream).await?;
    let previous = current.status.as_ref().and_then(|s| s.history.as_ref());
    let mut report = Report::default();

    let Some(history) = &qs.spec.history else {
        // History switched off: stop what runs, forget the progress.
        for info in infos.iter().filter(|i| i.state == JobState::Running) {
            delete(&jobs, &info.name).await?;
        }
        if previous.is_some() {
            let body = json!({ "status": { "history": null } });
            streams
                .patch_status(&plan.stream, &PatchParams::default(), &Patch::Merge(&body))
                .await?;
        }
        return Ok(report);
    };

    // Fold the finished Jobs not yet in the record into it.
    let mut record = Record::from_status(previous);
    let now = Timestamp::now();
    let mut recorded = Vec::new();
    for (info, job) in &owned {
        if info.state == JobState::Running || info.recorded {
            continue;
        }
        let message = match info.state {
            JobState::Failed => last_message(client, ns, job).await?,
            _ => None,
        };
        let result = outcome::outcome(info, message.as_deref());
        for t in &result.done {
            record.complete(&info.key, t, info.from);
        }
        let at = finished_at(job).unwrap_or(now);
        for (t, why) in &result.failed {
            let failure = Failure {
                from: info.from,
                reason: why.clone(),
                at,
                job: info.name.clone(),
                generation: info.generation,
            };
            record.fail(&info.key, t, failure);
        }
        report.notes.push(finished_note(info, &result));
        recorded.push(info.name.clone());
    }

    let today = now.to_zoned(TimeZone::UTC).date();
    let series = match plan::wanted(history, today) {
        Ok(s) => s,
        // `check` refused this spec before the plan was made: not reached.
        Err(e) => {
            tracing::warn!(stream = %plan.stream, error = %e, "history not planned");
            return Ok(report);
        }
    };
    let keys: Vec<_> = series.iter().map(|s| s.key.clone()).collect();
    record.retain(tickers, &keys);
    let mut running: Vec<Running> = infos
        .iter()
        .filter(|i| i.state == JobState::Running)
        .map(|i| Running {
            name: i.name.clone(),
            key: i.key.clone(),
            tickers: i.tickers.clone(),
        })
        .collect();
    let generation = qs.metadata.generation.unwrap_or(0);
    let first = plan::assess(
        history, &series, tickers, &record, &running, generation, now,
    );

    // Start what is due, within the stream's parallelism.
    let env = job_env(qs, history, policy);
    for (i, batch) in first.start.iter().enumerate() {
        let salt = format!("{}-{i}", now.as_nanosecond());
        let name = job::job_name(&plan.stream, &batch.series.key, &batch.tickers, &salt);
        let body = job::job(&JobPlan {
            name: name.clone(),
            namespace: ns,
            stream: &plan.stream,
            owner: &plan.owner,
            key: &batch.series.key,
            from: batch.series.from,
            to: today,
            tickers: &batch.tickers,
            generation,
            image: &plan.image,
            worker: &plan.worker,
            resources: history.resources.as_ref(),
            base_url: history.base_url(&qs.spec.source).map(|(_, url)| url),
            table: qs
                .spec
                .sinks
                .postgres
                .as_ref()
                .map(|pg| pg.table.as_str())
                .filter(|t| *t != DEFAULT_TABLE),
            env: env.clone(),
        });
        match jobs.create(&PostParams::default(), &body).await {
            Ok(_) => {}
            // Made by a reconcile whose answer was lost: it runs already.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
        report
            .notes
            .push(started_note(&name, &batch.series, &batch.tickers));
        running.push(Running {
            name,
            key: batch.series.key.clone(),
            tickers: batch.tickers.clone(),
        });
    }
    let now_state = if first.start.is_empty() {
        first
    } else {
        plan::assess(
            history, &series, tickers, &record, &running, generation, now,
        )
    };

    let status = history_status(&now_state, tickers.len(), &running, &record);
    let body = json!({ "status": { "history": status_patch(&status) } });
    streams
        .patch_status(&plan.stream, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    // Only once the status holds their outcome: a Job marked before would be lost if the
    // status write failed.
    for name in recorded {
        let mark = json!({ "metadata": { "annotations": { RECORDED_ANNOTATION: "true" } } });
        match jobs
            .patch(&name, &PatchParams::default(), &Patch::Merge(&mark))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    report.requeue = now_state
        .next_retry
        .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
        .map(|d| d.max(Duration::from_secs(1)));
    Ok(report)
}

/// The environment of a backfill: the database of the stream's PostgreSQL sink, the vendor's
/// credentials, the hosts the admin allows for the vendor, then `spec.worker.env` (checked
/// against the reserved names with the plan).
fn job_env(qs: &QuoteStream, history: &HistorySpec, policy: &Policy) -> Vec<EnvVar> {
    let spec = &qs.spec;
    let mut env = Vec::new();
    if let Some(pg) = &spec.sinks.postgres {
        env.push(from_secret(DATABASE_URL, &pg.dsn_secret_ref));
    }
    env.extend(credentials(spec, history).unwrap_or_default());
    let hosts = policy.source_hosts.for_type(history.source.source_type());
    env.push(value(SOURCE_HOSTS, &hosts.to_string()));
    env.push(value(
        BACKFILL_REQUESTS_PER_HOUR,
        &per_job_budget(history).to_string(),
    ));
    env.extend(
        spec.worker
            .as_ref()
            .and_then(|w| w.env.clone())
            .unwrap_or_default(),
    );
    env
}

/// Each running Job's share of the stream's backfill budget (`requestsPerHour`, else the
/// vendor's default) over `parallelism` Jobs, so that together they never exceed it; at least
/// 1 per hour (the backfill's lower bound).
pub fn per_job_budget(history: &HistorySpec) -> f64 {
    let budget = history
        .requests_per_hour
        .unwrap_or_else(|| history.source.default_requests_per_hour());
    (budget as f64 / f64::from(history.parallelism.max(1))).max(1.0)
}

/// `status.history` from the assessment and the record.
fn history_status(
    a: &Assessment,
    total: usize,
    running: &[Running],
    record: &Record,
) -> HistoryStatus {
    let (completed, failures) = record.to_lists();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    HistoryStatus {
        progress: Some(plan::progress(a, total)),
        pending: count(a.pending),
        running: count(a.running),
        done: count(a.done),
        failed: count(a.failed),
        jobs: running.iter().map(|r| r.name.clone()).collect(),
        completed,
        failures,
    }
}

/// The merge patch of `status.history`: a list that became empty is written as null, since a
/// merge patch leaves out an absent key.
fn status_patch(status: &HistoryStatus) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        for key in ["jobs", "completed", "failures"] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    v
}

async fn delete(jobs: &Api<Job>, name: &str) -> Result<(), kube::Error> {
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The termination message of the Job's most recent failed pod (its pods carry the Job's
/// name label and the Job as controlling owner).
async fn last_message(client: &Client, ns: &str, job: &Job) -> Result<Option<String>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("batch.kubernetes.io/job-name={}", job.name_any());
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let list: Vec<Pod> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, uid))
        .collect();
    Ok(outcome::termination_message(&list))
}

/// When the Job finished: its Complete or Failed condition's transition time.
fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .find_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

fn started_note(name: &str, series: &Series, tickers: &[String]) -> Note {
    Note {
        type_: EventType::Normal,
        reason: "HistoryStarted",
        text: format!(
            "Job {name}: {} bars of {} from {} ({}): {}",
            series.key.interval,
            plural(tickers.len()),
            series.from,
            series.key.source,
            tickers.join(",")
        ),
    }
}

fn finished_note(info: &JobInfo, result: &outcome::Outcome) -> Note {
    if result.failed.is_empty() {
        return Note {
            type_: EventType::Normal,
            reason: "HistoryDone",
            text: format!(
                "Job {}: {} bars of {} from {} ({}) backfilled",
                info.name,
                info.key.interval,
                plural(result.done.len()),
                info.from,
                info.key.source
            ),
        };
    }
    let reasons: Vec<String> = result
        .failed
        .iter()
        .map(|(t, why)| format!("{t}: {why}"))
        .collect();
    Note {
        type_: EventType::Warning,
        reason: "HistoryFailed",
        text: format!(
            "Job {}: {} of {} failed ({} bars from {}, {}); retried in an hour or when the spec changes. {}",
            info.name,
            result.failed.len(),
            plural(info.tickers.len()),
            info.key.interval,
            info.from,
            info.key.source,
            reasons.join("; ")
        ),
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 ticker".to_owned()
    } else {
        format!("{n} tickers")
    }
}
