//! `spec.history` against a real kube-apiserver (docs/history.md, "From a QuoteStream"): the
//! operator starts backfill Jobs for the tickers that lack history, within the stream's
//! parallelism, folds their outcome into `status.history` and Events, backfills only an added
//! ticker, re-runs every ticker for a deeper spec, and the garbage collector removes the Jobs
//! with the stream.
//!
//! No kube-controller-manager runs here (no Job controller, no kubelet): the test plays them
//! through the real API — it writes a Job's status (`Complete` or `Failed` conditions, via the
//! status subresource) and, for a failure, the Job's pod with the backfill's termination
//! message, exactly the objects the operator reads in a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::BTreeSet;

use quotestream_testkit::ControlPlane;
use serde_json::{Value, json};
use support::cluster::{
    WAIT, apply, condition, control_plane_with_crd, events, eventually, get_json, kubectl,
};
use support::operator::{Operator, TEST_WORKER_IMAGE};

const NS: &str = "default";
const STREAM: &str = "hist";

fn stream(tickers: &[&str], history: Value) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": STREAM, "namespace": NS},
        "spec": {"tickers": tickers, "shards": 1, "interval": "1s",
                 "source": {"type": "synthetic"},
                 "sinks": {"postgres": {"dsnSecretRef": {"name": "quotes-db", "key": "dsn"}}},
                 "history": history}
    })
}

/// The DSN Secret, with the label the Secret policy requires.
fn database_secret(cp: &ControlPlane) {
    apply(
        cp,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "quotes-db", "namespace": NS,
                         "labels": {"quotes.opa.io/stream-access": "true"}},
            "stringData": {"dsn": "postgres://quotes:secret@127.0.0.1:5432/quotes"}
        }),
    );
}

/// The stream's backfill Jobs.
fn jobs(cp: &ControlPlane) -> Vec<Value> {
    get_json(
        cp,
        &[
            "get",
            "jobs",
            "-n",
            NS,
            "-l",
            &format!("quotes.opa.io/stream={STREAM},quotes.opa.io/history"),
        ],
    )
    .and_then(|l| l["items"].as_array().cloned())
    .unwrap_or_default()
}

fn tickers_of(job: &Value) -> Vec<String> {
    job["metadata"]["annotations"]["quotes.opa.io/history-tickers"]
        .as_str()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn finished(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Complete" || c["type"] == "Failed")
    })
}

/// The Jobs not finished yet, once there are exactly `n` of them.
fn running_jobs(cp: &ControlPlane, op: &Operator, n: usize) -> Vec<Value> {
    eventually(
        &format!("{n} running backfill Jobs"),
        WAIT,
        || format!("{}\n{:#?}", op.log(), jobs(cp)),
        || {
            let running: Vec<Value> = jobs(cp).into_iter().filter(|j| !finished(j)).collect();
            (running.len() == n).then_some(running)
        },
    )
}

fn job_status(cp: &ControlPlane, name: &str, status: &Value) {
    kubectl(
        cp,
        &[
            "patch",
            "job",
            name,
            "-n",
            NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": status}).to_string(),
        ],
        None,
    );
}

/// Start and end of a simulated run: now (the operator retries a failure an hour after it).
fn times() -> (String, String) {
    let end = jiff::Timestamp::now();
    let start = end - jiff::SignedDuration::from_secs(60);
    let second = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    (second(start), second(end))
}

/// Plays the Job controller: the Job succeeded.
fn complete(cp: &ControlPlane, name: &str) {
    let (start, end) = times();
    job_status(
        cp,
        name,
        &json!({
            "startTime": start, "completionTime": end, "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods", "lastTransitionTime": end},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods", "lastTransitionTime": end}]
        }),
    );
}

/// Plays the Job controller and the kubelet: the Job's pod ended with exit code 1 and the
/// backfill's last lines as termination message, and the Job failed.
fn fail(cp: &ControlPlane, job: &Value, message: &str) {
    let (start, end) = times();
    let name = job["metadata"]["name"].as_str().unwrap();
    let uid = job["metadata"]["uid"].as_str().unwrap();
    let pod = format!("{name}-abcde");
    apply(
        cp,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": NS,
                         "labels": {"batch.kubernetes.io/job-name": name, "batch.kubernetes.io/controller-uid": uid},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                              "uid": uid, "controller": true}]},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "backfill", "image": TEST_WORKER_IMAGE}]}
        }),
    );
    let pod_status = json!({"status": {"phase": "Failed", "containerStatuses": [{
        "name": "backfill", "image": TEST_WORKER_IMAGE, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": message,
                                 "startedAt": start, "finishedAt": end}}}]}});
    kubectl(
        cp,
        &[
            "patch",
            "pod",
            &pod,
            "-n",
            NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            &pod_status.to_string(),
        ],
        None,
    );
    job_status(
        cp,
        name,
        &json!({
            "startTime": start, "failed": 3,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": end},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": end}]
        }),
    );
}

