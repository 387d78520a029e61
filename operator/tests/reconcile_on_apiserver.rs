//! The operator against a real kube-apiserver (with the garbage collector): a QuoteStream
//! becomes shard ConfigMaps and Deployments; scaling — 2 → 3 → 2, and 3 → 5 → 2 through the
//! scale subresource, `kubectl apply` and `kubectl patch` — creates and removes shards, moves
//! exactly the tickers the shared assignment function moves (the minimum), never leaves a
//! ticker unowned, keeps the losing shards' tickers until the new shards are ready, and does
//! not roll untouched shards; a missing ticker ConfigMap degrades the stream; deleting the
//! stream removes everything it created and its metric series; a resync of an unchanged
//! stream writes nothing (no request, no new resourceVersion) and a hand edit is put back.
//!
//! There is no kubelet here: a test reports a Deployment ready itself (`mark_ready`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::BTreeMap;

use quotestream_testkit::ControlPlane;
use serde_json::{Value, json};
use support::cluster::{
    WAIT, apply, assignment, config_hashes, control_plane_with_crd, eventually, get_json, kubectl,
    mark_ready, pod_templates, wait_stream_ready,
};
use support::operator::{Operator, metric};
use support::reshard::{Lists, Reshard, is_settled};

const NS: &str = "default";

fn stream(name: &str, tickers: &[&str], shards: u32) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"tickers": tickers, "shards": shards, "interval": "1s", "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
    })
}

const TICKERS: [&str; 23] = [
    "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "BRK.B", "JPM", "V", "XOM", "UNH", "TSLA",
    "LLY", "AVGO", "WMT", "MA", "PG", "JNJ", "HD", "COST", "ORCL", "MRK", "ABBV",
];

/// How the test changes a stream's shard count.
#[derive(Debug, Clone, Copy)]
enum How {
    /// `kubectl scale qs/S --replicas=N`: the scale subresource.
    Scale,
    /// `kubectl apply --server-side` of the manifest with `spec.shards: N`.
    Apply,
    /// `kubectl patch qs/S --type=merge -p '{"spec":{"shards":N}}'`.
    Patch,
}

/// One stream under test, with the operator reconciling it.
struct Subject<'a> {
    cp: &'a ControlPlane,
    operator: &'a Operator,
    name: &'a str,
}

