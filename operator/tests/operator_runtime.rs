//! The operator binary as it runs in a cluster, on a real kube-apiserver: under exactly the RBAC
//! the Helm chart grants and with the arguments the chart's Deployment passes it reconciles a
//! QuoteStream (shard objects, status, an Event) and serves its metrics and probes; with leader
//! election two replicas elect one leader, the standby takes over when the leader dies, and
//! SIGTERM stops either replica cleanly and releases the Lease; a leader cut off from the API
//! server (a proxy in between that stops passing bytes) steps down before its lease expires,
//! the standby takes over, and the cut-off replica leads again once it can reach the API server.
//!
//! No kubelet runs here, so the operator runs as a local process with the ServiceAccount's
//! credentials (`cp.kubeconfig("operator")`) instead of in the chart's pod.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::Duration;

use quotestream_testkit::ControlPlane;
use serde_json::{Value, json};
use support::cluster::{WAIT, apply, eventually, get_json, ok, repo};
use support::operator::{Operator, TEST_WORKER_IMAGE, metric};
use support::partition::Partition;

const NAMESPACE: &str = "quotestream-system";
const LEASE: &str = "quotestream-operator";
/// Lease duration (15 s, run.rs) plus the standby's polling and a wide margin for a loaded
/// machine: a bound on correctness, not a performance measurement.
const FAILOVER: Duration = Duration::from_secs(45);

/// A control plane with the chart installed (default values: cluster-wide RBAC, leader
/// election, --apply-crd). The chart's operator pods never start: there is no kubelet.
fn cluster_with_chart() -> ControlPlane {
    let cp = ControlPlane::start().unwrap();
    let chart = repo().join("charts/quotestream").display().to_string();
    let out = cp
        .helm(&[
            "install",
            "quotestream",
            &chart,
            "-n",
            NAMESPACE,
            "--create-namespace",
            "--wait=false",
            "--timeout=60s",
        ])
        .unwrap();
    ok(&out, "helm install");
    cp
}

/// The container args of the chart's operator Deployment, as the API server stored them.
fn chart_args(cp: &ControlPlane) -> Vec<String> {
    let out = cp
        .kubectl(
            "admin",
            &[
                "get",
                "deployment/quotestream-operator",
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].args}",
            ],
        )
        .unwrap();
    ok(&out, "the operator Deployment's args");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn lease_holder(cp: &ControlPlane) -> Option<String> {
    let lease = get_json(cp, &["get", "lease", LEASE, "-n", NAMESPACE])?;
    Some(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn apply_stream(cp: &ControlPlane, name: &str, shards: u32) {
    let stream = json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"tickers": ["AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META"], "shards": shards,
                 "interval": "1s", "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
    });
    apply(cp, &stream);
}

