//! What one namespace cannot do to the operator, against a real kube-apiserver: objects anyone
//! with write access to a namespace can make — a ConfigMap with the stream's labels and a huge
//! shard index, a ticker list with a 600 KB line, a list too long for one shard ConfigMap — must
//! neither crash the operator (every replica would crash the same way) nor leave it in an API
//! error loop: the stream goes Degraded with a bounded message that names the fix, or the object
//! is ignored with a warning Event naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use quotestream_testkit::ControlPlane;
use serde_json::{Value, json};
use support::cluster::{
    WAIT, apply, assignment, condition, control_plane_with_crd, events, eventually, get_json,
    kubectl,
};
use support::operator::{Operator, metric};

const NS: &str = "default";
/// The operator's bound on condition messages and Event notes (`MAX_MESSAGE_BYTES`).
const MAX_MESSAGE: usize = 1024;

fn stream_from_list(name: &str, list: &str, shards: u32) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"tickersFrom": {"configMapKeyRef": {"name": list, "key": "tickers"}}, "shards": shards,
                 "interval": "1s", "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
    })
}

fn ticker_list(cp: &ControlPlane, name: &str, text: &str) {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": NS}, "data": {"tickers": text}});
    // Server-side apply would keep the body in managedFields too; create is enough here.
    kubectl(cp, &["create", "-f", "-"], Some(&cm.to_string()));
}

/// Replaces the list's text: the edit a user makes, which must reach the operator's watch.
fn edit_ticker_list(cp: &ControlPlane, name: &str, text: &str) {
    let patch = json!({"data": {"tickers": text}}).to_string();
    let args = [
        "patch",
        "configmap",
        name,
        "-n",
        NS,
        "--type=merge",
        "-p",
        &patch,
    ];
    kubectl(cp, &args, None);
}

fn api_errors(op: &Operator) -> f64 {
    op.metrics()
        .and_then(|m| {
            metric(
                &m,
                r#"quotestream_reconcile_errors_total{reason="ApiError"}"#,
            )
        })
        .unwrap_or(0.0)
}

#[test]
fn a_configmap_with_a_huge_shard_label_is_ignored_not_allocated() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    ticker_list(&cp, "list", "AAPL\nMSFT\nNVDA\n");
    apply(&cp, &stream_from_list("evil", "list", 1));
    eventually(
        "shard evil-shard-0",
        WAIT,
        || operator.log(),
        || Some(assignment(&cp, NS, "evil")).filter(|a| a.len() == 1),
    );
    // Its worker.json, made valid for shard 4 000 000 000 of the same stream: before the bound,
    // the operator allocated one list per index up to it (96 GB) and aborted, on every replica.
    let shard0 = get_json(&cp, &["get", "configmap", "evil-shard-0", "-n", NS]).unwrap();
    let mut config: Value =
        serde_json::from_str(shard0["data"]["worker.json"].as_str().unwrap()).unwrap();
    config["shard"] = json!(4_000_000_000u32);
    config["tickers"] = json!(["AAPL"]);
    // Anyone who may create ConfigMaps in the namespace can also make one look controlled by
    // the stream (its uid is readable): the bound must hold for the stream's own ConfigMaps too.
    let stream = get_json(&cp, &["get", "quotestream", "evil", "-n", NS]).unwrap();
    let planted = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "planted", "namespace": NS,
                     "labels": {"quotes.opa.io/stream": "evil", "quotes.opa.io/shard": "4000000000"},
                     "ownerReferences": [{"apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
                                          "name": "evil", "uid": stream["metadata"]["uid"],
                                          "controller": true}]},
        "data": {"worker.json": config.to_string()}});
    kubectl(&cp, &["create", "-f", "-"], Some(&planted.to_string()));
    // Editing the ticker list makes the operator reconcile (and read the shard ConfigMaps).
    edit_ticker_list(&cp, "list", "AAPL\nMSFT\nNVDA\nTSLA\n");
    let lists = eventually(
        "TSLA assigned to evil-shard-0",
        WAIT,
        || operator.log(),
        || {
            Some(assignment(&cp, NS, "evil"))
                .filter(|a| a.get(&0).is_some_and(|l| l.contains("TSLA")))
        },
    );
    operator.assert_running();
    assert_eq!(
        lists[&4_000_000_000].len(),
        1,
        "the planted ConfigMap is still there: {lists:?}"
    );
    let warning = eventually(
        "a warning Event naming the planted ConfigMap",
        WAIT,
        || format!("{}\n{:?}", operator.log(), events(&cp, NS, "evil")),
        || {
            events(&cp, NS, "evil").into_iter().find(|e| {
                e["type"] == "Warning"
                    && e["reason"] == "IgnoredConfigMap"
                    && e["message"].as_str().is_some_and(|m| m.contains("planted"))
            })
        },
    );
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("shard index below 1024"),
        "{warning}"
    );
    operator.assert_running();
}