/// `status.history` once `check` accepts it.
fn history_status(
    cp: &ControlPlane,
    op: &Operator,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(
        what,
        WAIT,
        || {
            format!(
                "{}\n{}",
                op.log(),
                get_json(cp, &["get", &format!("qs/{STREAM}"), "-n", NS]).unwrap_or_default()["status"]
            )
        },
        || {
            let h = get_json(cp, &["get", &format!("qs/{STREAM}"), "-n", NS])?["status"]["history"]
                .clone();
            check(&h).then_some(h)
        },
    )
}

/// An Event's text (`note` in events.k8s.io, `message` in the core view kubectl shows).
fn note(event: &Value) -> &str {
    event["note"]
        .as_str()
        .or(event["message"].as_str())
        .unwrap_or_default()
}

fn counts(h: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| h[k].as_i64().unwrap_or(0);
    (n("done"), n("pending"), n("running"), n("failed"))
}

#[test]
fn backfill_jobs_follow_the_tickers_and_report_progress() {
    let cp = control_plane_with_crd();
    database_secret(&cp);
    let mut op = Operator::admin(&cp);
    op.wait_ready();
    let history = json!({"daily": "2y", "batchSize": 2, "parallelism": 1,
                         "baseUrl": "http://127.0.0.1:9/"});
    apply(&cp, &stream(&["AAPL", "MSFT", "NVDA"], history.clone()));

    // parallelism 1: one Job, the first batch of two.
    let first = running_jobs(&cp, &op, 1).remove(0);
    assert_eq!(tickers_of(&first), ["AAPL", "MSFT"]);
    let spec = &first["spec"];
    assert_eq!(spec["backoffLimit"], 2);
    assert_eq!(spec["ttlSecondsAfterFinished"], 86400);
    let owner = &first["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["name"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("QuoteStream"), Some(STREAM), Some(true))
    );
    let container = &spec["template"]["spec"]["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &command[..4],
        ["quotestream-worker", "backfill", "--tickers", "AAPL,MSFT"]
    );
    assert_eq!(
        &command[6..],
        [
            "--to",
            command[7],
            "--interval",
            "1d",
            "--source",
            "yahoo",
            "--base-url",
            "http://127.0.0.1:9/"
        ]
    );
    let dsn = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DATABASE_URL")
        .unwrap();
    assert_eq!(
        dsn["valueFrom"]["secretKeyRef"],
        json!({"name": "quotes-db", "key": "dsn", "optional": false})
    );
    assert_eq!(container["image"], TEST_WORKER_IMAGE);
    let h = history_status(&cp, &op, "3 pending, 2 running", |h| {
        counts(h) == (0, 3, 2, 0)
    });
    assert_eq!(h["progress"], "0/3 done, 2 running, 1 queued");
    assert_eq!(h["jobs"], json!([first["metadata"]["name"]]));
    let started = eventually(
        "a HistoryStarted Event",
        WAIT,
        || op.log(),
        || {
            events(&cp, NS, STREAM)
                .into_iter()
                .find(|e| e["reason"] == "HistoryStarted")
        },
    );
    assert!(note(&started).contains("AAPL,MSFT"), "{started}");

    // The first Job completes: its tickers are done and the next batch starts.
    complete(&cp, first["metadata"]["name"].as_str().unwrap());
    let second = eventually(
        "the second Job",
        WAIT,
        || op.log(),
        || {
            jobs(&cp)
                .into_iter()
                .find(|j| !finished(j) && tickers_of(j) == ["NVDA"])
        },
    );
    history_status(&cp, &op, "2 done, 1 running", |h| counts(h) == (2, 1, 1, 0));
    let done = eventually(
        "a HistoryDone Event",
        WAIT,
        || op.log(),
        || {
            events(&cp, NS, STREAM)
                .into_iter()
                .find(|e| e["reason"] == "HistoryDone")
        },
    );
    assert!(note(&done).contains("2 tickers"), "{done}");
    complete(&cp, second["metadata"]["name"].as_str().unwrap());
    let h = history_status(&cp, &op, "all 3 done", |h| counts(h) == (3, 0, 0, 0));
    assert_eq!(h["progress"], "3/3 done");
    assert_eq!(
        h["completed"][0]["tickers"],
        json!(["AAPL", "MSFT", "NVDA"])
    );
    assert!(h.get("jobs").is_none(), "{h}");

    // Adding one ticker backfills that ticker only.
    apply(
        &cp,
        &stream(&["AAPL", "MSFT", "NVDA", "TSLA"], history.clone()),
    );
    let added = running_jobs(&cp, &op, 1).remove(0);
    assert_eq!(tickers_of(&added), ["TSLA"]);

    // It fails; the backfill named it with its reason, which becomes the status' reason.
    fail(
        &cp,
        &added,
        "TSLA: FAILED (yahoo answered 404 Not Found (no such symbol)); 0 bars stored\nbackfill: 1 tickers, 0 done, 1 failed, in 0.4s (0 waits for the request budget)\nerror: backfill failed for 1 of 1 tickers (a rerun resumes where this one stopped):\n  TSLA: yahoo answered 404 Not Found (no such symbol)",
    );
    let h = history_status(&cp, &op, "TSLA failed", |h| counts(h) == (3, 0, 0, 1));
    let failure = &h["failures"][0];
    assert_eq!(failure["tickers"], json!(["TSLA"]));
    assert_eq!(
        failure["reason"],
        "TSLA: yahoo answered 404 Not Found (no such symbol)"
    );
    assert_eq!(failure["job"], added["metadata"]["name"]);
    assert_eq!(h["progress"], "3/4 done, 1 failed");
    let warning = eventually(
        "a HistoryFailed Event",
        WAIT,
        || op.log(),
        || {
            events(&cp, NS, STREAM)
                .into_iter()
                .find(|e| e["reason"] == "HistoryFailed" && e["type"] == "Warning")
        },
    );
    assert!(note(&warning).contains("404"), "{warning}");
    // Not retried within the hour: no new Job.
    let recorded = eventually(
        "the failed Job marked recorded",
        WAIT,
        || op.log(),
        || {
            let j = get_json(
                &cp,
                &[
                    "get",
                    "job",
                    added["metadata"]["name"].as_str().unwrap(),
                    "-n",
                    NS,
                ],
            )?;
            (j["metadata"]["annotations"]["quotes.opa.io/history-recorded"] == "true").then_some(j)
        },
    );
    assert!(finished(&recorded));
    assert!(jobs(&cp).iter().all(finished), "{:#?}", jobs(&cp));

    // A deeper history runs every ticker again (and the spec change retries TSLA at once).
    let mut deeper = history.clone();
    deeper["daily"] = json!("3y");
    deeper["parallelism"] = json!(2);
    apply(&cp, &stream(&["AAPL", "MSFT", "NVDA", "TSLA"], deeper));
    let again = running_jobs(&cp, &op, 2);
    let rerun: BTreeSet<String> = again.iter().flat_map(tickers_of).collect();
    assert_eq!(
        rerun,
        ["AAPL", "MSFT", "NVDA", "TSLA"].map(String::from).into()
    );
    let from = again[0]["metadata"]["annotations"]["quotes.opa.io/history-from"]
        .as_str()
        .unwrap();
    assert!(from < h["completed"][0]["from"].as_str().unwrap(), "{from}");

    // Deleting the stream deletes its Jobs (ownerReferences, the garbage collector).
    kubectl(
        &cp,
        &["delete", "qs", STREAM, "-n", NS, "--wait=false"],
        None,
    );
    eventually(
        "the stream's Jobs gone",
        WAIT,
        || format!("{:#?}", jobs(&cp)),
        || {
            let all = get_json(&cp, &["get", "jobs", "-n", NS])?;
            all["items"].as_array()?.is_empty().then_some(())
        },
    );
    op.assert_running();
}

