//! The operator binary as a process against a test control plane: started with an identity's
//! kubeconfig and a free loopback port for its endpoints, its log in a file, SIGKILLed and
//! reaped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use quotestream_testkit::{ControlPlane, free_port, http_get, spawn_logged, wait_until};

use super::cluster::WAIT;

/// The worker image the tests' operators put in shard Deployments (nothing pulls it).
pub const TEST_WORKER_IMAGE: &str = "registry.local/quotestream-worker:test";
/// SIGTERM: the controller drains, the Lease is released, the process exits.
const STOP: Duration = Duration::from_secs(15);

/// One operator process.
#[derive(Debug)]
pub struct Operator {
    child: Option<Child>,
    pub name: String,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// `quotestream-operator run --worker-image TEST_WORKER_IMAGE` as admin, all namespaces, no
    /// leader election: the operator the reconcile tests talk to.
    ///
    /// These tests run no pods (Deployments are reported ready by hand), so nothing could
    /// acknowledge a hand-over: `--handover-timeout=0s` releases on readiness, as documented.
    pub fn admin(cp: &ControlPlane) -> Self {
        let args = [
            "run",
            "--worker-image",
            TEST_WORKER_IMAGE,
            "--handover-timeout=0s",
        ]
        .map(String::from);
        Self::start(cp, "admin", "quotestream-operator-test", &args)
    }

    /// [`Operator::admin`] with the default acknowledged hand-over: for tests whose kubelet
    /// runs worker pods that answer `/assignment`.
    pub fn admin_acknowledging(cp: &ControlPlane) -> Self {
        let args = ["run", "--worker-image", TEST_WORKER_IMAGE].map(String::from);
        Self::start(cp, "admin", "quotestream-operator-test", &args)
    }

    /// Starts the binary as `identity` (a kubeconfig of the control plane) with `args` (any
    /// `--listen` is replaced by a free loopback port), `POD_NAME=name` and
    /// `POD_NAMESPACE=quotestream-system`, as the chart's pod would get them.
    pub fn start(cp: &ControlPlane, identity: &str, name: &str, args: &[String]) -> Self {
        Self::start_with_kubeconfig(&cp.kubeconfig(identity), name, args)
    }

    /// [`Operator::start`] with a kubeconfig of the test's own (e.g. one that reaches the API
    /// server through a [`super::partition::Partition`]).
    pub fn start_with_kubeconfig(
        kubeconfig: &std::path::Path,
        name: &str,
        args: &[String],
    ) -> Self {
        let port = free_port().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let mut all: Vec<String> = args
            .iter()
            .filter(|a| !a.starts_with("--listen"))
            .cloned()
            .collect();
        all.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quotestream-operator"));
        cmd.args(&all)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", "quotestream-system")
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1") // a log file, not a terminal
            .env_remove("WATCH_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST");
        let child = spawn_logged(&mut cmd, &log).unwrap();
        Self {
            child: Some(child),
            name: name.to_owned(),
            port,
            log,
            _dir: dir,
        }
    }

    /// The process id (to read its /proc entries).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The whole log.
    pub fn full_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the log, for failure messages.
    pub fn log(&self) -> String {
        let text = self.full_log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// GET on the operator's endpoint server: (status, body), or None while nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// The `/metrics` text, once it answers 200.
    pub fn metrics(&self) -> Option<String> {
        self.get("/metrics")
            .and_then(|(status, body)| (status == 200).then_some(body))
    }

    /// `quotestream_leader` on /metrics (None while the endpoint does not answer).
    pub fn leader_gauge(&self) -> Option<i64> {
        metric(&self.metrics()?, "quotestream_leader").map(|v| v as i64)
    }

    /// Waits until `/readyz` answers 200 (the API server answered and the CRD is installed).
    pub fn wait_ready(&mut self) {
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

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "{} exited early ({status}); log:\n{}",
                self.name,
                self.log()
            );
        }
    }

    pub fn sigkill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn sigterm(&mut self) -> ExitStatus {
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

/// The value of the first sample whose name and labels start with `series`
/// (e.g. `quotestream_leader` or `quotestream_reconciles_total{result="ok"`).
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{', ',', '}']))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