/// Names of the objects of `kind` labelled with stream `name` in `default`.
fn shard_objects(cp: &ControlPlane, kind: &str, name: &str) -> Vec<String> {
    let selector = format!("quotes.opa.io/stream={name}");
    get_json(cp, &["get", kind, "-n", "default", "-l", &selector])
        .and_then(|list| {
            list["items"].as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Waits until stream `name` has `shards` shard ConfigMaps and Deployments and a status that
/// lists them, and returns that status.
fn wait_reconciled(cp: &ControlPlane, op: &Operator, name: &str, shards: usize) -> Value {
    let context = || format!("operator {} log:\n{}", op.name, op.log());
    let expected: Vec<String> = (0..shards).map(|i| format!("{name}-shard-{i}")).collect();
    for kind in ["configmaps", "deployments"] {
        eventually(
            &format!("{name}: {shards} shard {kind}"),
            WAIT,
            context,
            || {
                let mut found = shard_objects(cp, kind, name);
                found.sort();
                (found == expected).then_some(())
            },
        );
    }
    eventually(
        &format!("{name}: status with {shards} shards"),
        WAIT,
        context,
        || {
            let qs = get_json(cp, &["get", "qs", name, "-n", "default"])?;
            (qs["status"]["shards"].as_array().map(Vec::len) == Some(shards))
                .then(|| qs["status"].clone())
        },
    )
}

#[test]
fn the_operator_runs_under_the_charts_rbac_and_serves_metrics() {
    let cp = cluster_with_chart();
    let args = chart_args(&cp);
    for expected in ["run", "--leader-election", "--apply-crd"] {
        assert!(
            args.iter().any(|a| a == expected),
            "chart args lack {expected}: {args:?}"
        );
    }
    // The ServiceAccount's own credentials: every request below is authorised by the chart's
    // ClusterRole/Role bindings and nothing else.
    let mut op = Operator::start(&cp, "operator", "quotestream-operator-0", &args);
    op.wait_ready();
    let (status, _) = op.get("/healthz").unwrap();
    assert_eq!(status, 200, "/healthz");

    apply_stream(&cp, "rbac", 2);
    let status = wait_reconciled(&cp, &op, "rbac", 2);
    assert_eq!(status["tickers"], 6, "{status}");
    assert_eq!(status["selector"], "quotes.opa.io/stream=rbac", "{status}");
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap_or_else(|| panic!("no Ready condition: {status}"));
    assert_eq!(
        ready["reason"], "ShardsStarting",
        "no kubelet: no worker is ready"
    );

    let context = || format!("operator log:\n{}", op.log());
    let event = eventually("a Created event on qs/rbac", WAIT, context, || {
        let events = get_json(
            &cp,
            &[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                "involvedObject.name=rbac",
            ],
        )?;
        events["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "Created")
            .cloned()
    });
    assert_eq!(event["type"], "Normal", "{event}");
    assert_eq!(event["involvedObject"]["kind"], "QuoteStream", "{event}");
    assert_eq!(
        event["reportingComponent"], "quotestream-operator",
        "{event}"
    );

    // The Lease the chart's Role allows (by name) is the one the operator took.
    assert_eq!(
        lease_holder(&cp).as_deref(),
        Some("quotestream-operator-0"),
        "Lease {NAMESPACE}/{LEASE} holder"
    );

    let (status, body) = op.get("/metrics").unwrap();
    assert_eq!(status, 200, "/metrics");
    let ok_reconciles = metric(&body, r#"quotestream_reconciles_total{result="ok""#);
    assert!(
        ok_reconciles.is_some_and(|n| n >= 1.0),
        "quotestream_reconciles_total{{result=\"ok\"}} after a reconcile:\n{body}"
    );
    assert!(
        metric(
            &body,
            r#"quotestream_reconcile_duration_seconds_count{result="ok""#
        )
        .is_some_and(|n| n >= 1.0),
        "quotestream_reconcile_duration_seconds:\n{body}"
    );
    assert_eq!(
        metric(
            &body,
            r#"quotestream_shards_desired{namespace="default",stream="rbac""#
        ),
        Some(2.0),
        "quotestream_shards_desired:\n{body}"
    );
    assert_eq!(
        metric(&body, "quotestream_leader"),
        Some(1.0),
        "quotestream_leader:\n{body}"
    );

    // The Secret policy under the chart's RBAC: a stream whose DSN comes from a labelled
    // Secret is reconciled (the operator read the Secret's metadata with its own `get`).
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "quotes-db", "namespace": "default",
                     "labels": {"quotes.opa.io/stream-access": "true"}},
        "stringData": {"dsn": "postgres://quotes@postgres:5432/quotes"}});
    apply(&cp, &secret);
    apply(
        &cp,
        &json!({
            "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
            "metadata": {"name": "withsecret", "namespace": "default"},
            "spec": {"tickers": ["AAPL"], "shards": 1, "interval": "1s", "source": {"type": "synthetic"},
                     "sinks": {"postgres": {"dsnSecretRef": {"name": "quotes-db", "key": "dsn"}}}}
        }),
    );
    wait_reconciled(&cp, &op, "withsecret", 1);

    // Not one request was refused: the chart's RBAC is sufficient (a refusal would be logged
    // as "... is forbidden: User \"system:serviceaccount:...\" cannot VERB RESOURCE ...").
    let log = op.full_log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused a request under the chart's RBAC:\n{log}"
    );
}

#[test]
fn a_standby_takes_over_when_the_leader_dies_and_sigterm_releases_the_lease() {
    let cp = cluster_with_chart();
    let args: Vec<String> = [
        "run",
        "--leader-election",
        "--lease-namespace",
        NAMESPACE,
        "--worker-image",
        TEST_WORKER_IMAGE,
    ]
    .map(String::from)
    .to_vec();
    let mut a = Operator::start(&cp, "operator", "operator-a", &args);
    let mut b = Operator::start(&cp, "operator", "operator-b", &args);
    // The standby is ready too (it is healthy and waiting for the lease): a two-replica
    // Deployment must become Available.
    a.wait_ready();
    b.wait_ready();

    let both = || {
        format!(
            "operator-a log:\n{}\n\noperator-b log:\n{}",
            a.log(),
            b.log()
        )
    };
    let (leader_is_a, holder) = eventually(
        "exactly one leader (quotestream_leader 1 on one, 0 on the other) named by the Lease",
        WAIT,
        both,
        || {
            let gauges = (a.leader_gauge()?, b.leader_gauge()?);
            let holder = lease_holder(&cp)?;
            match gauges {
                (1, 0) if holder == "operator-a" => Some((true, holder)),
                (0, 1) if holder == "operator-b" => Some((false, holder)),
                _ => None,
            }
        },
    );
    let (mut leader, mut standby) = if leader_is_a { (a, b) } else { (b, a) };
    assert_eq!(holder, leader.name);
    apply_stream(&cp, "before", 2);
    wait_reconciled(&cp, &leader, "before", 2);

    // The leader dies without releasing the Lease: the standby must wait for it to expire,
    // then take over.
    leader.sigkill();
    let context = || format!("standby {} log:\n{}", standby.name, standby.log());
    eventually(
        "the standby to become leader after the leader was killed",
        FAILOVER,
        context,
        || (standby.leader_gauge()? == 1 && lease_holder(&cp)? == standby.name).then_some(()),
    );
    standby.assert_running();
    apply_stream(&cp, "after", 3);
    wait_reconciled(&cp, &standby, "after", 3);

    // SIGTERM on a standby: it stops waiting for the lease and exits 0.
    let mut third = Operator::start(&cp, "operator", "operator-c", &args);
    third.wait_ready();
    assert_eq!(third.leader_gauge(), Some(0), "operator-c is a standby");
    let status = third.sigterm();
    assert!(
        status.success(),
        "standby exit after SIGTERM: {status}; log:\n{}",
        third.log()
    );

    // SIGTERM on the leader: the controller stops, the Lease is released (no holder, so the
    // next replica need not wait for it to expire), and the process exits 0.
    let status = standby.sigterm();
    assert!(
        status.success(),
        "leader exit after SIGTERM: {status}; log:\n{}",
        standby.log()
    );
    assert_eq!(
        lease_holder(&cp).as_deref(),
        Some(""),
        "the Lease is released on a graceful stop; leader log:\n{}",
        standby.log()
    );
}

/// Both replicas' logs, for failure messages.
fn logs(a: &Operator, b: &Operator) -> String {
    format!(
        "{} log:\n{}\n\n{} log:\n{}",
        a.name,
        a.log(),
        b.name,
        b.log()
    )
}

/// The time at the start of the first log line containing `needle` (the operator logs RFC 3339
/// times first), and the line.
fn logged_at(log: &str, needle: &str) -> Option<(jiff::Timestamp, String)> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let at = line.split_whitespace().next()?.parse().ok()?;
    Some((at, line.to_owned()))
}