#[test]
fn a_600_kb_bad_line_gives_degraded_with_a_truncated_message() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    let line = "X".repeat(600 * 1024);
    ticker_list(&cp, "big-line", &format!("AAPL\n{line}\nMSFT\n"));
    apply(&cp, &stream_from_list("longline", "big-line", 1));

    let degraded = condition(&cp, NS, "longline", "Degraded", "True", || operator.log());
    assert_eq!(degraded["reason"], "TickerListInvalid", "{degraded}");
    let message = degraded["message"].as_str().unwrap();
    assert!(message.len() <= MAX_MESSAGE, "{} bytes", message.len());
    assert!(message.contains("truncated"), "{message}");
    assert!(
        message.contains("big-line"),
        "names the ConfigMap: {message}"
    );
    let warning = eventually(
        "the Degraded warning Event",
        WAIT,
        || operator.log(),
        || {
            events(&cp, NS, "longline")
                .into_iter()
                .find(|e| e["type"] == "Warning" && e["reason"] == "TickerListInvalid")
        },
    );
    assert!(warning["message"].as_str().unwrap().len() <= MAX_MESSAGE);
    assert_eq!(
        api_errors(&operator),
        0.0,
        "no API error loop:\n{}",
        operator.log()
    );
    assert!(
        !operator.full_log().contains("event not recorded"),
        "{}",
        operator.log()
    );
    operator.assert_running();
}

#[test]
fn a_shard_too_large_for_a_configmap_is_refused_with_the_fix() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    // 100 000 four-letter tickers: 500 KB as a list, about 1.2 MB as one shard's worker.json.
    let letters = |mut n: usize| {
        let mut s = String::new();
        for _ in 0..4 {
            s.push(char::from(b'A' + u8::try_from(n % 26).unwrap()));
            n /= 26;
        }
        s
    };
    let list: String = (0..100_000).map(|i| letters(i) + "\n").collect();
    ticker_list(&cp, "huge", &list);
    apply(&cp, &stream_from_list("huge", "huge", 1));

    let degraded = condition(&cp, NS, "huge", "Degraded", "True", || operator.log());
    assert_eq!(degraded["reason"], "ShardConfigTooLarge", "{degraded}");
    let message = degraded["message"].as_str().unwrap();
    assert!(message.contains("raise spec.shards"), "{message}");
    assert!(message.contains("1 MiB"), "{message}");
    assert!(assignment(&cp, NS, "huge").is_empty());
    assert_eq!(
        api_errors(&operator),
        0.0,
        "no API error loop:\n{}",
        operator.log()
    );

    // The fix the message names works.
    kubectl(&cp, &["scale", "qs/huge", "-n", NS, "--replicas=2"], None);
    let lists = eventually(
        "two shards",
        WAIT,
        || operator.log(),
        || Some(assignment(&cp, NS, "huge")).filter(|a| a.len() == 2),
    );
    assert_eq!(lists.values().map(|l| l.len()).sum::<usize>(), 100_000);
    condition(&cp, NS, "huge", "Degraded", "False", || operator.log());
    operator.assert_running();
}

