//! The generated CRD on a real kube-apiserver: it installs, serves the printer columns, the
//! scale subresource and `kubectl explain`, and the API server itself rejects bad manifests with
//! messages that name the field and the fix (the manifests of `api/testdata/crd-cases.yaml`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Output;

use quotestream_testkit::{ControlPlane, RejectedBy, crd_cases};
use serde_json::{Value, json};

fn crd_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/quotestream.yaml")
}

fn cluster() -> ControlPlane {
    let cp = ControlPlane::start().unwrap();
    cp.install_crd(&crd_path()).unwrap();
    cp
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
        .kubectl("admin", &["get", "qs", "-n", "default", "-o", "wide"])
        .unwrap();
    let wide = text(&out);
    let header = wide.lines().next().unwrap_or_default();
    for column in ["INTERVAL", "MOVING"] {
        assert!(
            header.contains(column),
            "column {column} in `kubectl get qs -o wide`:\n{wide}"
        );
    }

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

/// The manifests of `api/testdata/crd-cases.yaml`, which `api/src/crd/cel_tests.rs` also runs
/// through the CEL rules in-process: valid ones are accepted, the others refused with a message
/// naming the field and the fix.
#[test]
fn the_case_file_manifests_get_the_verdict_it_names() {
    let cp = cluster();
    let cases = crd_cases().unwrap();
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut obj = case.manifest.clone();
        obj["metadata"]["name"] = json!(format!("case-{i}"));
        let out = create(&cp, &obj);
        let msg = text(&out);
        match (case.rejected_by, out.status.success()) {
            (RejectedBy::None, true) => {}
            (RejectedBy::None, false) => wrong.push(format!("{}: refused: {msg}", case.name)),
            (_, true) => wrong.push(format!("{}: accepted", case.name)),
            (_, false) => {
                let expected = [case.field.as_deref(), case.message.as_deref()];
                if let Some(missing) = expected.into_iter().flatten().find(|e| !msg.contains(e)) {
                    wrong.push(format!("{}: message lacks {missing:?}: {msg}", case.name));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
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
