//! The test's side of the API server: kubectl as admin (JSON in, JSON out), bounded polling,
//! and the views of a stream's shard objects the tests compare (ticker lists, pod templates).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use quotestream_testkit::ControlPlane;
use serde_json::{Value, json};

/// The usual bound of a wait for the operator to reach a state (they take well under 5 s).
pub const WAIT: Duration = Duration::from_secs(60);
/// Pod template annotation with the shard's configuration hash (its change rolls the pods).
pub const CONFIG_HASH: &str = "quotes.opa.io/config-hash";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A control plane with the QuoteStream CRD installed (Established).
pub fn control_plane_with_crd() -> ControlPlane {
    let cp = ControlPlane::start().unwrap();
    cp.install_crd(&repo().join("crds/quotestream.yaml"))
        .unwrap();
    cp
}

/// Polls `check` every 50 ms until it returns Some, or fails naming `what`, with `context()`
/// (logs, observed state) in the message.
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stream `stream`'s condition `type_` once it has `status`; `context` (the operator's log)
/// goes into the failure message.
pub fn condition(
    cp: &ControlPlane,
    ns: &str,
    stream: &str,
    type_: &str,
    status: &str,
    context: impl Fn() -> String,
) -> Value {
    eventually(
        &format!("qs/{stream} {type_}={status}"),
        WAIT,
        context,
        || {
            let qs = get_json(cp, &["get", &format!("qs/{stream}"), "-n", ns])?;
            qs["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == type_ && c["status"] == status)
                .cloned()
        },
    )
}

/// The Events recorded about the object named `name` in `ns`.
pub fn events(cp: &ControlPlane, ns: &str, name: &str) -> Vec<Value> {
    let selector = format!("involvedObject.name={name}");
    get_json(
        cp,
        &["get", "events", "-n", ns, "--field-selector", &selector],
    )
    .and_then(|l| l["items"].as_array().cloned())
    .unwrap_or_default()
}

/// A command's stdout and stderr, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", text(out));
}

/// `kubectl ARGS -o json` as admin; None when kubectl fails (e.g. not found).
pub fn get_json(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = cp.kubectl("admin", &all).ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// `kubectl ARGS` as admin with `input` on stdin; fails the test when kubectl does. Returns
/// its output as JSON (Null when it printed none).
pub fn kubectl(cp: &ControlPlane, args: &[&str], input: Option<&str>) -> Value {
    let out = cp.kubectl_with_input("admin", args, input).unwrap();
    ok(&out, &format!("kubectl {args:?}"));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Server-side apply of one object as admin.
pub fn apply(cp: &ControlPlane, obj: &Value) {
    kubectl(
        cp,
        &["apply", "--server-side", "-f", "-"],
        Some(&obj.to_string()),
    );
}

/// The label selector of a stream's shard objects.
pub fn selector(stream: &str) -> String {
    format!("quotes.opa.io/stream={stream}")
}

/// shard index → tickers, from the shard ConfigMaps (what each worker is told to stream).
pub fn assignment(cp: &ControlPlane, ns: &str, stream: &str) -> BTreeMap<u32, BTreeSet<String>> {
    let list = get_json(
        cp,
        &["get", "configmaps", "-n", ns, "-l", &selector(stream)],
    )
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cm| {
            let shard = cm["metadata"]["labels"]["quotes.opa.io/shard"]
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

/// Deployment name → its pod template (`spec.template`), for the shards of `stream`.
pub fn pod_templates(cp: &ControlPlane, ns: &str, stream: &str) -> BTreeMap<String, Value> {
    let list = get_json(
        cp,
        &["get", "deployments", "-n", ns, "-l", &selector(stream)],
    )
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap().to_owned();
            (name, d["spec"]["template"].clone())
        })
        .collect()
}

/// Deployment name → the configuration hash on its pod template.
pub fn config_hashes(cp: &ControlPlane, ns: &str, stream: &str) -> BTreeMap<String, String> {
    pod_templates(cp, ns, stream)
        .into_iter()
        .map(|(name, template)| {
            let hash = template["metadata"]["annotations"][CONFIG_HASH]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (name, hash)
        })
        .collect()
}

/// Plays kubelet and Deployment controller for one Deployment (a control plane without nodes):
/// reports its replica ready for its current generation.
pub fn mark_ready(cp: &ControlPlane, ns: &str, deployment: &str) {
    let d = eventually(
        &format!("deployment {deployment}"),
        WAIT,
        String::new,
        || get_json(cp, &["get", "deployment", deployment, "-n", ns]),
    );
    let generation = d["metadata"]["generation"].as_i64().unwrap();
    let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
                                   "readyReplicas": 1, "availableReplicas": 1}});
    kubectl(
        cp,
        &[
            "patch",
            "deployment",
            deployment,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
}

/// The stream's status once it reports `shards` ready shards and Ready=True for its current
/// generation.
pub fn wait_stream_ready(
    cp: &ControlPlane,
    ns: &str,
    stream: &str,
    shards: u64,
    context: impl Fn() -> String,
) -> Value {
    eventually(
        &format!("qs/{stream}: {shards} ready shards, Ready=True"),
        WAIT,
        context,
        || {
            let qs = get_json(cp, &["get", &format!("qs/{stream}"), "-n", ns])?;
            let status = &qs["status"];
            let ready = status["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let current = status["observedGeneration"] == qs["metadata"]["generation"];
            (ready && current && status["readyShards"] == shards).then(|| status.clone())
        },
    )
}
