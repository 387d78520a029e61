//! A kubelet for tests, with the part of the Deployment controller that matters here. There is
//! no container runtime on this machine, so the pods that Deployments describe run as local
//! processes, built from the pod template the way kubelet reads it:
//!
//! - the container's `command` + `args`, the first word mapped to a local program (the
//!   "image"), in a clean environment (a pod does not inherit the test's variables);
//! - the environment: plain `value`s, and `valueFrom.secretKeyRef` / `configMapKeyRef` read
//!   from the API when the pod starts, as kubelet does (a missing required key keeps the pod
//!   from starting, with an event);
//! - ConfigMap volumes: a directory per volume, rewritten atomically (write, then rename) when
//!   the ConfigMap changes; paths under a mount path in env values and args are translated to
//!   that directory (what the mount namespace does for a container), refreshed every
//!   [`KubeletConfig::config_refresh`] (kubelet's periodic sync);
//! - pod objects: created from the template when the process starts, their status (Ready,
//!   `podIP` 127.0.0.1, the `http` port replaced by the process's own) written once the probe
//!   passes, deleted when the process is told to stop;
//! - the pod network: each pod gets a free loopback port, passed to the process with
//!   [`KubeletConfig::extra_args`]; the readiness probe's HTTP GET goes there;
//! - Deployment semantics: one pod per Deployment; a changed pod template rolls it
//!   (RollingUpdate: the new pod is ready before the old one gets SIGTERM; Recreate: the old one
//!   exits first); a deleted Deployment's pod gets SIGTERM, and SIGKILL after
//!   `terminationGracePeriodSeconds`; a process that exits by itself is restarted after a
//!   back-off; the Deployment status (replicas, updated, ready, available, observedGeneration)
//!   is written back, so the operator sees its workers' readiness.
//!
//! It polls the API every [`SYNC_EVERY`] rather than watching: simple, and every step is
//! bounded. Dropping the [`Kubelet`] kills what still runs and removes the pods' directories.

mod agent;
mod launch;
mod volume;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use agent::Agent;

/// How often the API is polled and the pods are reconciled.
pub const SYNC_EVERY: Duration = Duration::from_millis(200);
/// Bound of one API request.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Wait before a process that exited by itself is started again.
const CRASH_BACKOFF: Duration = Duration::from_secs(1);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// What the kubelet runs, and how.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub kubeconfig: PathBuf,
    pub namespace: String,
    /// Label selector of the Deployments whose pods run here.
    pub selector: String,
    /// The container command's first word → the local program it stands for.
    pub programs: BTreeMap<String, PathBuf>,
    /// Arguments appended to the command, given the pod's port: what a pod gets from its own
    /// network namespace (its port is free) has to be told to a local process.
    pub extra_args: fn(u16) -> Vec<String>,
    /// How often changed ConfigMaps reach the mounted volumes: kubelet's periodic sync
    /// (`syncFrequency`, 1 min by default), at least one [`SYNC_EVERY`].
    pub config_refresh: Duration,
}

/// Why a pod's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Its Deployment was deleted (or is being deleted).
    Deleted,
    /// Its Deployment's template changed and the new pod took over.
    Replaced,
    /// Its Deployment was scaled to 0.
    ScaledDown,
    /// It exited without being asked to.
    Crashed,
    /// The kubelet was dropped while it ran.
    KubeletStopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodExit {
    pub reason: StopReason,
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Whether it had to be SIGKILLed (grace period over, or the kubelet stopped).
    pub killed: bool,
    /// From SIGTERM to exit.
    pub after_sigterm: Option<Duration>,
}

/// One pod, running or ended.
#[derive(Debug, Clone)]
pub struct Pod {
    /// `<deployment>-<n>`, `n` counting every pod this kubelet started.
    pub name: String,
    pub deployment: String,
    /// The pod template's annotations when it started.
    pub annotations: BTreeMap<String, String>,
    pub pid: u32,
    pub port: u16,
    pub started: Instant,
    /// When its readiness probe first passed.
    pub ready_at: Option<Instant>,
    /// How often a mounted ConfigMap was rewritten while it ran.
    pub config_updates: u32,
    pub exit: Option<PodExit>,
}

#[derive(Debug, Default)]
struct Node {
    pods: Vec<Pod>,
    events: Vec<String>,
}

fn lock(node: &Mutex<Node>) -> MutexGuard<'_, Node> {
    // A panic elsewhere must not hide what the kubelet saw.
    node.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn event(node: &Mutex<Node>, message: String) {
    let mut n = lock(node);
    if !n.events.contains(&message) {
        n.events.push(message);
    }
}

/// A running kubelet; see the module documentation.
#[derive(Debug)]
pub struct Kubelet {
    node: Arc<Mutex<Node>>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
    // Dropped after the thread has ended (Drop::drop runs first): the pods' volumes and logs.
    root: tempfile::TempDir,
}

impl Kubelet {
    /// Starts polling the API on a thread of its own. Failures (the API unreachable, a Secret
    /// missing) are [`Kubelet::events`], as a kubelet reports them.
    pub fn start(config: KubeletConfig) -> std::io::Result<Self> {
        let root = tempfile::Builder::new().prefix("qs-kubelet-").tempdir()?;
        let node = Arc::new(Mutex::new(Node::default()));
        let stop = CancellationToken::new();
        let thread = std::thread::Builder::new().name("kubelet".into()).spawn({
            let (node, stop, dir) = (node.clone(), stop.clone(), root.path().to_owned());
            move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return event(&node, format!("kubelet runtime: {e}")),
                };
                rt.block_on(async move {
                    match Agent::connect(config, dir, node.clone()).await {
                        Ok(agent) => agent.run(stop).await,
                        Err(e) => event(&node, e),
                    }
                });
            }
        })?;
        Ok(Self {
            node,
            stop,
            thread: Some(thread),
            root,
        })
    }

    /// Every pod started so far, running or ended, in start order.
    pub fn pods(&self) -> Vec<Pod> {
        lock(&self.node).pods.clone()
    }

    /// The pods whose process still runs (terminating ones included).
    pub fn running(&self) -> Vec<Pod> {
        self.pods()
            .into_iter()
            .filter(|p| p.exit.is_none())
            .collect()
    }

    /// What went wrong or was noteworthy (start failures, crashes, SIGKILLs), without repeats.
    pub fn events(&self) -> Vec<String> {
        lock(&self.node).events.clone()
    }

    /// The output of a pod's process.
    pub fn log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.root.path().join(pod).join("container.log"))
            .unwrap_or_default()
    }

    /// Pods, events and the end of each pod's log, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::from("kubelet pods:\n");
        for p in self.pods() {
            out.push_str(&format!(
                "  {} pid {} port {} ready {} config updates {} exit {:?}\n",
                p.name,
                p.pid,
                p.port,
                p.ready_at.is_some(),
                p.config_updates,
                p.exit
            ));
            let log = self.log(&p.name);
            let lines: Vec<&str> = log.lines().collect();
            for line in &lines[lines.len().saturating_sub(8)..] {
                out.push_str(&format!("    | {line}\n"));
            }
        }
        out.push_str(&format!("kubelet events: {:#?}\n", self.events()));
        out
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An API call, bounded by [`API_TIMEOUT`], its error naming what failed.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {API_TIMEOUT:?}")),
    }
}
