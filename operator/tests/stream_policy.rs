//! The cluster admin's policy for what a QuoteStream author may make the operator do, against
//! a real kube-apiserver (docs/security.md): a stream that names a worker image outside the
//! image allow-list, or a source URL outside its source type's host list, is Degraded with a
//! message naming the field, the value and what is allowed, gets a warning Event, and no
//! Deployment is created or updated from it; the worker gets the host list to enforce itself.
//! A stream may reference only Secrets with the admin's label (read as metadata only).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use quotestream_testkit::ControlPlane;
use serde_json::{Value, json};
use support::cluster::{
    WAIT, apply, condition, control_plane_with_crd, events, eventually, get_json, selector,
};
use support::operator::{Operator, TEST_WORKER_IMAGE};

const NS: &str = "default";
/// The repository of [`TEST_WORKER_IMAGE`]: the operator's default image allow-list.
const TEST_WORKER_REPOSITORY: &str = "registry.local/quotestream-worker";
const FOREIGN_IMAGE: &str = "docker.io/library/busybox:latest";

fn stream(name: &str, worker: Value) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"tickers": ["AAPL", "MSFT"], "shards": 1, "interval": "1s",
                 "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}},
                 "worker": worker}
    })
}

/// The operator as admin with the tests' worker image and the admin's `flags`, ready.
fn admin_operator(cp: &ControlPlane, flags: &[&str]) -> Operator {
    let mut args = vec![
        "run".to_owned(),
        "--worker-image".into(),
        TEST_WORKER_IMAGE.into(),
    ];
    args.extend(flags.iter().map(|f| (*f).to_owned()));
    let mut operator = Operator::start(cp, "admin", "quotestream-operator-test", &args);
    operator.wait_ready();
    operator
}

/// The images of the stream's shard Deployments.
fn deployment_images(cp: &ControlPlane, stream: &str) -> Vec<String> {
    get_json(
        cp,
        &["get", "deployments", "-n", NS, "-l", &selector(stream)],
    )
    .and_then(|l| l["items"].as_array().cloned())
    .unwrap_or_default()
    .iter()
    .map(|d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
    .collect()
}

/// A warning Event with `reason` about `stream`.
fn warning(cp: &ControlPlane, op: &Operator, stream: &str, reason: &str) -> Value {
    eventually(
        &format!("a {reason} Event on qs/{stream}"),
        WAIT,
        || format!("{}\n{:?}", op.log(), events(cp, NS, stream)),
        || {
            events(cp, NS, stream)
                .into_iter()
                .find(|e| e["reason"] == reason && e["type"] == "Warning")
        },
    )
}

/// Degraded with `reason` for the stream's current generation.
fn degraded(cp: &ControlPlane, op: &Operator, stream: &str, reason: &str) -> Value {
    let generation = get_json(cp, &["get", &format!("qs/{stream}"), "-n", NS]).unwrap()["metadata"]
        ["generation"]
        .clone();
    eventually(
        &format!("qs/{stream} Degraded/{reason} at generation {generation}"),
        WAIT,
        || op.log(),
        || {
            let c = condition(cp, NS, stream, "Degraded", "True", || op.log());
            (c["reason"] == reason && c["observedGeneration"] == generation).then_some(c)
        },
    )
}

#[test]
fn a_worker_image_outside_the_allow_list_is_never_deployed() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();

    // A new stream with a foreign image: Degraded, an Event, no Deployment at all.
    apply(&cp, &stream("foreign", json!({"image": FOREIGN_IMAGE})));
    let c = degraded(&cp, &operator, "foreign", "ImageNotAllowed");
    let message = c["message"].as_str().unwrap();
    for needle in ["spec.worker.image", FOREIGN_IMAGE, TEST_WORKER_REPOSITORY] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    let event = warning(&cp, &operator, "foreign", "ImageNotAllowed");
    assert!(
        event["note"]
            .as_str()
            .or(event["message"].as_str())
            .unwrap_or_default()
            .contains(FOREIGN_IMAGE),
        "{event}"
    );
    // The Degraded status is written after the decision, so nothing was applied before it.
    assert_eq!(deployment_images(&cp, "foreign"), Vec::<String>::new());

    // A running stream with an allowed image (another tag of the repository) keeps its
    // Deployment unchanged when its image is switched to a foreign one.
    let allowed = format!("{TEST_WORKER_REPOSITORY}:other-tag");
    apply(&cp, &stream("switch", json!({"image": allowed})));
    eventually(
        "switch-shard-0 with the allowed image",
        WAIT,
        || operator.log(),
        || (deployment_images(&cp, "switch") == [allowed.clone()]).then_some(()),
    );
    apply(&cp, &stream("switch", json!({"image": FOREIGN_IMAGE})));
    degraded(&cp, &operator, "switch", "ImageNotAllowed");
    assert_eq!(deployment_images(&cp, "switch"), [allowed]);
    operator.assert_running();
}

