//! A real Kubernetes control plane (kube-apiserver + etcd + garbage collector, built from the
//! official Go modules by tests/controlplane/build.sh) on free loopback ports, one per test that
//! asks for it, stopped on drop. `make controlplane` builds the binaries once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::process::Guarded;
use crate::{Result, TestkitError, io_err, wait_until};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What qs-controlplane writes to state.json once it is ready.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub kubernetes_version: String,
    #[serde(rename = "apiserverURL")]
    pub apiserver_url: String,
    pub admin_kubeconfig: PathBuf,
    pub kubeconfigs: HashMap<String, PathBuf>,
    pub controllers: Vec<String>,
}

#[derive(Debug)]
pub struct ControlPlane {
    process: Guarded,
    bin: PathBuf,
    state: State,
    // Dropped after the process (field order): the server must be gone before its dir.
    _dir: tempfile::TempDir,
}

/// The directory holding qs-controlplane, kubectl and helm (`QS_CP_BIN` overrides it).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("QS_CP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/controlplane/bin")
        })
}

impl ControlPlane {
    /// Starts a control plane and waits until the API server is ready. qs-controlplane picks
    /// free ports by binding port 0 and releasing it, so a parallel test can take a port in
    /// between; such a start is retried (a few times, then the error stands).
    pub fn start() -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once() {
                Err(TestkitError::NotReady { log, .. })
                    if attempt < 4
                        && (log.contains("failed to listen")
                            || log.contains("address already in use")) =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    fn start_once() -> Result<Self> {
        let bin = bin_dir();
        let program = bin.join("qs-controlplane");
        if !program.is_file() {
            return Err(TestkitError::Missing {
                program: format!("{} (build it with `make controlplane`)", program.display()),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("qs-cp-")
            .tempdir()
            .map_err(io_err("creating a temp dir for the control plane"))?;
        let state_dir = dir.path().join("state");
        let mut cmd = Command::new(&program);
        cmd.arg("run").arg("--dir").arg(&state_dir);
        // SIGTERM: the control plane stops etcd and the API server cleanly.
        let mut process =
            Guarded::spawn_with_stop(cmd, &dir.path().join("controlplane.log"), "TERM")?;
        let ready_file = state_dir.join("ready");
        let ready = wait_until(READY_TIMEOUT, || process.exited() || ready_file.is_file());
        if !ready || process.exited() {
            return Err(TestkitError::NotReady {
                what: "qs-controlplane".into(),
                seconds: READY_TIMEOUT.as_secs(),
                log: tail(&process.log_text(), 40),
            });
        }
        let text = std::fs::read_to_string(state_dir.join("state.json"))
            .map_err(io_err("reading the control plane's state.json"))?;
        let state: State = serde_json::from_str(&text).map_err(|e| TestkitError::Failed {
            what: "parsing state.json".into(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            process,
            bin,
            state,
            _dir: dir,
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The kubeconfig of an identity: `admin`, `operator` (the operator's ServiceAccount) or
    /// `nobody` (authenticated, no RBAC bindings).
    pub fn kubeconfig(&self, identity: &str) -> PathBuf {
        if identity == "admin" {
            return self.state.admin_kubeconfig.clone();
        }
        self.state
            .kubeconfigs
            .get(identity)
            .cloned()
            .unwrap_or_else(|| self.state.admin_kubeconfig.clone())
    }

    /// Runs kubectl as `identity`.
    pub fn kubectl(&self, identity: &str, args: &[&str]) -> Result<Output> {
        self.kubectl_with_input(identity, args, None)
    }

    /// Runs kubectl as `identity` with `input` on standard input (`-f -`).
    pub fn kubectl_with_input(
        &self,
        identity: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<Output> {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.env("KUBECONFIG", self.kubeconfig(identity)).args(args);
        run(cmd, input)
    }

    /// Runs helm against this cluster as admin.
    pub fn helm(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(self.bin.join("helm"));
        cmd.env("KUBECONFIG", self.kubeconfig("admin"))
            .env("HELM_CACHE_HOME", self._dir.path().join("helm-cache"))
            .env("HELM_CONFIG_HOME", self._dir.path().join("helm-config"))
            .env("HELM_DATA_HOME", self._dir.path().join("helm-data"))
            .args(args);
        run(cmd, None)
    }

    /// Applies a CRD and waits until the API server serves it (Established).
    pub fn install_crd(&self, path: &Path) -> Result<()> {
        let file = path.display().to_string();
        let out = self.kubectl("admin", &["apply", "--server-side", "-f", &file])?;
        check(&out, "kubectl apply of the CRD")?;
        // Polled rather than `kubectl wait`, which fails outright while the CRD has no
        // conditions yet.
        // `..` matches both a single object and a List (a file with several CRDs).
        let jsonpath = r#"jsonpath={..status.conditions[?(@.type=="Established")].status}"#;
        let established = wait_until(READY_TIMEOUT, || {
            self.kubectl("admin", &["get", "-f", &file, "-o", jsonpath])
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("True")
                })
        });
        if established {
            return Ok(());
        }
        Err(TestkitError::NotReady {
            what: format!("CRD from {file} (Established)"),
            seconds: READY_TIMEOUT.as_secs(),
            log: String::new(),
        })
    }

    /// Whether the control plane process is still running.
    pub fn is_running(&mut self) -> bool {
        !self.process.exited()
    }
}

fn run(mut cmd: Command, input: Option<&str>) -> Result<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("running {:?}", cmd.get_program())))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(io_err("writing to kubectl"))?;
    }
    child
        .wait_with_output()
        .map_err(io_err("waiting for kubectl"))
}

/// Turns a failed command into an error carrying its stderr.
pub fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(TestkitError::Failed {
        what: what.to_owned(),
        detail: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
