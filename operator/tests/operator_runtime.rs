//! The operator binary as it runs in a cluster, on a real kube-apiserver: under exactly the RBAC
//! the Helm chart grants and with the arguments the chart's Deployment passes it reconciles a
//! QuoteStream (shard objects, status, an Event) and serves its metrics and probes; with leader
//! election two replicas elect one leader, the standby takes over when the leader dies, and
//! SIGTERM stops either replica cleanly and releases the Lease.
//!
//! No kubelet runs here, so the operator runs as a local process with the ServiceAccount's
//! credentials (`cp.kubeconfig("operator")`) instead of in the chart's pod.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use quotestream_testkit::{ControlPlane, free_port, wait_until};
use serde_json::{Value, json};

const NAMESPACE: &str = "quotestream-system";
const LEASE: &str = "quotestream-operator";
const WAIT: Duration = Duration::from_secs(60);
/// Lease duration (15 s, run.rs) plus the standby's polling and a wide margin for a loaded
/// machine: a bound on correctness, not a performance measurement.
const FAILOVER: Duration = Duration::from_secs(45);
/// SIGTERM: the controller drains, the Lease is released, the process exits.
const STOP: Duration = Duration::from_secs(15);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", text(out));
}

/// A control plane with the chart installed (default values: cluster-wide RBAC, leader
/// election, --apply-crd). The chart's operator pods never start: there is no kubelet.
fn cluster_with_chart() -> ControlPlane {
    let cp = ControlPlane::start().unwrap();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/quotestream")
        .display()
        .to_string();
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

/// One operator process; SIGKILLed and reaped on drop.
struct Operator {
    child: Option<Child>,
    name: String,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts the binary as `identity` with `args` (any `--listen` is replaced by a free
    /// loopback port) and `POD_NAME=name`.
    fn start(cp: &ControlPlane, identity: &str, name: &str, args: &[String]) -> Self {
        let port = free_port().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let out = File::create(&log).unwrap();
        let mut all: Vec<String> = args
            .iter()
            .filter(|a| !a.starts_with("--listen"))
            .cloned()
            .collect();
        all.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
        let child = Command::new(env!("CARGO_BIN_EXE_quotestream-operator"))
            .args(&all)
            .env("KUBECONFIG", cp.kubeconfig(identity))
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            .env_remove("WATCH_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            name: name.to_owned(),
            port,
            log,
            _dir: dir,
        }
    }

    /// The operator's log, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// `quotestream_leader` on /metrics (None while the endpoint does not answer).
    fn leader_gauge(&self) -> Option<i64> {
        let (status, body) = self.get("/metrics")?;
        (status == 200).then_some(())?;
        metric(&body, "quotestream_leader").map(|v| v as i64)
    }

    fn wait_ready(&mut self) {
        let ready = wait_until(WAIT, || {
            self.assert_running();
            self.get("/readyz").is_some_and(|(s, _)| s == 200)
        });
        assert!(
            ready,
            "{}: /readyz not 200 within {WAIT:?}; log:\n{}",
            self.name,
            self.log()
        );
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "{} exited early ({status}); log:\n{}",
                self.name,
                self.log()
            );
        }
    }

    fn sigkill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -s TERM {}", child.id());
        let mut status = None;
        let exited = wait_until(STOP, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not exit within {STOP:?} of SIGTERM; log:\n{}",
                self.name,
                self.log()
            );
        }
        status.unwrap()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body), or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of the first sample whose name and labels start with `series`
/// (e.g. `quotestream_leader` or `quotestream_reconciles_total{result="ok"`).
fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{', ',', '}']))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls until `check` returns Some, or fails with `what` and `context()`.
fn eventually<T>(
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
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get_json(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = cp.kubectl("admin", &all).ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
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
    let out = cp
        .kubectl_with_input(
            "admin",
            &["apply", "--server-side", "-f", "-"],
            Some(&stream.to_string()),
        )
        .unwrap();
    ok(&out, &format!("apply QuoteStream {name}"));
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

    // Not one request was refused: the chart's RBAC is sufficient (a refusal would be logged
    // as "... is forbidden: User \"system:serviceaccount:...\" cannot VERB RESOURCE ...").
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
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
        "registry.local/quotestream-worker:test",
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