#[test]
fn the_admin_allows_images_with_a_flag() {
    let cp = control_plane_with_crd();
    let operator = admin_operator(&cp, &["--allowed-images", "docker.io/library/*"]);
    apply(&cp, &stream("busy", json!({"image": FOREIGN_IMAGE})));
    eventually(
        "busy-shard-0 with the image the admin allows",
        WAIT,
        || operator.log(),
        || (deployment_images(&cp, "busy") == [FOREIGN_IMAGE]).then_some(()),
    );
    // The list replaces the default: the operator's own repository is no longer allowed.
    apply(
        &cp,
        &stream(
            "own",
            json!({"image": format!("{TEST_WORKER_REPOSITORY}:x")}),
        ),
    );
    degraded(&cp, &operator, "own", "ImageNotAllowed");
}

fn polygon_stream(name: &str, url: &str, worker: Value) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"tickers": ["AAPL"], "shards": 1, "interval": "1s",
                 "source": {"type": "polygon", "polygon": {
                     "apiKeySecretRef": {"name": "massive", "key": "apiKey"}, "url": url}},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}},
                 "worker": worker}
    })
}

/// The value of `var` in the worker container of the stream's first shard Deployment.
fn worker_env(cp: &ControlPlane, stream: &str, var: &str) -> Option<String> {
    let d = get_json(
        cp,
        &["get", "deployment", &format!("{stream}-shard-0"), "-n", NS],
    )?;
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

#[test]
fn a_source_url_outside_the_vendor_hosts_is_never_deployed() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    // The key's Secret is one streams may use: only the host decides here.
    secret(&cp, "massive", json!({ACCESS: "true"}));

    // `ws://attacker/` would receive the Massive/Polygon auth frame with the API key.
    apply(
        &cp,
        &polygon_stream("leak", "ws://attacker.example/stocks", json!({})),
    );
    let c = degraded(&cp, &operator, "leak", "SourceHostNotAllowed");
    let message = c["message"].as_str().unwrap();
    for needle in [
        "spec.source.polygon.url",
        "attacker.example",
        "socket.massive.com",
        "loopback",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    warning(&cp, &operator, "leak", "SourceHostNotAllowed");
    assert_eq!(deployment_images(&cp, "leak"), Vec::<String>::new());

    // A loopback URL (the tests' vendor servers) is allowed by default, and the worker gets
    // the list to enforce itself.
    apply(
        &cp,
        &polygon_stream("local", "ws://127.0.0.1:9811/stocks", json!({})),
    );
    let hosts = eventually(
        "local-shard-0 with QUOTESTREAM_SOURCE_HOSTS",
        WAIT,
        || operator.log(),
        || worker_env(&cp, "local", "QUOTESTREAM_SOURCE_HOSTS"),
    );
    assert_eq!(
        hosts,
        "socket.massive.com,delayed.massive.com,socket.polygon.io,delayed.polygon.io,api.massive.com,api.polygon.io,loopback"
    );

    // The stream cannot widen its own list through spec.worker.env.
    apply(
        &cp,
        &polygon_stream(
            "widen",
            "ws://127.0.0.1:9811/stocks",
            json!({"env": [{"name": "QUOTESTREAM_SOURCE_HOSTS", "value": "*"}]}),
        ),
    );
    degraded(&cp, &operator, "widen", "InvalidWorkerTemplate");
    assert_eq!(deployment_images(&cp, "widen"), Vec::<String>::new());
    operator.assert_running();
}

#[test]
fn the_admin_sets_the_vendor_hosts_with_a_flag() {
    let cp = control_plane_with_crd();
    let operator = admin_operator(&cp, &["--allowed-source-hosts", "polygon=*.corp.example"]);
    secret(&cp, "massive", json!({ACCESS: "true"}));
    apply(
        &cp,
        &polygon_stream(
            "proxied",
            "wss://massive-proxy.corp.example/stocks",
            json!({}),
        ),
    );
    let hosts = eventually(
        "proxied-shard-0 with the admin's list",
        WAIT,
        || operator.log(),
        || worker_env(&cp, "proxied", "QUOTESTREAM_SOURCE_HOSTS"),
    );
    assert_eq!(hosts, "*.corp.example");
    // The list replaces the default: loopback is no longer allowed for polygon.
    apply(
        &cp,
        &polygon_stream("local", "ws://127.0.0.1:9811/stocks", json!({})),
    );
    degraded(&cp, &operator, "local", "SourceHostNotAllowed");
}

fn secret(cp: &ControlPlane, name: &str, labels: Value) {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "stringData": {"apiKey": "k3y-of-another-team"}});
    apply(cp, &secret);
}