#[test]
fn a_history_url_outside_the_vendor_hosts_degrades_the_stream_and_runs_nothing() {
    let cp = control_plane_with_crd();
    database_secret(&cp);
    let mut op = Operator::admin(&cp);
    op.wait_ready();
    apply(
        &cp,
        &stream(
            &["AAPL"],
            json!({"daily": "2y", "baseUrl": "https://attacker.example/"}),
        ),
    );
    let c = condition(&cp, NS, STREAM, "Degraded", "True", || op.log());
    assert_eq!(c["reason"], "SourceHostNotAllowed");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("spec.history.baseUrl") && message.contains("attacker.example"),
        "{message}"
    );
    assert!(jobs(&cp).is_empty());

    // Fixed: the Job starts; history removed: the running Job is stopped and the status cleared.
    apply(&cp, &stream(&["AAPL"], json!({"daily": "2y"})));
    running_jobs(&cp, &op, 1);
    let mut without = stream(&["AAPL"], Value::Null);
    without["spec"].as_object_mut().unwrap().remove("history");
    apply(&cp, &without);
    eventually(
        "the Job stopped and status.history gone",
        WAIT,
        || op.log(),
        || {
            let qs = get_json(&cp, &["get", &format!("qs/{STREAM}"), "-n", NS])?;
            (jobs(&cp).is_empty() && qs["status"].get("history").is_none()).then_some(())
        },
    );
}