impl Subject<'_> {
    fn context(&self) -> String {
        format!("operator log:\n{}", self.operator.log())
    }

    fn lists(&self) -> Lists {
        assignment(self.cp, NS, self.name)
    }

    fn deployment(&self, shard: usize) -> String {
        format!("{}-shard-{shard}", self.name)
    }

    /// Successful reconciles so far (`quotestream_reconciles_total{result="ok"}`).
    fn reconciles(&self) -> f64 {
        self.operator
            .metrics()
            .and_then(|m| metric(&m, r#"quotestream_reconciles_total{result="ok""#))
            .unwrap_or(0.0)
    }

    fn set_shards(&self, how: How, shards: usize) {
        let qs = format!("qs/{}", self.name);
        match how {
            How::Scale => {
                let replicas = format!("--replicas={shards}");
                kubectl(self.cp, &["scale", &qs, "-n", NS, &replicas], None);
            }
            How::Apply => apply(
                self.cp,
                &stream(self.name, &TICKERS, u32::try_from(shards).unwrap()),
            ),
            How::Patch => {
                let patch = json!({"spec": {"shards": shards}}).to_string();
                kubectl(
                    self.cp,
                    &["patch", &qs, "-n", NS, "--type=merge", "-p", &patch],
                    None,
                );
            }
        }
    }

    /// Creates the stream with `shards` shards, reports every shard ready, and returns the
    /// settled lists.
    fn create(&self, shards: usize) -> Lists {
        apply(
            self.cp,
            &stream(self.name, &TICKERS, u32::try_from(shards).unwrap()),
        );
        let lists = eventually(
            &format!("{shards} shard ConfigMaps"),
            WAIT,
            || self.context(),
            || Some(self.lists()).filter(|l| l.len() == shards),
        );
        assert!(
            is_settled(&lists, TICKERS.len()),
            "a new stream's shards hold every ticker exactly once: {lists:?}"
        );
        for i in 0..shards {
            mark_ready(self.cp, NS, &self.deployment(i));
        }
        wait_stream_ready(self.cp, NS, self.name, shards as u64, || self.context());
        lists
    }

    /// Changes the shard count of the settled stream (`before`) and checks the reshard
    /// against the shared assignment function at every observed step; returns the new lists.
    fn reshard(&self, how: How, before: &Lists, to: usize) -> Lists {
        let from = before.len();
        let what = format!("{how:?} {from} -> {to}");
        let plan = Reshard::plan(before, to);
        let templates = pod_templates(self.cp, NS, self.name);
        let reconciled = self.reconciles();
        self.set_shards(how, to);
        // Every poll below is an observed step: no ticker on no shard, none on a shard that is
        // neither its old nor its new owner.
        let observe = || {
            let lists = self.lists();
            if let Err(e) = plan.check(&lists) {
                panic!("{what}: {e}\n{}", self.context());
            }
            lists
        };
        if to > from {
            eventually(
                &format!("{what}: the new shards' lists"),
                WAIT,
                || self.context(),
                || Some(observe()).filter(|l| l.len() == to),
            );
            // Make before break: the operator reconciles again (its own writes trigger it, and
            // it requeues every 2 s while new shards start), and still the losing shards keep
            // every moved ticker, because no new shard is ready.
            eventually(
                &format!("{what}: three more reconciles"),
                WAIT,
                || self.context(),
                || (self.reconciles() >= reconciled + 3.0).then_some(()),
            );
            let holding = observe();
            assert_eq!(
                Reshard::overlap(&holding),
                plan.moved.len(),
                "{what}: until the new shards are ready, each moved ticker stays with its old \
                 owner too: {holding:?}\n{}",
                self.context()
            );
            for i in from..to {
                mark_ready(self.cp, NS, &self.deployment(i));
            }
        }
        let after = eventually(
            &format!("{what}: the lists of rebalance(before, tickers, {to})"),
            WAIT,
            || format!("expected {:?}\n{}", plan.after, self.context()),
            || Some(observe()).filter(|l| *l == plan.after),
        );
        assert_eq!(
            plan.moved.len(),
            plan.minimum,
            "{what}: the tickers that moved are the minimum: {before:?} -> {after:?}"
        );
        let expected: Vec<String> = (0..to).map(|i| self.deployment(i)).collect();
        let now = eventually(
            &format!("{what}: Deployments shard-0..{to} and no other"),
            WAIT,
            || self.context(),
            || {
                let now = pod_templates(self.cp, NS, self.name);
                now.keys().eq(expected.iter()).then_some(now)
            },
        );
        for name in expected.iter().take(from.min(to)) {
            assert_eq!(
                templates[name], now[name],
                "{what}: {name} kept its pod template (it is not rolled)"
            );
        }
        wait_stream_ready(self.cp, NS, self.name, to as u64, || self.context());
        after
    }
}

#[test]
fn a_stream_becomes_shards_that_scale_minimally_and_are_garbage_collected() {
    let cp = control_plane_with_crd();
    let operator = Operator::admin(&cp);
    let demo = Subject {
        cp: &cp,
        operator: &operator,
        name: "demo",
    };
    apply(&cp, &stream("demo", &TICKERS, 3));
    let status = eventually(
        "status",
        WAIT,
        || demo.context(),
        || {
            let qs = get_json(&cp, &["get", "qs/demo", "-n", NS])?;
            (qs["status"]["shards"].as_array().map(Vec::len) == Some(3))
                .then_some(qs["status"].clone())
        },
    );
    assert_eq!(status["tickers"], TICKERS.len());
    assert_eq!(status["selector"], "quotes.opa.io/stream=demo");
    assert_eq!(
        status["readyShards"], 0,
        "no kubelet here: no worker is ready"
    );
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ShardsStarting");
    let three = demo.create(3);

    // The scale subresource, up and down.
    let five = demo.reshard(How::Scale, &three, 5);
    let two = demo.reshard(How::Scale, &five, 2);
    assert_eq!(two.values().flatten().count(), TICKERS.len());
    let series = r#"quotestream_shards_desired{namespace="default",stream="demo""#;
    let body = operator.metrics().unwrap();
    assert_eq!(metric(&body, series), Some(2.0), "{body}");
    // Without leader election the one replica leads: the no-leader alert stays silent.
    assert_eq!(metric(&body, "quotestream_leader"), Some(1.0), "{body}");

    // Deleting the stream deletes what it owns (ownerReferences + the garbage collector), and
    // the operator drops its per-stream metric series.
    kubectl(&cp, &["delete", "qs/demo", "-n", NS], None);
    eventually(
        "shards garbage-collected",
        WAIT,
        || demo.context(),
        || {
            (config_hashes(&cp, NS, "demo").is_empty() && assignment(&cp, NS, "demo").is_empty())
                .then_some(())
        },
    );
    let body = eventually(
        "no quotestream_shards_* series of the deleted stream",
        WAIT,
        || format!("{}\n/metrics:\n{:?}", demo.context(), operator.metrics()),
        || {
            operator
                .metrics()
                .filter(|m| !m.contains(r#"stream="demo""#))
        },
    );
    assert_eq!(metric(&body, "quotestream_streams"), Some(0.0), "{body}");
}

#[test]
fn editing_spec_shards_reshards_like_kubectl_scale() {
    let cp = control_plane_with_crd();
    let operator = Operator::admin(&cp);
    let edited = Subject {
        cp: &cp,
        operator: &operator,
        name: "edited",
    };
    let three = edited.create(3);
    let five = edited.reshard(How::Apply, &three, 5);
    let two = edited.reshard(How::Patch, &five, 2);
    let shards: BTreeMap<u32, usize> = two.iter().map(|(i, l)| (*i, l.len())).collect();
    assert_eq!(shards, BTreeMap::from([(0, 12), (1, 11)]), "{two:?}");
}

#[test]
fn a_missing_ticker_configmap_degrades_the_stream_until_it_appears() {
    let cp = control_plane_with_crd();
    let operator = Operator::admin(&cp);
    apply(
        &cp,
        &json!({
            "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
            "metadata": {"name": "watch", "namespace": "default"},
            "spec": {"tickersFrom": {"configMapKeyRef": {"name": "watchlist", "key": "tickers"}}, "shards": 2,
                     "source": {"type": "synthetic"}, "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
        }),
    );
    let degraded = eventually(
        "Degraded condition",
        WAIT,
        || operator.log(),
        || {
            let qs = get_json(&cp, &["get", "qs/watch", "-n", NS])?;
            qs["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Degraded" && c["status"] == "True")
                .cloned()
        },
    );
    assert_eq!(degraded["reason"], "MissingConfigMap");
    assert!(
        degraded["message"].as_str().unwrap().contains("watchlist"),
        "{degraded}"
    );
    assert!(
        config_hashes(&cp, NS, "watch").is_empty(),
        "nothing is created for an unresolvable stream"
    );

    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watchlist", "namespace": "default"},
                       "data": {"tickers": "AAPL\nMSFT\nNVDA\n# more\nBRK.B\n"}}),
    );
    let a = eventually(
        "shards once the ConfigMap exists",
        WAIT,
        || operator.log(),
        || Some(assignment(&cp, NS, "watch")).filter(|a| a.len() == 2),
    );
    assert_eq!(a.values().flatten().count(), 4);

    // Editing the list re-shards: adding a ticker moves no other ticker.
    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watchlist", "namespace": "default"},
                       "data": {"tickers": "AAPL\nMSFT\nNVDA\n# more\nBRK.B\nTSLA\n"}}),
    );
    let b = eventually(
        "TSLA assigned",
        WAIT,
        || operator.log(),
        || Some(assignment(&cp, NS, "watch")).filter(|b| b.values().flatten().any(|t| t == "TSLA")),
    );
    for (shard, list) in &a {
        assert!(
            list.is_subset(&b[shard]),
            "shard {shard} kept its tickers: {a:?} -> {b:?}"
        );
    }
    let ok = eventually(
        "Degraded cleared",
        WAIT,
        || operator.log(),
        || {
            let qs = get_json(&cp, &["get", "qs/watch", "-n", NS])?;
            qs["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Degraded" && c["status"] == "False")
                .cloned()
        },
    );
    assert_ne!(ok["reason"], "MissingConfigMap");
}