const ACCESS: &str = "quotes.opa.io/stream-access";

#[test]
fn a_secret_without_the_admins_label_is_never_referenced() {
    let cp = control_plane_with_crd();
    let mut operator = Operator::admin(&cp);
    operator.wait_ready();
    let loopback = "ws://127.0.0.1:9811/stocks";

    // The source's key from a Secret nobody labelled for streams.
    secret(&cp, "massive", json!({}));
    apply(&cp, &polygon_stream("borrow", loopback, json!({})));
    let c = degraded(&cp, &operator, "borrow", "SecretNotAllowed");
    let message = c["message"].as_str().unwrap();
    for needle in [
        "spec.source.polygon.apiKeySecretRef",
        "\"massive\"",
        "kubectl label secret massive quotes.opa.io/stream-access=true",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    warning(&cp, &operator, "borrow", "SecretNotAllowed");
    assert_eq!(deployment_images(&cp, "borrow"), Vec::<String>::new());

    // Labelling it is the fix: Secrets are not watched, the operator looks again within 30 s.
    kubectl_label(&cp, "massive", &format!("{ACCESS}=true"));
    eventually(
        "borrow-shard-0 once the Secret is labelled",
        WAIT,
        || operator.log(),
        || (deployment_images(&cp, "borrow").len() == 1).then_some(()),
    );

    // spec.worker.env may not mount another Secret either, and a running stream keeps its
    // Deployment as it was.
    secret(&cp, "other-team", json!({ACCESS: "false"}));
    let env = json!({"env": [{"name": "STOLEN", "valueFrom": {"secretKeyRef": {"name": "other-team", "key": "apiKey"}}}]});
    apply(&cp, &polygon_stream("borrow", loopback, env));
    let c = degraded(&cp, &operator, "borrow", "SecretNotAllowed");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("spec.worker.env[0].valueFrom.secretKeyRef (STOLEN)")
            && message.contains("other-team"),
        "{message}"
    );
    assert_eq!(worker_env_from(&cp, "borrow", "STOLEN"), None);

    // A Secret that does not exist is refused too (it could be created later without the label).
    apply(
        &cp,
        &json!({
            "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
            "metadata": {"name": "missing", "namespace": NS},
            "spec": {"tickers": ["AAPL"], "shards": 1, "interval": "1s", "source": {"type": "synthetic"},
                     "sinks": {"postgres": {"dsnSecretRef": {"name": "nowhere", "key": "dsn"}}}}
        }),
    );
    let c = degraded(&cp, &operator, "missing", "SecretNotAllowed");
    assert!(
        c["message"].as_str().unwrap().contains("does not exist"),
        "{c}"
    );
    assert_eq!(deployment_images(&cp, "missing"), Vec::<String>::new());
    operator.assert_running();
}

#[test]
fn the_admin_can_turn_the_secret_policy_off() {
    let cp = control_plane_with_crd();
    let operator = admin_operator(&cp, &["--allow-any-secret"]);
    secret(&cp, "massive", json!({}));
    apply(
        &cp,
        &polygon_stream("any", "ws://127.0.0.1:9811/stocks", json!({})),
    );
    eventually(
        "any-shard-0 with an unlabelled Secret",
        WAIT,
        || operator.log(),
        || (deployment_images(&cp, "any").len() == 1).then_some(()),
    );
}

fn kubectl_label(cp: &ControlPlane, secret: &str, label: &str) {
    support::cluster::kubectl(
        cp,
        &["label", "secret", secret, "-n", NS, label, "--overwrite"],
        None,
    );
}

/// The Secret a worker env variable of the stream's first shard Deployment comes from.
fn worker_env_from(cp: &ControlPlane, stream: &str, var: &str) -> Option<String> {
    let d = get_json(
        cp,
        &["get", "deployment", &format!("{stream}-shard-0"), "-n", NS],
    )?;
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)
        .and_then(|e| {
            e["valueFrom"]["secretKeyRef"]["name"]
                .as_str()
                .map(str::to_owned)
        })
}
