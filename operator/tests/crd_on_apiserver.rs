//! The generated CRD on a real kube-apiserver: it installs, serves the printer columns, the
//! scale subresource and `kubectl explain`, and the API server itself rejects bad manifests with
//! messages that name the field and the fix.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Output;

use quotestream_testkit::ControlPlane;
use serde_json::{Value, json};

fn crd_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/quotestream.yaml")
}

fn cluster() -> ControlPlane {
    let cp = ControlPlane::start().unwrap();
    cp.install_crd(&crd_path()).unwrap();
    cp
}

fn stream(name: &str) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1",
        "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "tickers": ["AAPL", "MSFT", "BRK.B"],
            "interval": "1s",
            "source": {"type": "synthetic"},
            "sinks": {"redis": {"url": "redis://redis:6379/0"}}
        }
    })
}

fn create(cp: &ControlPlane, obj: &Value) -> Output {
    cp.kubectl_with_input("admin", &["create", "-f", "-"], Some(&obj.to_string()))
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_crd_serves_columns_scale_and_explain() {
    let cp = cluster();
    for example in ["minimal.yaml", "sp500.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(example);
        let mut body = std::fs::read_to_string(&path).unwrap();
        // The examples name their namespace; the test cluster only has default.
        body = body.replace("namespace: markets", "namespace: default");
        let out = cp
            .kubectl_with_input("admin", &["apply", "-f", "-"], Some(&body))
            .unwrap();
        assert!(
            out.status.success(),
            "{example} is accepted: {}",
            text(&out)
        );
    }

    let out = cp
        .kubectl("admin", &["get", "qs", "-n", "default"])
        .unwrap();
    let table = text(&out);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAME", "SHARDS", "READY", "TICKERS", "SOURCE", "STATUS", "AGE",
    ] {
        assert!(
            header.contains(column),
            "column {column} in `kubectl get qs`:\n{table}"
        );
    }
    assert!(
        table.contains("sp500") && table.contains("yahoo"),
        "{table}"
    );

    let out = cp
        .kubectl(
            "admin",
            &["scale", "qs/sp500", "-n", "default", "--replicas=8"],
        )
        .unwrap();
    assert!(out.status.success(), "scale subresource: {}", text(&out));
    let out = cp
        .kubectl(
            "admin",
            &[
                "get",
                "qs/sp500",
                "-n",
                "default",
                "-o",
                "jsonpath={.spec.shards}",
            ],
        )
        .unwrap();
    assert_eq!(text(&out), "8");

    let out = cp
        .kubectl("admin", &["explain", "quotestream.spec.source"])
        .unwrap();
    let doc = text(&out);
    assert!(
        doc.contains("Where quotes come from") && doc.contains("rateLimit"),
        "{doc}"
    );

    let out = cp
        .kubectl("admin", &["get", "qs/demo", "-n", "default", "-o", "json"])
        .unwrap();
    let obj: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(
        obj["spec"]["shards"], 1,
        "defaults are applied by the API server"
    );
    assert_eq!(obj["spec"]["sinks"]["redis"]["channel"], "quotes.realtime");
    assert_eq!(obj["spec"]["source"]["rateLimit"]["requestsPerHour"], 2000);
}

