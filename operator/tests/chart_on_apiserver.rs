//! The Helm chart `charts/quotestream` on a real kube-apiserver: it lints and renders with every
//! toggle, its schema rejects typos, `helm install` creates the CRD, the operator and the example,
//! `helm upgrade` to a chart whose CRD gained a field leaves the CRD alone and the upgraded
//! operator (`--apply-crd`) serves the new field, and the RBAC it grants is exactly what the
//! operator needs — checked with the API server's own authorizer (`kubectl auth can-i` as the
//! operator's ServiceAccount) and with real requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use quotestream_testkit::controlplane::bin_dir;
use quotestream_testkit::{ControlPlane, wait_until};
use serde::Deserialize as _;
use serde_json::{Value, json};
use support::cluster::{WAIT, eventually, get_json, ok, repo, text};
use support::operator::Operator;

const OPERATOR: &str = "system:serviceaccount:quotestream-system:quotestream-operator";
const NAMESPACE: &str = "quotestream-system";

fn chart() -> String {
    repo().join("charts/quotestream").display().to_string()
}

/// helm without a cluster (lint and template need none).
fn helm(args: &[&str]) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    Command::new(bin_dir().join("helm"))
        .env("HELM_CACHE_HOME", scratch.path().join("cache"))
        .env("HELM_CONFIG_HOME", scratch.path().join("config"))
        .env("HELM_DATA_HOME", scratch.path().join("data"))
        .args(args)
        .output()
        .unwrap()
}

fn template(sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec!["template", "quotestream", &chart, "-n", NAMESPACE];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm template {sets:?}: {}",
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered objects as (kind, name) pairs.
fn kinds(rendered: &str) -> BTreeSet<(String, String)> {
    serde_yaml::Deserializer::from_str(rendered)
        .filter_map(|doc| {
            let v = serde_yaml::Value::deserialize(doc).ok()?;
            let kind = v.get("kind")?.as_str()?.to_owned();
            let name = v.get("metadata")?.get("name")?.as_str()?.to_owned();
            Some((kind, name))
        })
        .collect()
}

fn has(objects: &BTreeSet<(String, String)>, kind: &str, name: &str) -> bool {
    objects.contains(&(kind.to_owned(), name.to_owned()))
}

fn install(cp: &ControlPlane, sets: &[&str]) {
    install_chart(cp, &chart(), sets);
}

fn install_chart(cp: &ControlPlane, chart: &str, sets: &[&str]) {
    let mut args = vec![
        "install",
        "quotestream",
        chart,
        "-n",
        NAMESPACE,
        "--create-namespace",
        "--wait=false",
        "--timeout=60s",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    ok(&cp.helm(&args).unwrap(), "helm install");
}

/// `kubectl auth can-i VERB RESOURCE [extra…]` for the operator, asked as admin.
fn can_i(cp: &ControlPlane, verb: &str, resource: &str, extra: &[&str]) -> bool {
    let mut args = vec!["auth", "can-i", verb, resource, "--as", OPERATOR];
    args.extend(extra);
    let out = cp.kubectl("admin", &args).unwrap();
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {verb} {resource} {extra:?}: {}",
            text(&out)
        ),
    }
}

