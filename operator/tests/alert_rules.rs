//! The alerting rules the chart ships (`charts/quotestream/files/alerts/quotestream-rules.yaml`,
//! rendered as a PrometheusRule with `prometheusRule.enabled`), checked by Prometheus' own rule
//! engine: `promtool check rules` parses every expression and template, and `promtool test
//! rules` runs `tests/testdata/alerts.test.yaml` — each alert fires on the failure it describes,
//! with its labels and rendered text, and stays silent on its healthy neighbours. Then, without
//! Prometheus: every metric an expression reads is one a component registers (a renamed metric
//! would leave an alert that can never fire), and docs/alerts.md explains every alert.
//!
//! promtool comes from Debian's `prometheus` package, which `make deps` installs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rules_file() -> PathBuf {
    repo().join("charts/quotestream/files/alerts/quotestream-rules.yaml")
}

fn tests_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/alerts.test.yaml")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every alerting rule of the file: (name, rule).
fn alerts() -> Vec<(String, Value)> {
    let rules = yaml(&rules_file());
    let groups = rules["groups"].as_sequence().expect("a `groups` list");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| Some((r["alert"].as_str()?.to_owned(), r)))
        .collect()
}

/// Runs `promtool <command> rules <file>`, asserts it succeeded, returns what it printed.
fn promtool(command: &str, file: &Path) -> String {
    let out: Output = Command::new("promtool")
        .args([command, "rules"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool could not run ({e}): `make deps` installs it (Debian package prometheus)"
            )
        });
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {command} rules {}:\n{printed}",
        file.display()
    );
    printed
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let checked = promtool("check", &rules_file());
    let count = alerts().len();
    assert!(
        checked.contains(&format!("SUCCESS: {count} rules found")),
        "promtool saw a different number of rules than the {count} alerts:\n{checked}"
    );
    promtool("test", &tests_file());
}

#[test]
fn every_alert_has_a_test_where_it_fires() {
    let tests = yaml(&tests_file());
    let mut fired = BTreeSet::new();
    for case in tests["tests"].as_sequence().expect("a `tests` list") {
        for check in case["alert_rule_test"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
        {
            let expected = check["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty());
            if expected {
                fired.insert(check["alertname"].as_str().unwrap().to_owned());
            }
        }
    }
    for (name, _) in alerts() {
        assert!(
            fired.contains(&name),
            "no case in {} expects {name} to fire",
            tests_file().display()
        );
    }
}

/// Identifiers in a PromQL expression that look like the components' metric names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            ["streamer_", "redis_", "quotestream_", "quotestore_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[test]
fn every_metric_the_rules_read_is_one_a_component_registers() {
    // The names as registered: string literals of the three metrics modules.
    let sources: String = [
        "operator/src/metrics.rs",
        "worker/src/metrics.rs",
        "store/src/metrics.rs",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(repo().join(f)).unwrap())
    .collect();
    for (name, rule) in alerts() {
        let expr = rule["expr"].as_str().unwrap();
        let read = metric_names(expr);
        assert!(!read.is_empty(), "{name} reads none of our metrics: {expr}");
        for metric in read {
            assert!(
                sources.contains(&format!("\"{metric}\"")),
                "{name} reads {metric}, which no component registers: {expr}"
            );
        }
    }
}

#[test]
fn every_alert_is_explained_in_the_docs_and_links_there() {
    let docs = std::fs::read_to_string(repo().join("docs/alerts.md")).unwrap();
    let headings: BTreeSet<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .collect();
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    for (name, rule) in &alerts {
        assert!(
            headings.contains(name.as_str()),
            "docs/alerts.md has no `### {name}` section"
        );
        assert_eq!(
            rule["annotations"]["runbook"].as_str(),
            Some(format!("docs/alerts.md#{}", name.to_lowercase()).as_str()),
            "{name}'s runbook annotation must point at its section"
        );
        let severity = rule["labels"]["severity"].as_str().unwrap();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity}"
        );
        let row = format!("| [{name}](#{}) | {severity} |", name.to_lowercase());
        assert!(docs.contains(&row), "docs/alerts.md's table lacks `{row}`");
    }
    // The counts the docs give.
    let count = names.len();
    assert!(
        docs.contains(&format!("{count} alerts in three groups")),
        "docs/alerts.md must say there are {count} alerts"
    );
    let chart_readme =
        std::fs::read_to_string(repo().join("charts/quotestream/README.md")).unwrap();
    assert!(
        chart_readme.contains(&format!("{count} alerts on the operator")),
        "charts/quotestream/README.md must say there are {count} alerts"
    );
    for heading in headings.iter().filter(|h| h.starts_with("Quote")) {
        assert!(
            names.contains(heading),
            "docs/alerts.md explains {heading}, which is no alert of the rule file"
        );
    }
}
