//! The operator against a real kube-apiserver (with the garbage collector): a QuoteStream
//! becomes shard ConfigMaps and Deployments, scaling moves only what it must and does not roll
//! untouched shards, a missing ticker ConfigMap degrades the stream, and deleting the stream
//! removes everything it created.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quotestream_testkit::{ControlPlane, free_port};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

struct Operator(Child);

impl Operator {
    fn start(cp: &ControlPlane) -> Self {
        let port = free_port().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quotestream-operator"))
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--worker-image",
                "registry.local/quotestream-worker:test",
            ])
            .env("KUBECONFIG", cp.kubeconfig("admin"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_json(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-n", "default", "-o", "json"]);
    let out = cp.kubectl("admin", &all).ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Polls until `check` returns Some, or fails with `what`.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn apply(cp: &ControlPlane, obj: &Value) {
    let out = cp
        .kubectl_with_input(
            "admin",
            &["apply", "--server-side", "-f", "-"],
            Some(&obj.to_string()),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// shard index -> tickers, from the shard ConfigMaps.
fn assignment(cp: &ControlPlane, stream: &str) -> BTreeMap<u32, BTreeSet<String>> {
    let list = get_json(
        cp,
        &[
            "get",
            "configmaps",
            "-l",
            &format!("quotes.opa.io/stream={stream}"),
        ],
    )
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cm| {
            let shard: u32 = cm["metadata"]["labels"]["quotes.opa.io/shard"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let config: Value =
                serde_json::from_str(cm["data"]["worker.json"].as_str().unwrap()).unwrap();
            let tickers = config["tickers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect();
            (shard, tickers)
        })
        .collect()
}

fn config_hashes(cp: &ControlPlane, stream: &str) -> BTreeMap<String, String> {
    let list = get_json(
        cp,
        &[
            "get",
            "deployments",
            "-l",
            &format!("quotes.opa.io/stream={stream}"),
        ],
    )
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap().to_owned();
            let hash =
                d["spec"]["template"]["metadata"]["annotations"]["quotes.opa.io/config-hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            (name, hash)
        })
        .collect()
}

/// Plays kubelet for one Deployment: reports its replica ready (there is no kubelet here).
fn mark_ready(cp: &ControlPlane, deployment: &str) {
    let d = eventually("the Deployment", || {
        get_json(cp, &["get", "deployment", deployment])
    });
    let generation = d["metadata"]["generation"].as_i64().unwrap();
    let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
                                   "readyReplicas": 1, "availableReplicas": 1}});
    let patch = status.to_string();
    let args = [
        "patch",
        "deployment",
        deployment,
        "-n",
        "default",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ];
    let out = cp.kubectl("admin", &args).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stream(name: &str, tickers: &[&str], shards: u32) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"tickers": tickers, "shards": shards, "interval": "1s", "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
    })
}