/// A ConfigMap and a Deployment that carry a stream's labels and a shard index beyond its shard
/// count but that the stream does not own: the operator prunes only its own shards, so they
/// survive every reconcile and the stream's deletion.
#[test]
fn look_alikes_not_owned_by_the_stream_are_never_deleted() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    let labels = json!({"quotes.opa.io/stream": "own", "quotes.opa.io/shard": "3"});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "look-alike", "namespace": NS, "labels": labels},
        "data": {"note": "someone else's"}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "look-alike", "namespace": NS, "labels": labels},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "look-alike"}},
                 "template": {"metadata": {"labels": {"app": "look-alike"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.local/x:1"}]}}}});
    kubectl(&cp, &["create", "-f", "-"], Some(&cm.to_string()));
    kubectl(&cp, &["create", "-f", "-"], Some(&deployment.to_string()));
    ticker_list(&cp, "own-list", "AAPL\nMSFT\n");
    apply(&cp, &stream_from_list("own", "own-list", 1));

    let reconciles = || {
        operator
            .metrics()
            .and_then(|m| metric(&m, r#"quotestream_reconciles_total{result="ok""#))
            .unwrap_or(0.0)
    };
    eventually(
        "shard own-shard-0",
        WAIT,
        || operator.log(),
        || get_json(&cp, &["get", "configmap", "own-shard-0", "-n", NS]),
    );
    // More reconciles: each would prune shard 3 if it took the look-alikes for its own.
    support::cluster::mark_ready(&cp, NS, "own-shard-0");
    let after = reconciles();
    edit_ticker_list(&cp, "own-list", "AAPL\nMSFT\nNVDA\n");
    eventually(
        "two more reconciles",
        WAIT,
        || operator.log(),
        || (reconciles() >= after + 2.0).then_some(()),
    );
    let survives = |what: &str| {
        assert!(
            get_json(&cp, &["get", what, "look-alike", "-n", NS]).is_some(),
            "{what}/look-alike survives:\n{}",
            operator.log()
        );
    };
    survives("configmap");
    survives("deployment");

    kubectl(&cp, &["delete", "qs/own", "-n", NS], None);
    eventually(
        "the stream's own shard garbage-collected",
        WAIT,
        || operator.log(),
        || {
            get_json(&cp, &["get", "configmap", "own-shard-0", "-n", NS])
                .is_none()
                .then_some(())
        },
    );
    survives("configmap");
    survives("deployment");
    operator.assert_running();
}

/// Peak resident memory of a process in MiB (`VmHWM` of /proc/PID/status).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// Other people's ConfigMaps are watched as metadata only: 48 MB of ConfigMap data in the
/// namespace does not pass through the operator (before, every ConfigMap was listed in full).
#[test]
fn other_configmaps_are_watched_as_metadata_only() {
    let cp = control_plane_with_crd();
    let blob = "x".repeat(1_000_000);
    for i in 0..48 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("bulk-{i}"), "namespace": NS}, "data": {"blob": blob}});
        kubectl(&cp, &["create", "-f", "-"], Some(&cm.to_string()));
    }
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    ticker_list(&cp, "meta-list", "AAPL\nMSFT\n");
    apply(&cp, &stream_from_list("meta", "meta-list", 1));
    eventually(
        "shard meta-shard-0",
        WAIT,
        || operator.log(),
        || get_json(&cp, &["get", "configmap", "meta-shard-0", "-n", NS]),
    );
    // A list edit reaches the operator through the ConfigMap watch: it has listed them all.
    edit_ticker_list(&cp, "meta-list", "AAPL\nMSFT\nNVDA\n");
    eventually(
        "NVDA assigned",
        WAIT,
        || operator.log(),
        || {
            Some(assignment(&cp, NS, "meta"))
                .filter(|a| a.get(&0).is_some_and(|l| l.contains("NVDA")))
        },
    );
    let peak = peak_rss_mib(operator.pid());
    eprintln!("operator peak RSS: {peak} MiB");
    assert!(
        peak < 64,
        "the operator peaked at {peak} MiB: it read the 48 MB of other ConfigMaps' data"
    );
    operator.assert_running();
}

/// A ConfigMap with the stream's labels and a real shard index, not owned by the stream,
/// claiming every ticker at a newer epoch: it is not the stream's state, so it neither moves
/// tickers nor shadows the real shard (before, it sorted first and the real shard-0 was skipped).
#[test]
fn a_look_alike_shard_configmap_does_not_steer_the_assignment() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    ticker_list(&cp, "steer-list", "AAPL\nMSFT\nNVDA\nTSLA\n");
    apply(&cp, &stream_from_list("steer", "steer-list", 2));
    let shard = |i: u32| -> Option<Vec<String>> {
        let cm = get_json(
            &cp,
            &["get", "configmap", &format!("steer-shard-{i}"), "-n", NS],
        )?;
        let config: Value = serde_json::from_str(cm["data"]["worker.json"].as_str()?).ok()?;
        serde_json::from_value(config["tickers"].clone()).ok()
    };
    let before = eventually(
        "two shards",
        WAIT,
        || operator.log(),
        || Some((shard(0)?, shard(1)?)),
    );
    let shard0 = get_json(&cp, &["get", "configmap", "steer-shard-0", "-n", NS]).unwrap();
    let mut config: Value =
        serde_json::from_str(shard0["data"]["worker.json"].as_str().unwrap()).unwrap();
    config["tickers"] = json!(["AAPL", "MSFT", "NVDA", "TSLA"]);
    config["epoch"] = json!(99);
    let fake = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a-look-alike", "namespace": NS,
                     "labels": {"quotes.opa.io/stream": "steer", "quotes.opa.io/shard": "0"}},
        "data": {"worker.json": config.to_string()}});
    kubectl(&cp, &["create", "-f", "-"], Some(&fake.to_string()));
    edit_ticker_list(&cp, "steer-list", "AAPL\nMSFT\nNVDA\nTSLA\nORCL\n");
    let after = eventually(
        "ORCL assigned",
        WAIT,
        || operator.log(),
        || {
            let (a, b) = (shard(0)?, shard(1)?);
            (a.iter().chain(&b).any(|t| t == "ORCL")).then_some((a, b))
        },
    );
    for t in &before.1 {
        assert!(
            after.1.contains(t),
            "shard 1 kept {t}: {before:?} -> {after:?}\n{}",
            operator.log()
        );
    }
    eventually(
        "a warning Event naming the look-alike",
        WAIT,
        || operator.log(),
        || {
            events(&cp, NS, "steer").into_iter().find(|e| {
                e["reason"] == "IgnoredConfigMap"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("a-look-alike"))
            })
        },
    );
    operator.assert_running();
}