/// A worker that cannot start (here: a wrong PostgreSQL password) exits 1 with one line in its
/// termination message; kubelet keeps it in the pod's `lastState.terminated.message`. No
/// kubelet runs here, so the test creates the shard's pod and writes that status itself.
#[test]
fn a_worker_that_exits_with_a_sink_failure_degrades_the_stream_naming_the_sink_with_an_event() {
    let cp = control_plane_with_crd();
    let operator = Operator::admin(&cp);
    let mut manifest = stream("vault", &["AAPL", "MSFT"], 1);
    manifest["spec"]["sinks"] =
        json!({"postgres": {"dsnSecretRef": {"name": "market-db", "key": "dsn"}}});
    // A Secret the admin's default policy lets streams use.
    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "market-db", "namespace": NS,
                             "labels": {"quotes.opa.io/stream-access": "true"}},
                "stringData": {"dsn": "postgres://feeder:wrong@db:5432/market"}}),
    );
    apply(&cp, &manifest);
    let deployment = eventually(
        "deployment vault-shard-0",
        WAIT,
        || operator.log(),
        || get_json(&cp, &["get", "deployment", "vault-shard-0", "-n", NS]),
    );
    // The pod template asks for the termination message where the worker writes it.
    let worker = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(worker["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert_eq!(worker["terminationMessagePath"], "/dev/termination-log");
    assert!(
        worker["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "QUOTESTREAM_TERMINATION_LOG"
                && e["value"] == "/dev/termination-log"),
        "{worker}"
    );

    let line = "sink postgres failed [spec.sinks.postgres.dsnSecretRef]: cannot connect to PostgreSQL feeder@db:5432/market: 28P01 password authentication failed for user \"feeder\"; check the user and password in the Secret of spec.sinks.postgres.dsnSecretRef and the server's pg_hba.conf";
    apply(
        &cp,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "vault-shard-0-5d8f7", "namespace": NS,
                         "labels": {"quotes.opa.io/stream": "vault", "quotes.opa.io/shard": "0"}},
            "spec": {"containers": [{"name": "worker", "image": "registry.local/quotestream-worker:test"}]},
        }),
    );
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "worker", "ready": false, "restartCount": 2,
        "image": "registry.local/quotestream-worker:test", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": line,
                                     "startedAt": "2026-12-06T13:00:00Z", "finishedAt": "2026-12-06T13:00:01Z"}},
    }]}});
    kubectl(
        &cp,
        &[
            "patch",
            "pod",
            "vault-shard-0-5d8f7",
            "-n",
            NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );

    let degraded =
        support::cluster::condition(&cp, NS, "vault", "Degraded", "True", || operator.log());
    assert_eq!(degraded["reason"], "SinkFailed", "{degraded}");
    let message = degraded["message"].as_str().unwrap();
    for part in [
        "shard 0",
        "sink postgres",
        "spec.sinks.postgres.dsnSecretRef",
        "28P01 password authentication failed",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let event = eventually(
        "a SinkFailed Event about qs/vault",
        WAIT,
        || operator.log(),
        || {
            support::cluster::events(&cp, NS, "vault")
                .into_iter()
                .find(|e| e["reason"] == "SinkFailed")
        },
    );
    assert_eq!(event["type"], "Warning", "{event}");
    assert!(
        event["message"]
            .as_str()
            .or(event["note"].as_str())
            .is_some_and(|n| n.contains("spec.sinks.postgres.dsnSecretRef")),
        "{event}"
    );
}

/// The sum of every series of the counter `name` on the operator's /metrics.
fn counter_sum(operator: &Operator, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    operator
        .metrics()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// name → resourceVersion of the stream's shard ConfigMaps and Deployments.
fn resource_versions(cp: &ControlPlane, stream: &str) -> BTreeMap<String, String> {
    let selector = format!("quotes.opa.io/stream={stream}");
    let list = get_json(
        cp,
        &["get", "configmaps,deployments", "-n", NS, "-l", &selector],
    )
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap();
            let name = o["metadata"]["name"].as_str().unwrap();
            let version = o["metadata"]["resourceVersion"].as_str().unwrap();
            (format!("{kind}/{name}"), version.to_owned())
        })
        .collect()
}