/// The Job the operator writes runs: its pod template's command, args and environment (the
/// DSN resolved from the Secret, as kubelet does) executed as the real `quotestream-worker`
/// against the local Yahoo chart server and a real PostgreSQL. Its exit code decides the Job's
/// status, and the bars it stored are the ones the vendor serves.
#[test]
fn the_backfill_job_the_operator_writes_runs_to_completion() {
    let pg = quotestream_testkit::PostgresServer::start().unwrap();
    let dsn = pg.create_database("history").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let yahoo = runtime
        .block_on(quotestream_testkit::yahoo::YahooServer::start())
        .unwrap();
    let cp = control_plane_with_crd();
    apply(
        &cp,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "quotes-db", "namespace": NS,
                         "labels": {"quotes.opa.io/stream-access": "true"}},
            "stringData": {"dsn": dsn}
        }),
    );
    let mut op = Operator::admin(&cp);
    op.wait_ready();
    apply(
        &cp,
        &stream(
            &["AAPL", "^GSPC"],
            json!({"daily": "30d", "baseUrl": yahoo.base_url()}),
        ),
    );
    let job = running_jobs(&cp, &op, 1).remove(0);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let command = [strings(&container["command"]), strings(&container["args"])].concat();
    assert_eq!(command[0], "quotestream-worker", "{command:?}");
    // The environment as kubelet builds it: values, and the Secret's key for a reference.
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match &var["valueFrom"]["secretKeyRef"] {
            Value::Null => var["value"].as_str().unwrap_or_default().to_owned(),
            secret => {
                let s = get_json(
                    &cp,
                    &["get", "secret", secret["name"].as_str().unwrap(), "-n", NS],
                )
                .unwrap();
                // k8s-openapi's Secret decodes `data` from base64.
                let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(s).unwrap();
                let bytes = s.data.unwrap()[secret["key"].as_str().unwrap()].0.clone();
                String::from_utf8(bytes).unwrap()
            }
        };
        env.push((name, value));
    }
    assert!(
        env.iter().any(|(n, v)| n == "DATABASE_URL" && *v == dsn),
        "{env:?}"
    );
    let run = std::process::Command::new(support::worker_binary())
        .args(&command[1..])
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(0),
        "the Job's command failed:\n{stderr}"
    );
    let stored = pg
        .psql(
            "history",
            "SELECT symbol || ' ' || count(*) FROM quotes.real_time_vendor_bars \
             WHERE timeframe = '1d' GROUP BY symbol ORDER BY symbol",
        )
        .unwrap();
    let per_symbol: Vec<(String, i64)> = stored
        .lines()
        .filter_map(|l| {
            let (s, n) = l.trim().split_once(' ')?;
            Some((s.to_owned(), n.parse().ok()?))
        })
        .collect();
    assert_eq!(
        per_symbol
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        ["AAPL", "^GSPC"],
        "{stored}\n{stderr}"
    );
    assert!(
        per_symbol.iter().all(|(_, n)| *n >= 15),
        "about 20 trading days of daily bars each: {stored}"
    );
    // The Job controller's part: the pod succeeded, so the Job is Complete.
    complete(&cp, job["metadata"]["name"].as_str().unwrap());
    history_status(&cp, &op, "2 done", |h| counts(h).0 == 2);
    drop(yahoo);
}