fn cluster() -> ControlPlane {
    let cp = ControlPlane::start().unwrap();
    cp.install_crd(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/quotestream.yaml"))
        .unwrap();
    cp
}

#[test]
fn a_stream_becomes_shards_that_scale_minimally_and_are_garbage_collected() {
    let cp = cluster();
    let _operator = Operator::start(&cp);
    let tickers = [
        "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "BRK.B", "JPM", "V",
    ];
    apply(&cp, &stream("demo", &tickers, 2));

    let two = eventually("two shard ConfigMaps", || {
        Some(assignment(&cp, "demo")).filter(|a| a.len() == 2)
    });
    let all: BTreeSet<String> = two.values().flatten().cloned().collect();
    assert_eq!(
        all.len(),
        tickers.len(),
        "the shards cover every ticker exactly once: {two:?}"
    );
    assert_eq!(
        two.values().map(BTreeSet::len).sum::<usize>(),
        tickers.len()
    );
    let hashes_before = eventually("two shard Deployments", || {
        Some(config_hashes(&cp, "demo")).filter(|h| h.len() == 2)
    });
    assert!(
        hashes_before.contains_key("demo-shard-0") && hashes_before.contains_key("demo-shard-1")
    );

    let status = eventually("status", || {
        let qs = get_json(&cp, &["get", "qs/demo"])?;
        (qs["status"]["shards"].as_array().map(Vec::len) == Some(2)).then_some(qs["status"].clone())
    });
    assert_eq!(status["tickers"], 9);
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

    // Scale up through the scale subresource: ⌊9/3⌋ = 3 tickers move, all into the new shard,
    // and the two existing shards are not rolled (their pod template is unchanged).
    let out = cp
        .kubectl(
            "admin",
            &["scale", "qs/demo", "-n", "default", "--replicas=3"],
        )
        .unwrap();
    assert!(out.status.success());
    let starting = eventually("the new shard's list", || {
        Some(assignment(&cp, "demo")).filter(|a| a.len() == 3)
    });
    assert_eq!(
        starting[&2].len(),
        3,
        "the new shard gets its tickers first"
    );
    for t in &starting[&2] {
        assert!(
            starting[&0].contains(t) || starting[&1].contains(t),
            "until the new shard is ready its tickers stay with their old owners too (make before break): {starting:?}"
        );
    }
    mark_ready(&cp, "demo-shard-2");
    let three = eventually("the old shards to let go", || {
        Some(assignment(&cp, "demo")).filter(|a| {
            a.len() == 3 && a.values().map(BTreeSet::len).sum::<usize>() == tickers.len()
        })
    });
    let moved: usize = tickers
        .iter()
        .filter(|t| {
            let before = two.iter().find(|(_, s)| s.contains(**t)).map(|(i, _)| *i);
            let after = three.iter().find(|(_, s)| s.contains(**t)).map(|(i, _)| *i);
            before != after
        })
        .count();
    assert_eq!(
        moved, 3,
        "exactly ⌊T/(N+1)⌋ tickers move: {two:?} -> {three:?}"
    );
    assert_eq!(three[&2].len(), 3, "all of them into the new shard");
    let hashes_after = eventually("three Deployments", || {
        Some(config_hashes(&cp, "demo")).filter(|h| h.len() == 3)
    });
    for name in ["demo-shard-0", "demo-shard-1"] {
        assert_eq!(
            hashes_before[name], hashes_after[name],
            "{name} is not rolled by a reshard"
        );
    }

    // Scale down: the last shard goes, its tickers join the others.
    let out = cp
        .kubectl(
            "admin",
            &["scale", "qs/demo", "-n", "default", "--replicas=2"],
        )
        .unwrap();
    assert!(out.status.success());
    eventually("shard 2 removed", || {
        Some(config_hashes(&cp, "demo")).filter(|h| h.len() == 2)
    });
    let back = eventually("two shards again", || {
        Some(assignment(&cp, "demo")).filter(|a| a.len() == 2)
    });
    assert_eq!(back.values().flatten().count(), tickers.len());

    // Deleting the stream deletes what it owns (ownerReferences + the garbage collector).
    let out = cp
        .kubectl("admin", &["delete", "qs/demo", "-n", "default"])
        .unwrap();
    assert!(out.status.success());
    eventually("shards garbage-collected", || {
        (config_hashes(&cp, "demo").is_empty() && assignment(&cp, "demo").is_empty()).then_some(())
    });
}

#[test]
fn a_missing_ticker_configmap_degrades_the_stream_until_it_appears() {
    let cp = cluster();
    let _operator = Operator::start(&cp);
    apply(
        &cp,
        &json!({
            "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
            "metadata": {"name": "watch", "namespace": "default"},
            "spec": {"tickersFrom": {"configMapKeyRef": {"name": "watchlist", "key": "tickers"}}, "shards": 2,
                     "source": {"type": "synthetic"}, "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
        }),
    );
    let degraded = eventually("Degraded condition", || {
        let qs = get_json(&cp, &["get", "qs/watch"])?;
        qs["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Degraded" && c["status"] == "True")
            .cloned()
    });
    assert_eq!(degraded["reason"], "MissingConfigMap");
    assert!(
        degraded["message"].as_str().unwrap().contains("watchlist"),
        "{degraded}"
    );
    assert!(
        config_hashes(&cp, "watch").is_empty(),
        "nothing is created for an unresolvable stream"
    );

    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watchlist", "namespace": "default"},
                       "data": {"tickers": "AAPL\nMSFT\nNVDA\n# more\nBRK.B\n"}}),
    );
    let a = eventually("shards once the ConfigMap exists", || {
        Some(assignment(&cp, "watch")).filter(|a| a.len() == 2)
    });
    assert_eq!(a.values().flatten().count(), 4);

    // Editing the list re-shards: adding a ticker moves no other ticker.
    apply(
        &cp,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watchlist", "namespace": "default"},
                       "data": {"tickers": "AAPL\nMSFT\nNVDA\n# more\nBRK.B\nTSLA\n"}}),
    );
    let b = eventually("TSLA assigned", || {
        Some(assignment(&cp, "watch")).filter(|b| b.values().flatten().any(|t| t == "TSLA"))
    });
    for (shard, list) in &a {
        assert!(
            list.is_subset(&b[shard]),
            "shard {shard} kept its tickers: {a:?} -> {b:?}"
        );
    }
    let ok = eventually("Degraded cleared", || {
        let qs = get_json(&cp, &["get", "qs/watch"])?;
        qs["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Degraded" && c["status"] == "False")
            .cloned()
    });
    assert_ne!(ok["reason"], "MissingConfigMap");
}