/// The value of `field=value` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn a_leader_cut_off_from_the_api_server_steps_down_before_its_lease_expires() {
    let cp = cluster_with_chart();
    let args: Vec<String> = [
        "run",
        "--leader-election",
        "--lease-namespace",
        NAMESPACE,
        "--worker-image",
        TEST_WORKER_IMAGE,
    ]
    .map(String::from)
    .to_vec();
    // operator-a reaches the API server only through a proxy the test can cut.
    let apiserver = &cp.state().apiserver_url;
    let partition = Partition::start(apiserver.trim_start_matches("https://").parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("operator-a.kubeconfig");
    let original = std::fs::read_to_string(cp.kubeconfig("operator")).unwrap();
    assert!(original.contains(apiserver.as_str()), "{original}");
    std::fs::write(
        &kubeconfig,
        original.replace(apiserver.as_str(), &format!("https://{}", partition.addr)),
    )
    .unwrap();

    let mut a = Operator::start_with_kubeconfig(&kubeconfig, "operator-a", &args);
    a.wait_ready();
    eventually(
        "operator-a to lead",
        WAIT,
        || format!("operator-a log:\n{}", a.log()),
        || (a.leader_gauge()? == 1 && lease_holder(&cp)? == "operator-a").then_some(()),
    );
    let mut b = Operator::start(&cp, "operator", "operator-b", &args);
    b.wait_ready();
    assert_eq!(b.leader_gauge(), Some(0), "operator-b is a standby");
    // The leader exports the stream's series, the standby none.
    apply_stream(&cp, "before-partition", 2);
    wait_reconciled(&cp, &a, "before-partition", 2);
    let desired = "quotestream_shards_desired{namespace=\"default\",stream=\"before-partition\"}";
    eventually(
        "operator-a to export the stream's series",
        WAIT,
        || a.log(),
        || (metric(&a.metrics()?, desired)? == 2.0).then_some(()),
    );
    let standby = b.metrics().unwrap();
    assert!(
        !standby.contains("quotestream_shards_desired{"),
        "the standby exports stream series:\n{standby}"
    );

    // The partition: operator-a's requests hang, its renewals cannot reach the API server.
    let cut_at = jiff::Timestamp::now();
    partition.cut();
    eventually(
        "operator-a to step down",
        FAILOVER,
        || logs(&a, &b),
        || (a.leader_gauge()? == 0).then_some(()),
    );
    a.assert_running();
    let metrics = a.metrics().unwrap();
    assert_eq!(
        metric(
            &metrics,
            "quotestream_leader_step_downs_total{reason=\"not_renewed\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    // Stepped down, it no longer reports the streams (stale series would keep alerts firing).
    for series in [
        "quotestream_shards_desired{",
        "quotestream_shards_ready{",
        "quotestream_handover_pending_tickers{",
    ] {
        assert!(
            !metrics.contains(series),
            "operator-a still exports {series} after stepping down:\n{metrics}"
        );
    }
    assert_eq!(
        metric(&metrics, "quotestream_streams"),
        Some(0.0),
        "{metrics}"
    );
    eventually(
        "operator-b to take over",
        FAILOVER,
        || logs(&a, &b),
        || (b.leader_gauge()? == 1 && lease_holder(&cp)? == "operator-b").then_some(()),
    );
    apply_stream(&cp, "during-partition", 2);
    wait_reconciled(&cp, &b, "during-partition", 2);

    // operator-a stopped before its lease expired, so before operator-b could lead: never two
    // leaders. Both times come from the replicas' own log lines (one clock, this machine's).
    let (stepped_down, line) = logged_at(&a.full_log(), "leader lease not renewed")
        .unwrap_or_else(|| panic!("operator-a logs its step-down:\n{}", a.log()));
    let expires: jiff::Timestamp = field(&line, "lease_expires")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the step-down line names the lease's expiry: {line}"));
    assert!(
        stepped_down < expires,
        "operator-a stepped down at {stepped_down}, after its lease expired at {expires}: {line}"
    );
    let (b_leads, _) = logged_at(&b.full_log(), "leading: starting the controller")
        .unwrap_or_else(|| panic!("operator-b logs that it leads:\n{}", b.log()));
    assert!(
        stepped_down < b_leads,
        "operator-a stepped down at {stepped_down}, after operator-b began leading at {b_leads}"
    );
    eprintln!(
        "cut at {cut_at}; operator-a stepped down {:.1} s later, {:.1} s before its lease expired; operator-b led {:.1} s after the cut",
        (stepped_down - cut_at).total(jiff::Unit::Second).unwrap(),
        (expires - stepped_down).total(jiff::Unit::Second).unwrap(),
        (b_leads - cut_at).total(jiff::Unit::Second).unwrap(),
    );

    // The API server is reachable again: operator-a did not exit, stands by, and leads again
    // when the Lease is free (operator-b dies without releasing it).
    partition.heal();
    a.assert_running();
    b.sigkill();
    eventually(
        "operator-a to lead again after the partition healed and operator-b died",
        FAILOVER,
        || format!("operator-a log:\n{}", a.log()),
        || (a.leader_gauge()? == 1 && lease_holder(&cp)? == "operator-a").then_some(()),
    );
    apply_stream(&cp, "after-partition", 3);
    wait_reconciled(&cp, &a, "after-partition", 3);
    let status = a.sigterm();
    assert!(
        status.success(),
        "operator-a exit: {status}; log:\n{}",
        a.log()
    );
}