#[test]
fn bad_manifests_are_rejected_with_the_field_and_the_fix() {
    let cp = cluster();
    type Mutation = fn(&mut Value);
    let cases: Vec<(&str, Mutation, &[&str])> = vec![
        (
            "lower-case ticker",
            |v| v["spec"]["tickers"][0] = json!("aapl"),
            &["spec.tickers[0]", "should match"],
        ),
        (
            "duplicate ticker",
            |v| v["spec"]["tickers"][1] = json!("AAPL"),
            &["spec.tickers[1]", "Duplicate value"],
        ),
        (
            "zero shards",
            |v| v["spec"]["shards"] = json!(0),
            &["spec.shards", "greater than or equal to 1"],
        ),
        (
            "more shards than tickers",
            |v| v["spec"]["shards"] = json!(5),
            &["spec.shards", "must not exceed the number of tickers"],
        ),
        (
            "unknown source",
            |v| v["spec"]["source"]["type"] = json!("bloomberg"),
            &["spec.source.type", "Unsupported value"],
        ),
        (
            "interval too short",
            |v| v["spec"]["interval"] = json!("50ms"),
            &["spec.interval must be between 100ms and 1h"],
        ),
        (
            "interval too long",
            |v| v["spec"]["interval"] = json!("2h"),
            &["spec.interval must be between 100ms and 1h"],
        ),
        (
            "interval not a duration",
            |v| v["spec"]["interval"] = json!("soon"),
            &["spec.interval", "should match"],
        ),
        (
            "source block of another type",
            |v| v["spec"]["source"]["yahoo"] = json!({}),
            &["source.yahoo is set but source.type is not yahoo"],
        ),
        (
            "alpaca without credentials",
            |v| v["spec"]["source"] = json!({"type": "alpaca"}),
            &["source.type alpaca needs source.alpaca.credentialsSecretRef"],
        ),
        (
            "secret reference without a name",
            |v| v["spec"]["sinks"] = json!({"postgres": {"dsnSecretRef": {"key": "dsn"}}}),
            &["spec.sinks.postgres.dsnSecretRef.name", "Required value"],
        ),
        (
            "password in a URL",
            |v| v["spec"]["sinks"]["redis"]["url"] = json!("redis://:hunter2@redis:6379/0"),
            &["credentials belong in a Secret"],
        ),
        (
            "redis url and secret both",
            |v| v["spec"]["sinks"]["redis"]["urlSecretRef"] = json!({"name": "r", "key": "url"}),
            &["exactly one of sinks.redis.url and sinks.redis.urlSecretRef"],
        ),
        (
            "no sinks",
            |v| v["spec"]["sinks"] = json!({}),
            &["configure at least one sink"],
        ),
        (
            "no tickers",
            |v| {
                v["spec"].as_object_mut().unwrap().remove("tickers");
            },
            &["list the symbols to stream in spec.tickers"],
        ),
        (
            "storage batch too large",
            |v| {
                v["spec"]["sinks"]["storage"] =
                    json!({"url": "http://storage:8000", "batchSize": 5000})
            },
            &["spec.sinks.storage.batchSize", "less than or equal to 1000"],
        ),
        (
            "inline credentials",
            |v| v["spec"]["source"] = json!({"type": "polygon", "polygon": {"apiKey": "abc", "apiKeySecretRef": {"name": "p", "key": "k"}}}),
            &["unknown field", "apiKey"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, mutate, expected)) in cases.iter().enumerate() {
        let mut obj = stream(&format!("bad-{i}"));
        mutate(&mut obj);
        let out = create(&cp, &obj);
        let msg = text(&out);
        if out.status.success() {
            failures.push(format!("{what}: accepted"));
        } else if let Some(missing) = expected.iter().find(|e| !msg.contains(*e)) {
            failures.push(format!("{what}: message lacks {missing:?}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let ok = create(&cp, &stream("good"));
    assert!(
        ok.status.success(),
        "the unmodified manifest is valid: {}",
        text(&ok)
    );
}

#[test]
fn an_identity_without_rbac_is_denied() {
    let cp = cluster();
    let out = cp
        .kubectl("nobody", &["get", "quotestreams", "-n", "default"])
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("forbidden"), "{}", text(&out));
    let out = cp
        .kubectl(
            "admin",
            &[
                "auth",
                "can-i",
                "list",
                "quotestreams.quotes.opa.io",
                "--as",
                "system:serviceaccount:quotestream-system:quotestream-operator",
            ],
        )
        .unwrap();
    assert_eq!(
        text(&out).trim(),
        "no",
        "the operator has no rights until the chart grants them"
    );
}