/// Asserts a table of (verb, resource, extra args, expected answer) and lists every mismatch.
fn assert_rights(cp: &ControlPlane, cases: &[(&str, &str, &[&str], bool)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(verb, resource, extra, want)| can_i(cp, verb, resource, extra) != *want)
        .map(|(verb, resource, extra, want)| {
            let expected = if *want { "allowed" } else { "denied" };
            format!("{verb} {resource} {extra:?} should be {expected}")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "operator RBAC wrong in {} cases:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Applies the CRDs of a file and waits (bounded) until every one is Established.
fn apply_crds(cp: &ControlPlane, path: &Path) {
    let file = path.display().to_string();
    ok(
        &cp.kubectl("admin", &["apply", "--server-side", "-f", &file])
            .unwrap(),
        &format!("apply {file}"),
    );
    let count = std::fs::read_to_string(path)
        .unwrap()
        .matches("kind: CustomResourceDefinition")
        .count();
    // `..` finds the conditions whether kubectl returns one object or a List.
    let jsonpath = r#"jsonpath={..status.conditions[?(@.type=="Established")].status}"#;
    let mut last = String::new();
    let established = wait_until(Duration::from_secs(60), || {
        let out = cp
            .kubectl("admin", &["get", "-f", &file, "-o", jsonpath])
            .unwrap();
        last = text(&out);
        out.status.success() && last.matches("True").count() == count
    });
    assert!(
        established,
        "the {count} CRDs of {file} are not Established within 60 s: {last}"
    );
}

#[test]
fn the_chart_crd_is_the_generated_crd() {
    let generated = std::fs::read_to_string(repo().join("crds/quotestream.yaml")).unwrap();
    let packaged =
        std::fs::read_to_string(repo().join("charts/quotestream/crds/quotestream.yaml")).unwrap();
    assert!(
        generated == packaged,
        "charts/quotestream/crds/quotestream.yaml differs from crds/quotestream.yaml (the \
         generated source of truth): run `make crd` and then \
         `cp crds/quotestream.yaml charts/quotestream/crds/quotestream.yaml`"
    );
}

#[test]
fn the_dashboard_queries_only_metrics_that_exist() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("charts/quotestream/files/dashboards/quotestream.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    // Worker metric names as registered in worker/src/metrics.rs; the operator's as listed in
    // the chart README (the operator implements that list).
    let worker = std::fs::read_to_string(repo().join("worker/src/metrics.rs")).unwrap();
    let readme = std::fs::read_to_string(repo().join("charts/quotestream/README.md")).unwrap();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            let base = name.strip_suffix("_bucket").unwrap_or(&name).to_owned();
            let known = if base.starts_with("quotestream_") {
                readme.contains(&format!("`{base}"))
            } else {
                worker.contains(&format!("\"{base}\""))
            };
            assert!(
                known,
                "the dashboard queries unknown metric {base} in {expr}"
            );
            used.insert(base);
        }
    }
    for required in [
        "streamer_quotes_fetched_total",
        "streamer_quotes_published_total",
        "streamer_errors_total",
        "streamer_validation_errors_total",
        "streamer_publish_duration_seconds",
        "redis_publish_latency_seconds",
        "quotestream_shards_ready",
        "quotestream_reconcile_duration_seconds",
        "quotestream_reconcile_errors_total",
        "streamer_rate_limit_hits_total",
        "streamer_sink_queued_quotes",
        "streamer_sink_dropped_quotes_total",
        "streamer_sink_circuit_open",
    ] {
        assert!(
            used.contains(required),
            "no dashboard panel shows {required}"
        );
    }
}

/// Identifiers in a PromQL expression that look like our metric names.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            ["streamer_", "redis_", "quotestream_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_chart_lints_renders_every_toggle_and_rejects_typos() {
    let chart = chart();
    let out = helm(&["lint", "--strict", &chart]);
    ok(&out, "helm lint --strict");
    let out = helm(&[
        "lint",
        "--strict",
        &chart,
        "--set",
        "serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true,example.enabled=true,watchNamespace=markets",
    ]);
    ok(&out, "helm lint --strict with every toggle");

    let defaults = kinds(&template(&[]));
    for (kind, name) in [
        ("ServiceAccount", "quotestream-operator"),
        ("ClusterRole", "quotestream-operator"),
        ("ClusterRoleBinding", "quotestream-operator"),
        ("ClusterRole", "quotestream-operator-crd"),
        ("Role", "quotestream-operator-leader-election"),
        ("Deployment", "quotestream-operator"),
        ("Service", "quotestream-operator-metrics"),
        ("ConfigMap", "quotestream-dashboard"),
    ] {
        assert!(
            has(&defaults, kind, name),
            "default render lacks {kind}/{name}: {defaults:?}"
        );
    }
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "QuoteStream",
        "Secret",
        "PodDisruptionBudget",
    ] {
        assert!(
            !defaults.iter().any(|(k, _)| k == kind),
            "{kind} is off by default: {defaults:?}"
        );
    }

    let scoped = kinds(&template(&[
        "watchNamespace=markets",
        "serviceMonitor.enabled=true",
        "podMonitor.enabled=true",
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=monitoring",
        "example.enabled=true",
        "store.enabled=true",
        "store.database.secretName=quotestream-store-db",
    ]));
    for (kind, name) in [
        ("Role", "quotestream-operator"),
        ("RoleBinding", "quotestream-operator"),
        ("ServiceMonitor", "quotestream-operator"),
        ("ServiceMonitor", "quotestream-store"),
        ("PodMonitor", "quotestream-workers"),
        ("PrometheusRule", "quotestream"),
        ("QuoteStream", "demo"),
        ("Deployment", "quotestream-store"),
        ("Service", "quotestream-store"),
        ("PodDisruptionBudget", "quotestream-store"),
        ("ConfigMap", "quotestream-prices-dashboard"),
    ] {
        assert!(
            has(&scoped, kind, name),
            "toggled render lacks {kind}/{name}: {scoped:?}"
        );
    }
    assert!(
        !has(&scoped, "ClusterRoleBinding", "quotestream-operator"),
        "watchNamespace must not grant cluster-wide rights: {scoped:?}"
    );
    // The PrometheusRule carries the rule file whole (promtool checks that file:
    // alert_rules.rs), with the labels a Prometheus selects rules by.
    let rendered = template(&[
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=monitoring",
    ]);
    let rules = objects(&rendered, "PrometheusRule");
    let file: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            repo().join("charts/quotestream/files/alerts/quotestream-rules.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rules.len(), 1, "one PrometheusRule: {rules:?}");
    assert_eq!(
        rules[0]["spec"], file,
        "the PrometheusRule's spec is the rule file"
    );
    assert_eq!(rules[0]["metadata"]["labels"]["release"], "monitoring");
    assert_eq!(rules[0]["metadata"]["namespace"], NAMESPACE);

    assert!(
        !has(&defaults, "ConfigMap", "quotestream-prices-dashboard"),
        "the prices dashboard needs the store"
    );
    // The prices dashboard and its PostgreSQL datasource, for the Grafana sidecar.
    let grafana = template(&[
        "store.enabled=true",
        "store.database.secretName=quotestream-store-db",
        "store.grafanaDatasource.enabled=true",
        "store.grafanaDatasource.host=db.markets:5432",
    ]);
    let maps = objects(&grafana, "ConfigMap");
    let find = |name: &str| {
        maps.iter()
            .find(|m| m["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
    };
    let dashboard = find("quotestream-prices-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let file =
        std::fs::read_to_string(Path::new(&chart).join("files/dashboards/quotestream-prices.json"))
            .unwrap();
    assert_eq!(
        dashboard["data"]["quotestream-prices.json"]
            .as_str()
            .unwrap()
            .trim(),
        file.trim()
    );
    let datasource = find("quotestream-postgres-datasource");
    assert_eq!(datasource["metadata"]["labels"]["grafana_datasource"], "1");
    let yaml: serde_yaml::Value = serde_yaml::from_str(
        datasource["data"]["quotestream-postgres.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let ds = &yaml["datasources"][0];
    assert_eq!(ds["uid"].as_str(), Some("quotestream-postgres"));
    assert_eq!(ds["type"].as_str(), Some("grafana-postgresql-datasource"));
    assert_eq!(ds["url"].as_str(), Some("db.markets:5432"));
    assert_eq!(
        ds["secureJsonData"]["password"].as_str(),
        Some("$QUOTESTREAM_GRAFANA_PG_PASSWORD")
    );
    let out = helm(&[
        "template",
        "q",
        &chart,
        "--set",
        "store.grafanaDatasource.enabled=true",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("store.grafanaDatasource.host is empty"),
        "{}",
        text(&out)
    );

    // values.schema.json: a typo names the key; a cross-field mistake names the fix.
    let out = helm(&[
        "template",
        "q",
        &chart,
        "--set",
        "serviceMonitor.enabeld=true",
    ]);
    assert!(!out.status.success(), "a typo'd key is accepted");
    assert!(
        text(&out).contains("additional properties 'enabeld' not allowed"),
        "{}",
        text(&out)
    );
    let out = helm(&["template", "q", &chart, "--set", "store.enabled=true"]);
    assert!(
        !out.status.success() && text(&out).contains("set store.database.secretName"),
        "{}",
        text(&out)
    );
    let out = helm(&["template", "q", &chart, "--set", "replicaCount=0"]);
    assert!(
        !out.status.success() && text(&out).contains("replicaCount"),
        "{}",
        text(&out)
    );
    // Secrets: the Secret policy (on by default) reads a named Secret's labels, so the
    // operator gets `get` — never list or watch; with the policy off it gets nothing. The old
    // switch that granted an unused cluster-wide `get secrets` is refused, not ignored.
    for sets in [&[][..], &["watchNamespace=markets"][..]] {
        let rendered = template(sets);
        let rules: Vec<Value> = objects(&rendered, "ClusterRole")
            .into_iter()
            .chain(objects(&rendered, "Role"))
            .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
            .filter(|rule| {
                rule["resources"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("secrets")))
            })
            .collect();
        assert_eq!(
            rules,
            [json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})],
            "{sets:?}"
        );
        let off = template(&[sets, &["policy.secrets.requireLabel=false"][..]].concat());
        assert!(
            !off.contains("resources: [secrets]"),
            "{sets:?} with the Secret policy off grants Secrets:\n{off}"
        );
    }
    let out = helm(&[
        "template",
        "q",
        &chart,
        "--set",
        "rbac.checkSecretReferences=true",
    ]);
    assert!(
        !out.status.success()
            && text(&out).contains("additional properties 'checkSecretReferences' not allowed"),
        "{}",
        text(&out)
    );
    let out = helm(&[
        "template",
        "q",
        &chart,
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("Set replicaCount=1"),
        "{}",
        text(&out)
    );
}

/// The rendered objects of `kind`, as JSON.
fn objects(rendered: &str, kind: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .filter_map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).ok()?).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// The operator container's args in a rendering.
fn operator_args(rendered: &str) -> Vec<String> {
    let deployment = objects(rendered, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "quotestream-operator")
        .expect("the operator Deployment");
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .unwrap()
}

#[test]
fn the_policy_values_become_operator_flags() {
    // Default: only the chart's own worker repository.
    let args = operator_args(&template(&[]));
    let images: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--allowed-images="))
        .collect();
    assert_eq!(
        images,
        ["--allowed-images=ghcr.io/quotestream/quotestream-worker"],
        "{args:?}"
    );
    let args = operator_args(&template(&[
        "image.worker.repository=registry.corp/worker",
        "policy.allowedImages={registry.corp/quotes/*,ghcr.io/org/worker:1.2}",
    ]));
    let images: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--allowed-images="))
        .collect();
    assert_eq!(
        images,
        [
            "--allowed-images=registry.corp/quotes/*",
            "--allowed-images=ghcr.io/org/worker:1.2"
        ],
        "the list replaces the default: {args:?}"
    );
    let args = operator_args(&template(&["image.worker.repository=registry.corp/worker"]));
    assert!(
        args.contains(&"--allowed-images=registry.corp/worker".to_owned()),
        "{args:?}"
    );
    let out = helm(&[
        "template",
        "q",
        &chart(),
        "--set",
        "policy.allowedImages={a b}",
    ]);
    assert!(!out.status.success(), "a pattern with a space is accepted");

    // The write concurrency: the operator's default, or the value.
    let args = operator_args(&template(&[]));
    assert!(
        args.contains(&"--api-concurrency=16".to_owned()),
        "{args:?}"
    );
    let args = operator_args(&template(&["apiConcurrency=4"]));
    assert!(args.contains(&"--api-concurrency=4".to_owned()), "{args:?}");
    let out = helm(&["template", "q", &chart(), "--set", "apiConcurrency=0"]);
    assert!(!out.status.success(), "apiConcurrency 0 is accepted");

    // The hand-over acknowledgement's timeout: the operator's default, or the value.
    let args = operator_args(&template(&[]));
    assert!(
        args.contains(&"--handover-timeout=5m".to_owned()),
        "{args:?}"
    );
    let args = operator_args(&template(&["handoverTimeout=0s"]));
    assert!(
        args.contains(&"--handover-timeout=0s".to_owned()),
        "{args:?}"
    );
    let out = helm(&[
        "template",
        "q",
        &chart(),
        "--set",
        "handoverTimeout=5 minutes",
    ]);
    assert!(
        !out.status.success(),
        "handoverTimeout '5 minutes' is accepted"
    );

    // The Secret policy: on with the default label, or off.
    let args = operator_args(&template(&[]));
    assert!(
        args.contains(&"--secret-label=quotes.opa.io/stream-access=true".to_owned())
            && !args.contains(&"--allow-any-secret".to_owned()),
        "{args:?}"
    );
    let args = operator_args(&template(&["policy.secrets.label=team.example/quotes=yes"]));
    assert!(
        args.contains(&"--secret-label=team.example/quotes=yes".to_owned()),
        "{args:?}"
    );
    let args = operator_args(&template(&["policy.secrets.requireLabel=false"]));
    assert!(
        args.contains(&"--allow-any-secret".to_owned())
            && !args.iter().any(|a| a.starts_with("--secret-label")),
        "{args:?}"
    );

    // Vendor hosts: none by default (the operator's defaults), one flag per listed type.
    let hosts = |args: &[String]| -> Vec<String> {
        args.iter()
            .filter(|a| a.starts_with("--allowed-source-hosts="))
            .cloned()
            .collect()
    };
    assert_eq!(hosts(&operator_args(&template(&[]))), Vec::<String>::new());
    let args = operator_args(&template(&[
        "policy.allowedSourceHosts.polygon={massive-proxy.corp.example,loopback}",
        "policy.allowedSourceHosts.yahoo={*.yahoo.com}",
    ]));
    assert_eq!(
        hosts(&args),
        [
            "--allowed-source-hosts=polygon=massive-proxy.corp.example,loopback",
            "--allowed-source-hosts=yahoo=*.yahoo.com"
        ],
        "{args:?}"
    );
    let out = helm(&[
        "template",
        "q",
        &chart(),
        "--set",
        "policy.allowedSourceHosts.iex={x.example}",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("'iex' not allowed"),
        "a source type that does not exist: {}",
        text(&out)
    );
}

/// The ports of a NetworkPolicy rule, as (protocol, port).
fn rule_ports(rule: &Value) -> Vec<(String, u64)> {
    rule["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["protocol"].as_str().unwrap_or("TCP").to_owned(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_network_policies_confine_the_operator_and_the_workers() {
    assert!(
        objects(&template(&[]), "NetworkPolicy").is_empty(),
        "off by default"
    );
    let rendered = template(&["networkPolicy.enabled=true"]);
    let policies = objects(&rendered, "NetworkPolicy");
    let named = |name: &str| {
        policies
            .iter()
            .find(|p| p["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no NetworkPolicy {name}: {policies:?}"))
            .clone()
    };
    let dns = [("UDP".to_owned(), 53), ("TCP".to_owned(), 53)];

    let operator = named("quotestream-operator");
    assert_eq!(operator["metadata"]["namespace"], NAMESPACE);
    let operator_deployment = objects(&rendered, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "quotestream-operator")
        .unwrap();
    assert_eq!(
        operator["spec"]["podSelector"]["matchLabels"],
        operator_deployment["spec"]["selector"]["matchLabels"],
        "selects exactly the operator's pods"
    );
    assert_eq!(
        operator["spec"]["policyTypes"],
        json!(["Ingress", "Egress"])
    );
    let ingress = operator["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(rule_ports(&ingress[0]), [("TCP".to_owned(), 8080)]);
    let egress: Vec<Vec<(String, u64)>> = operator["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(rule_ports)
        .collect();
    assert_eq!(
        egress,
        [
            vec![("TCP".to_owned(), 443), ("TCP".to_owned(), 6443)],
            dns.to_vec(),
            vec![("TCP".to_owned(), 8080)]
        ]
    );
    // The hand-over acknowledgement: only the worker pods' port.
    let to_workers = &operator["spec"]["egress"][2]["to"][0];
    assert_eq!(
        to_workers["podSelector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "quotestream-operator"
    );
    assert_eq!(
        to_workers["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "quotestream-worker"
    );

    // The workers' policy lives where the shard pods are: the release namespace by default.
    let workers = named("quotestream-workers");
    assert_eq!(workers["metadata"]["namespace"], NAMESPACE);
    let selector = &workers["spec"]["podSelector"];
    assert_eq!(
        selector["matchLabels"]["app.kubernetes.io/managed-by"],
        "quotestream-operator"
    );
    assert_eq!(
        selector["matchExpressions"][0]["key"],
        "quotes.opa.io/stream"
    );
    let ingress = workers["spec"]["ingress"].as_array().unwrap();
    assert_eq!(
        ingress.len(),
        2,
        "scrapers, and the operator's acknowledgement"
    );
    assert_eq!(rule_ports(&ingress[0]), [("TCP".to_owned(), 8080)]);
    assert_eq!(rule_ports(&ingress[1]), [("TCP".to_owned(), 8080)]);
    let from_operator = &ingress[1]["from"][0];
    assert_eq!(
        from_operator["podSelector"]["matchLabels"],
        operator_deployment["spec"]["selector"]["matchLabels"],
        "only the operator's pods"
    );
    assert_eq!(
        from_operator["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        NAMESPACE
    );
    let egress = workers["spec"]["egress"].as_array().unwrap();
    assert_eq!(rule_ports(&egress[0]), dns.to_vec());
    assert_eq!(
        rule_ports(&egress[1]),
        [
            ("TCP".to_owned(), 6379),
            ("TCP".to_owned(), 5432),
            ("TCP".to_owned(), 8080)
        ]
    );
    assert_eq!(rule_ports(&egress[2]), [("TCP".to_owned(), 443)]);
    let vendors = &egress[2]["to"][0]["ipBlock"];
    assert_eq!(vendors["cidr"], "0.0.0.0/0");
    for private in ["10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16"] {
        assert!(
            vendors["except"]
                .as_array()
                .unwrap()
                .contains(&json!(private)),
            "{private} must stay unreachable: {vendors}"
        );
    }
    assert_eq!(egress.len(), 3, "nothing else: {egress:?}");

    // One workers' policy per namespace the admin names; the scrapers can be narrowed.
    let rendered = template(&[
        "networkPolicy.enabled=true",
        "networkPolicy.workerNamespaces={markets,trading}",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
    ]);
    let workers: Vec<Value> = objects(&rendered, "NetworkPolicy")
        .into_iter()
        .filter(|p| p["metadata"]["name"] == "quotestream-workers")
        .collect();
    let namespaces: Vec<&Value> = workers
        .iter()
        .map(|p| &p["metadata"]["namespace"])
        .collect();
    assert_eq!(namespaces, [&json!("markets"), &json!("trading")]);
    assert_eq!(
        workers[0]["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "monitoring"
    );
    let scoped = template(&["networkPolicy.enabled=true", "watchNamespace=markets"]);
    let workers = objects(&scoped, "NetworkPolicy")
        .into_iter()
        .find(|p| p["metadata"]["name"] == "quotestream-workers")
        .unwrap();
    assert_eq!(workers["metadata"]["namespace"], "markets");
}

#[test]
fn every_rendering_passes_a_server_dry_run_under_restricted_pod_security() {
    let cp = ControlPlane::start().unwrap();
    apply_crds(&cp, &repo().join("crds/quotestream.yaml"));
    apply_crds(
        &cp,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/monitoring-crds.yaml"),
    );
    for ns in [NAMESPACE, "markets"] {
        ok(
            &cp.kubectl("admin", &["create", "namespace", ns]).unwrap(),
            "create ns",
        );
        // Enforce the "restricted" Pod Security Standard: the API server warns about any pod
        // template of a Deployment that would violate it.
        let out = cp
            .kubectl(
                "admin",
                &[
                    "label",
                    "namespace",
                    ns,
                    "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/warn=restricted",
                ],
            )
            .unwrap();
        ok(&out, "label ns");
    }
    let renderings: [&[&str]; 3] = [
        &[],
        &[
            "serviceMonitor.enabled=true",
            "podMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "example.enabled=true",
            "store.enabled=true",
            "store.database.secretName=quotestream-store-db",
            "networkPolicy.enabled=true",
        ],
        &[
            "watchNamespace=markets",
            "networkPolicy.enabled=true",
            "example.enabled=true",
            "replicaCount=1",
            "leaderElection.enabled=false",
            "crds.applyByOperator=false",
        ],
    ];
    for sets in renderings {
        let rendered = template(sets);
        let out = cp
            .kubectl_with_input(
                "admin",
                &["apply", "--dry-run=server", "-f", "-"],
                Some(&rendered),
            )
            .unwrap();
        ok(&out, &format!("server dry-run of the chart with {sets:?}"));
        assert!(
            !text(&out).contains("would violate PodSecurity"),
            "the operator pod violates the restricted Pod Security Standard with {sets:?}: {}",
            text(&out)
        );
    }
    // The check above is live: a pod that may escalate privileges is reported.
    let rendered = template(&["securityContext.allowPrivilegeEscalation=true"]);
    let out = cp
        .kubectl_with_input(
            "admin",
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&rendered),
        )
        .unwrap();
    assert!(
        text(&out).contains("would violate PodSecurity"),
        "the API server did not report a privilege-escalating pod: {}",
        text(&out)
    );
}

#[test]
fn helm_install_creates_the_crd_the_operator_and_the_example() {
    let cp = ControlPlane::start().unwrap();
    install(&cp, &["example.enabled=true"]);

    let out = cp
        .kubectl(
            "admin",
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/quotestreams.quotes.opa.io",
            ],
        )
        .unwrap();
    ok(&out, "the CRD is Established");
    let out = cp
        .kubectl("admin", &["get", "qs/demo", "-n", NAMESPACE, "-o", "json"])
        .unwrap();
    ok(&out, "the example QuoteStream exists");
    let demo: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(demo["spec"]["source"]["type"], "synthetic", "{demo}");
    assert_eq!(
        demo["spec"]["shards"], 1,
        "the API server applied the CRD defaults: {demo}"
    );

    let out = cp
        .kubectl(
            "admin",
            &[
                "get",
                "deployment/quotestream-operator",
                "-n",
                NAMESPACE,
                "-o",
                "json",
            ],
        )
        .unwrap();
    ok(&out, "the operator Deployment exists");
    let deploy: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(pod["serviceAccountName"], "quotestream-operator");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for expected in [
        "run",
        "--listen=0.0.0.0:8080",
        "--worker-image=ghcr.io/quotestream/quotestream-worker:0.1.0",
        "--leader-election",
        "--lease-name=quotestream-operator",
        "--apply-crd",
    ] {
        assert!(
            args.contains(&expected),
            "operator args lack {expected}: {args:?}"
        );
    }
    assert_eq!(container["env"][0]["name"], "POD_NAMESPACE");
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    for object in [
        "serviceaccount/quotestream-operator",
        "service/quotestream-operator-metrics",
        "configmap/quotestream-dashboard",
        "role/quotestream-operator-leader-election",
    ] {
        ok(
            &cp.kubectl("admin", &["get", object, "-n", NAMESPACE])
                .unwrap(),
            &format!("{object} exists"),
        );
    }
    let out = cp
        .kubectl(
            "admin",
            &[
                "get",
                "configmap/quotestream-dashboard",
                "-n",
                NAMESPACE,
                "-o",
                "json",
            ],
        )
        .unwrap();
    let cm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["quotestream.json"].as_str().unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "quotestream");

    // An upgrade re-renders with the stored values; uninstall keeps the CRD (crds/ is never
    // deleted by Helm) and so every QuoteStream users created, but removes the example.
    let chart = chart();
    let out = cp
        .helm(&[
            "upgrade",
            "quotestream",
            &chart,
            "-n",
            NAMESPACE,
            "--reuse-values",
            "--set",
            "replicaCount=3",
        ])
        .unwrap();
    ok(&out, "helm upgrade");
    let out = cp
        .kubectl(
            "admin",
            &[
                "get",
                "deployment/quotestream-operator",
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        )
        .unwrap();
    assert_eq!(text(&out), "3");
    ok(
        &cp.helm(&[
            "uninstall",
            "quotestream",
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout=60s",
        ])
        .unwrap(),
        "helm uninstall",
    );
    ok(
        &cp.kubectl("admin", &["get", "crd/quotestreams.quotes.opa.io"])
            .unwrap(),
        "the CRD survives helm uninstall",
    );
    let out = cp
        .kubectl(
            "admin",
            &[
                "get",
                "qs/demo",
                "-n",
                NAMESPACE,
                "--ignore-not-found",
                "-o",
                "name",
            ],
        )
        .unwrap();
    ok(&out, "get qs/demo");
    assert_eq!(text(&out).trim(), "", "the example belongs to the release");
}

/// The field the CRD gains in the upgrade test: any optional field the operator's CRD has.
const GAINED: &str = "priorityClassName";
const CRD: &str = "crd/quotestreams.quotes.opa.io";

/// A copy of the chart as an older release would ship it: version 0.0.9, and a CRD without
/// `spec.worker.priorityClassName`.
fn older_chart(dir: &Path) -> String {
    let old = dir.join("quotestream");
    copy_dir(&repo().join("charts/quotestream"), &old);
    let chart_yaml = std::fs::read_to_string(old.join("Chart.yaml")).unwrap();
    std::fs::write(
        old.join("Chart.yaml"),
        chart_yaml.replacen("\nversion: 0.1.0\n", "\nversion: 0.0.9\n", 1),
    )
    .unwrap();
    let path = old.join("crds/quotestream.yaml");
    let mut crd: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for version in crd["spec"]["versions"].as_sequence_mut().unwrap() {
        let worker = &mut version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["worker"]["properties"];
        let removed = worker.as_mapping_mut().unwrap().remove(GAINED);
        assert!(removed.is_some(), "the CRD has spec.worker.{GAINED}");
    }
    std::fs::write(&path, serde_yaml::to_string(&crd).unwrap()).unwrap();
    old.display().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Whether the API server accepts a QuoteStream using `spec.worker.priorityClassName`
/// (server-side dry run; kubectl asks for strict field validation, so an unknown field is an
/// error, not silently pruned). Returns kubectl's answer too.
fn gained_field_is_served(cp: &ControlPlane) -> (bool, String) {
    let qs = json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": "upgraded", "namespace": "default"},
        "spec": {"tickers": ["AAPL"], "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}},
                 "worker": {GAINED: "market-data"}}
    });
    let out = cp
        .kubectl_with_input(
            "admin",
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            Some(&qs.to_string()),
        )
        .unwrap();
    (out.status.success(), text(&out))
}

/// `helm show crds CHART`: the CRD this chart ships.
fn chart_crds(cp: &ControlPlane) -> String {
    let out = cp.helm(&["show", "crds", &chart()]).unwrap();
    ok(&out, "helm show crds");
    String::from_utf8(out.stdout).unwrap()
}

/// The check the chart's NOTES and README give, as documented: `helm show crds CHART |
/// kubectl diff --server-side --force-conflicts --field-manager=quotestream-operator -f -`
/// exits 0 when the served CRD is the chart's, 1 when it differs.
fn crd_diff(cp: &ControlPlane) -> (Option<i32>, String) {
    let out = cp
        .kubectl_with_input(
            "admin",
            &[
                "diff",
                "--server-side",
                "--force-conflicts",
                "--field-manager=quotestream-operator",
                "-f",
                "-",
            ],
            Some(&chart_crds(cp)),
        )
        .unwrap();
    (out.status.code(), text(&out))
}

#[test]
fn helm_upgrade_leaves_the_crd_and_the_upgraded_operator_applies_the_new_one() {
    let cp = ControlPlane::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    install_chart(&cp, &older_chart(dir.path()), &[]);
    let crd_before = eventually("the older CRD", WAIT, String::new, || {
        get_json(&cp, &["get", CRD])
    });
    let (served, answer) = gained_field_is_served(&cp);
    assert!(
        !served && answer.contains(GAINED),
        "the older CRD does not know spec.worker.{GAINED}: {answer}"
    );

    // helm upgrade to this chart: Helm never touches crds/ on an upgrade.
    let chart = chart();
    let out = cp
        .helm(&[
            "upgrade",
            "quotestream",
            &chart,
            "-n",
            NAMESPACE,
            "--wait=false",
        ])
        .unwrap();
    ok(&out, "helm upgrade");
    // Its NOTES give the check run below (crd_diff), word for word.
    assert!(
        text(&out).contains(
            "helm show crds CHART --version 0.1.0 | kubectl diff --server-side --force-conflicts --field-manager=quotestream-operator -f -"
        ),
        "{}",
        text(&out)
    );
    let crd_after = get_json(&cp, &["get", CRD]).unwrap();
    assert_eq!(
        crd_after["metadata"]["resourceVersion"], crd_before["metadata"]["resourceVersion"],
        "helm upgrade left the CRD untouched"
    );
    assert!(!gained_field_is_served(&cp).0, "still the older CRD");
    let (code, diff) = crd_diff(&cp);
    assert!(
        code == Some(1) && diff.contains(GAINED),
        "kubectl diff shows that the served CRD is not the chart's: {code:?} {diff}"
    );
    // The documented manual path (crds.applyByOperator=false) is accepted over Helm's fields.
    let out = cp
        .kubectl_with_input(
            "admin",
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(&chart_crds(&cp)),
        )
        .unwrap();
    ok(
        &out,
        "helm show crds | kubectl apply --server-side --force-conflicts -f -",
    );

    // The upgraded operator, with the arguments and the RBAC of the upgraded release (no
    // kubelet here: the process stands in for the new pod), applies its CRD at start.
    let args: Vec<String> = serde_json::from_value(
        get_json(
            &cp,
            &["get", "deployment/quotestream-operator", "-n", NAMESPACE],
        )
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["args"]
            .clone(),
    )
    .unwrap();
    assert!(args.iter().any(|a| a == "--apply-crd"), "{args:?}");
    let mut operator = Operator::start(&cp, "operator", "quotestream-operator-new", &args);
    operator.wait_ready();
    let served = eventually(
        &format!("spec.worker.{GAINED} served"),
        WAIT,
        || format!("operator log:\n{}", operator.log()),
        || {
            let (served, answer) = gained_field_is_served(&cp);
            served.then_some(answer)
        },
    );
    assert!(served.contains("(server dry run)"), "{served}");
    let (code, diff) = crd_diff(&cp);
    assert_eq!(code, Some(0), "the served CRD is the chart's: {diff}");
    let crd = get_json(&cp, &["get", CRD, "--show-managed-fields"]).unwrap();
    let managers: Vec<&str> = crd["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"quotestream-operator"),
        "the operator applied it: {managers:?}"
    );
}

#[test]
fn the_operator_gets_exactly_the_rights_it_needs_cluster_wide() {
    let cp = ControlPlane::start().unwrap();
    install(&cp, &["example.enabled=true"]);
    let n_default: &[&str] = &["-n", "default"];
    let n_release: &[&str] = &["-n", NAMESPACE];
    let all: &[&str] = &["-A"];
    let cluster: &[&str] = &[];
    let status: &[&str] = &["-n", "default", "--subresource=status"];
    let scale: &[&str] = &["-n", "default", "--subresource=scale"];
    let mut cases: Vec<(&str, &str, &[&str], bool)> = Vec::new();
    for verb in ["get", "list", "watch"] {
        cases.push((verb, "quotestreams.quotes.opa.io", n_default, true));
        cases.push((verb, "quotestreams.quotes.opa.io", all, true));
    }
    for verb in ["get", "patch", "update"] {
        cases.push((verb, "quotestreams.quotes.opa.io", status, true));
    }
    cases.push(("get", "quotestreams.quotes.opa.io", scale, true));
    for resource in ["deployments.apps", "configmaps"] {
        for verb in [
            "get", "list", "watch", "create", "patch", "update", "delete",
        ] {
            cases.push((verb, resource, n_default, true));
        }
        cases.push(("deletecollection", resource, n_default, false));
    }
    // spec.history: the backfill Jobs, and a failed one's pods for its termination message.
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        cases.push((verb, "jobs.batch", n_default, true));
    }
    cases.push(("update", "jobs.batch", n_default, false));
    cases.push(("deletecollection", "jobs.batch", n_default, false));
    cases.push(("create", "cronjobs.batch", n_default, false));
    for resource in ["events", "events.events.k8s.io"] {
        cases.push(("create", resource, n_default, true));
        cases.push(("patch", resource, n_default, true));
        cases.push(("delete", resource, n_default, false));
    }
    cases.push(("create", "leases.coordination.k8s.io", n_release, true));
    for verb in ["get", "update", "patch"] {
        let own = "leases.coordination.k8s.io/quotestream-operator";
        cases.push((verb, own, n_release, true));
        // Limited by name: not every Lease of the namespace (kube-controller-manager's, …).
        cases.push((
            verb,
            "leases.coordination.k8s.io/someone-elses-lease",
            n_release,
            false,
        ));
    }
    cases.extend([
        // No spec writes, no deletion of user objects: ownerReferences + GC do the cleanup.
        ("update", "quotestreams.quotes.opa.io", n_default, false),
        ("patch", "quotestreams.quotes.opa.io", n_default, false),
        ("delete", "quotestreams.quotes.opa.io", n_default, false),
        ("patch", "quotestreams.quotes.opa.io", scale, false),
        // The Secret policy reads one named Secret's labels: get, never list or watch.
        ("get", "secrets", n_default, true),
        ("list", "secrets", all, false),
        ("watch", "secrets", all, false),
        ("update", "secrets", n_default, false),
        // Pods are read (a backfill Job's or a worker's termination message), never written.
        ("list", "pods", n_default, true),
        ("watch", "pods", n_default, true),
        ("create", "pods", n_default, false),
        ("delete", "pods", n_default, false),
        ("patch", "pods", n_default, false),
        ("patch", "pods", status, false),
        ("create", "pods/exec", n_default, false),
        ("delete", "namespaces", cluster, false),
        (
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            cluster,
            false,
        ),
        (
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            n_default,
            false,
        ),
        ("list", "leases.coordination.k8s.io", n_release, false),
        ("get", "leases.coordination.k8s.io", n_default, false),
        ("delete", "leases.coordination.k8s.io", n_release, false),
        ("create", "statefulsets.apps", n_default, false),
        (
            "list",
            "customresourcedefinitions.apiextensions.k8s.io",
            cluster,
            false,
        ),
        ("impersonate", "users", cluster, false),
        ("*", "*", cluster, false),
    ]);
    assert_rights(&cp, &cases);

    // --apply-crd: its own CRD only (by name).
    let crd = "customresourcedefinitions.apiextensions.k8s.io";
    for (verb, name, want) in [
        ("patch", "quotestreams.quotes.opa.io", true),
        ("get", "quotestreams.quotes.opa.io", true),
        ("patch", "servicemonitors.monitoring.coreos.com", false),
        ("delete", "quotestreams.quotes.opa.io", false),
    ] {
        assert_eq!(
            can_i(&cp, verb, &format!("{crd}/{name}"), cluster),
            want,
            "{verb} {crd}/{name}"
        );
    }

    // Real requests as the operator, the way it makes them (server-side apply).
    let out = cp
        .kubectl(
            "operator",
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=quotestream-operator",
                "-f",
                &repo().join("crds/quotestream.yaml").display().to_string(),
            ],
        )
        .unwrap();
    ok(
        &out,
        "the operator server-side-applies its CRD (--apply-crd)",
    );
    let lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: quotestream-operator\n  namespace: quotestream-system\nspec:\n  holderIdentity: quotestream-operator-0\n  leaseDurationSeconds: 15\n";
    let out = cp
        .kubectl_with_input(
            "operator",
            &[
                "apply",
                "--server-side",
                "--field-manager=quotestream-operator",
                "-f",
                "-",
            ],
            Some(lease),
        )
        .unwrap();
    ok(&out, "the operator creates and renews its Lease");
    let shard_cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo-shard-0\n  namespace: quotestream-system\n  labels: {quotes.opa.io/stream: demo, quotes.opa.io/shard: \"0\"}\ndata:\n  worker.json: \"{}\"\n";
    let out = cp
        .kubectl_with_input(
            "operator",
            &[
                "apply",
                "--server-side",
                "--field-manager=quotestream-operator",
                "-f",
                "-",
            ],
            Some(shard_cm),
        )
        .unwrap();
    ok(&out, "the operator applies a shard ConfigMap");
    let out = cp
        .kubectl(
            "operator",
            &[
                "patch",
                "qs/demo",
                "-n",
                NAMESPACE,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"readyShards":0}}"#,
            ],
        )
        .unwrap();
    ok(&out, "the operator patches a QuoteStream's status");
    let out = cp
        .kubectl("operator", &["get", "secrets", "-n", NAMESPACE])
        .unwrap();
    assert!(
        !out.status.success() && text(&out).contains("forbidden"),
        "the operator must not read Secrets by default: {}",
        text(&out)
    );
}

#[test]
fn with_watch_namespace_the_operator_is_confined_to_it() {
    let cp = ControlPlane::start().unwrap();
    ok(
        &cp.kubectl("admin", &["create", "namespace", "markets"])
            .unwrap(),
        "create ns markets",
    );
    install(&cp, &["watchNamespace=markets"]);
    let markets: &[&str] = &["-n", "markets"];
    let other: &[&str] = &["-n", "default"];
    let status: &[&str] = &["-n", "markets", "--subresource=status"];
    let release: &[&str] = &["-n", NAMESPACE];
    let all: &[&str] = &["-A"];
    let mut cases: Vec<(&str, &str, &[&str], bool)> = vec![
        ("list", "quotestreams.quotes.opa.io", markets, true),
        ("watch", "quotestreams.quotes.opa.io", markets, true),
        ("patch", "quotestreams.quotes.opa.io", status, true),
        ("create", "deployments.apps", markets, true),
        ("delete", "configmaps", markets, true),
        ("create", "jobs.batch", markets, true),
        ("create", "events.events.k8s.io", markets, true),
        // No Secrets, not even in the watched namespace: the operator never reads one.
        ("get", "secrets", markets, true),
        ("list", "secrets", markets, false),
        (
            "patch",
            "leases.coordination.k8s.io/quotestream-operator",
            release,
            true,
        ),
        ("list", "quotestreams.quotes.opa.io", all, false),
    ];
    for (verb, resource) in [
        ("list", "quotestreams.quotes.opa.io"),
        ("get", "quotestreams.quotes.opa.io"),
        ("create", "deployments.apps"),
        ("get", "configmaps"),
        ("create", "jobs.batch"),
        ("create", "events"),
        ("get", "secrets"),
    ] {
        cases.push((verb, resource, other, false));
    }
    assert_rights(&cp, &cases);
}