#[test]
fn a_resync_of_an_unchanged_stream_writes_nothing_and_a_hand_edit_is_reverted() {
    let cp = control_plane_with_crd();
    let operator = Operator::admin(&cp);
    let steady = Subject {
        cp: &cp,
        operator: &operator,
        name: "steady",
    };
    steady.create(4);
    // Ready is the status of the last write the stream needs; everything after is a resync.
    let writes = counter_sum(&operator, "quotestream_api_writes_total");
    assert!(
        writes >= 9.0,
        "4 ConfigMaps, 4 Deployments, a status: {writes}"
    );
    let skipped = counter_sum(&operator, "quotestream_unchanged_skipped_total");
    let versions = resource_versions(&cp, "steady");
    assert_eq!(versions.len(), 8, "{versions:?}");

    // A change of the stream that is no change of its spec: a reconcile, and nothing to do.
    let reconciled = steady.reconciles();
    let annotated = kubectl(
        &cp,
        &[
            "annotate",
            "qs/steady",
            "-n",
            NS,
            "example.com/resync=1",
            "-o",
            "json",
        ],
        None,
    );
    eventually(
        "a reconcile after the annotation",
        WAIT,
        || steady.context(),
        || (steady.reconciles() > reconciled).then_some(()),
    );
    assert_eq!(
        counter_sum(&operator, "quotestream_api_writes_total"),
        writes,
        "a no-op resync sends no write\n{}",
        operator.metrics().unwrap_or_default()
    );
    assert!(
        counter_sum(&operator, "quotestream_unchanged_skipped_total") >= skipped + 9.0,
        "each shard object and the status was compared and skipped"
    );
    assert_eq!(resource_versions(&cp, "steady"), versions);
    let qs = get_json(&cp, &["get", "qs/steady", "-n", NS]).unwrap();
    assert_eq!(
        qs["metadata"]["resourceVersion"], annotated["metadata"]["resourceVersion"],
        "the status was not written either"
    );

    // A hand edit of a field the operator owns is a change: it is put back.
    let edit = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "worker", "image": "registry.local/someone-else:latest"}]}}}});
    kubectl(
        &cp,
        &[
            "patch",
            "deployment",
            "steady-shard-2",
            "-n",
            NS,
            "-p",
            &edit.to_string(),
        ],
        None,
    );
    eventually(
        "the hand-edited image reverted",
        WAIT,
        || steady.context(),
        || {
            let d = get_json(&cp, &["get", "deployment", "steady-shard-2", "-n", NS])?;
            let image = &d["spec"]["template"]["spec"]["containers"][0]["image"];
            (image == support::operator::TEST_WORKER_IMAGE).then_some(())
        },
    );
    let changed: Vec<String> = resource_versions(&cp, "steady")
        .into_iter()
        .filter(|(name, version)| versions[name] != *version)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        changed,
        ["Deployment/steady-shard-2"],
        "only the edited one is written"
    );
}
