//! The kubelet's loop: each sync lists the Deployments and ConfigMaps, then starts, rolls and
//! stops pods, refreshes their volumes, probes them and writes the Deployments' status.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod as ApiPod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::launch::{Launch, Proc};
use super::{
    CRASH_BACKOFF, KubeletConfig, Node, PROBE_TIMEOUT, Pod, PodExit, SYNC_EVERY, StopReason,
    bounded, event, lock,
};

/// The kubelet's loop state (on its own thread).
pub(super) struct Agent {
    config: KubeletConfig,
    root: PathBuf,
    node: Arc<Mutex<Node>>,
    deployments: Api<Deployment>,
    config_maps: Api<ConfigMap>,
    secrets: Api<Secret>,
    /// The pods' objects: what a kubelet reports about its pods (the operator reads their
    /// readiness, IP and port to ask a worker which ticker list it streams).
    pods: Api<ApiPod>,
    /// Pod objects to delete at the next sync (their process was told to stop, or ended).
    leaving: Vec<String>,
    /// When the mounted ConfigMaps were last refreshed.
    refreshed: Option<Instant>,
    procs: Vec<Proc>,
    started: u64,
    crashed: HashMap<String, Instant>,
    /// The last status written per Deployment uid.
    reported: HashMap<String, Value>,
}

impl Agent {
    pub(super) async fn connect(
        config: KubeletConfig,
        root: PathBuf,
        node: Arc<Mutex<Node>>,
    ) -> Result<Self, String> {
        quotestream_runtime::install_crypto_provider();
        let kubeconfig = Kubeconfig::read_from(&config.kubeconfig)
            .map_err(|e| format!("reading {}: {e}", config.kubeconfig.display()))?;
        let client_config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", config.kubeconfig.display()))?;
        let client =
            Client::try_from(client_config).map_err(|e| format!("Kubernetes client: {e}"))?;
        let ns = config.namespace.clone();
        Ok(Self {
            deployments: Api::namespaced(client.clone(), &ns),
            config_maps: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client.clone(), &ns),
            pods: Api::namespaced(client, &ns),
            leaving: Vec::new(),
            refreshed: None,
            config,
            root,
            node,
            procs: Vec::new(),
            started: 0,
            crashed: HashMap::new(),
            reported: HashMap::new(),
        })
    }

    pub(super) async fn run(mut self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.sync().await {
                self.event(e);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
        self.kill_all();
    }

    fn event(&self, message: String) {
        event(&self.node, message);
    }

    fn update_pod(&self, name: &str, f: impl FnOnce(&mut Pod)) {
        if let Some(p) = lock(&self.node).pods.iter_mut().find(|p| p.name == name) {
            f(p);
        }
    }

    async fn sync(&mut self) -> Result<(), String> {
        // The processes are looked after even when the API server does not answer.
        self.reap();
        self.enforce_grace();
        let by_label = ListParams::default().labels(&self.config.selector);
        let deployments = bounded("listing Deployments", self.deployments.list(&by_label))
            .await?
            .items;
        let maps: BTreeMap<String, ConfigMap> = bounded(
            "listing ConfigMaps",
            self.config_maps.list(&ListParams::default()),
        )
        .await?
        .items
        .into_iter()
        .map(|cm| (cm.name_any(), cm))
        .collect();

        let live: Vec<&Deployment> = deployments
            .iter()
            .filter(|d| d.metadata.deletion_timestamp.is_none())
            .collect();
        let gone: Vec<usize> = (0..self.procs.len())
            .filter(|&i| {
                let p = &self.procs[i];
                // A Deployment deleted and created again under the same name is another one.
                let exists = live
                    .iter()
                    .any(|d| d.name_any() == p.deployment && d.uid() == p.deployment_uid);
                p.stopping.is_none() && !exists
            })
            .collect();
        for i in gone {
            self.terminate(i, StopReason::Deleted);
        }
        // New pods start before the running ones' volumes are refreshed, as on a real node,
        // where a pod starts within seconds but a changed ConfigMap reaches a mounted volume
        // only at the next periodic sync (up to about a minute).
        for d in &live {
            self.reconcile(d, &maps).await;
        }
        self.delete_leaving().await;
        // Mounted ConfigMaps follow only every `config_refresh`, as kubelet's periodic sync.
        if self
            .refreshed
            .is_none_or(|at| at.elapsed() >= self.config.config_refresh)
        {
            self.refreshed = Some(Instant::now());
            self.refresh_volumes(&maps);
        }
        self.probe().await;
        self.report(&live).await;
        Ok(())
    }

    /// Records the processes that ended.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.procs.len() {
            let status = match self.procs[i].child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(e) => {
                    self.event(format!(
                        "{}: waiting for the process: {e}",
                        self.procs[i].pod
                    ));
                    i += 1;
                    continue;
                }
            };
            let p = self.procs.remove(i);
            self.leaving.push(p.pod.clone());
            let exit = PodExit {
                reason: p.stopping.map_or(StopReason::Crashed, |(_, r)| r),
                code: status.code(),
                killed: p.killed,
                after_sigterm: p.stopping.map(|(at, _)| at.elapsed()),
            };
            if exit.reason == StopReason::Crashed {
                self.crashed.insert(p.deployment.clone(), Instant::now());
                self.event(format!(
                    "{}: exited by itself ({status}); restarting",
                    p.pod
                ));
            }
            self.update_pod(&p.pod, |pod| pod.exit = Some(exit));
        }
    }

    /// One pod per Deployment, on its current template.
    async fn reconcile(&mut self, d: &Deployment, maps: &BTreeMap<String, ConfigMap>) {
        let name = d.name_any();
        let spec = &d.spec;
        let template = template_hash(&spec.template);
        let replicas = spec.replicas.unwrap_or(1);
        if replicas > 1 {
            self.event(format!(
                "{name}: {replicas} replicas; this kubelet runs one pod per Deployment"
            ));
        }
        let mine: Vec<usize> = (0..self.procs.len())
            .filter(|&i| self.procs[i].deployment == name)
            .collect();
        let active = |p: &Proc| p.stopping.is_none();
        let old: Vec<usize> = mine
            .iter()
            .copied()
            .filter(|&i| active(&self.procs[i]) && self.procs[i].template != template)
            .collect();
        if replicas == 0 {
            // terminate() skips the pods already stopping.
            for &i in &mine {
                self.terminate(i, StopReason::ScaledDown);
            }
            return;
        }
        // None: no pod on the current template yet; Some(ready) otherwise.
        let current = mine
            .iter()
            .map(|&i| &self.procs[i])
            .find(|p| active(p) && p.template == template)
            .map(|p| p.ready);
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        if recreate {
            // The old pod must be gone (not just told to go) before the new one starts.
            let any_old = mine.iter().any(|&i| self.procs[i].template != template);
            for &i in &old {
                self.terminate(i, StopReason::Replaced);
            }
            if current.is_none() && !any_old {
                self.start(d, template, maps).await;
            }
            return;
        }
        match current {
            None => self.start(d, template, maps).await,
            // maxSurge 1, maxUnavailable 0: the old pod goes once the new one is ready.
            Some(true) => {
                for &i in &old {
                    self.terminate(i, StopReason::Replaced);
                }
            }
            Some(false) => {}
        }
    }

    async fn start(&mut self, d: &Deployment, template: u64, maps: &BTreeMap<String, ConfigMap>) {
        let name = d.name_any();
        if self
            .crashed
            .get(&name)
            .is_some_and(|at| at.elapsed() < CRASH_BACKOFF)
        {
            return;
        }
        let pod = format!("{name}-{}", self.started + 1);
        let launch = Launch {
            config: &self.config,
            secrets: &self.secrets,
            root: &self.root,
        };
        match launch.spawn(d, &pod, template, maps).await {
            Ok(proc) => {
                let annotations = d
                    .spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.clone())
                    .unwrap_or_default();
                self.create_object(d, &pod, proc.port).await;
                lock(&self.node).pods.push(Pod {
                    name: pod,
                    deployment: name,
                    annotations,
                    pid: proc.child.id(),
                    port: proc.port,
                    started: Instant::now(),
                    ready_at: None,
                    config_updates: 0,
                    exit: None,
                });
                self.procs.push(proc);
                self.started += 1;
            }
            // Named by Deployment, so that the event is not repeated every sync.
            Err(e) => self.event(format!("{name}: pod not started: {e}")),
        }
    }

    /// SIGTERM, as kubelet stops a container; SIGKILL follows after the grace period.
    fn terminate(&mut self, i: usize, reason: StopReason) {
        let p = &mut self.procs[i];
        if p.stopping.is_some() {
            return;
        }
        p.stopping = Some((Instant::now(), reason));
        p.ready = false;
        // Its object goes at once (it has no node, so no graceful deletion): a terminating pod
        // acknowledges nothing.
        self.leaving.push(p.pod.clone());
        let sent = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            let pod = p.pod.clone();
            self.event(format!("{pod}: SIGTERM could not be sent"));
        }
    }

    fn enforce_grace(&mut self) {
        let mut killed = Vec::new();
        for p in &mut self.procs {
            if let Some((at, _)) = p.stopping
                && !p.killed
                && at.elapsed() > p.grace
            {
                let _ = p.child.kill();
                p.killed = true;
                killed.push(format!(
                    "{}: still running {:?} after SIGTERM; SIGKILLed",
                    p.pod, p.grace
                ));
            }
        }
        for message in killed {
            self.event(message);
        }
    }

    /// Rewrites the mounted ConfigMaps that changed (kubelet does it within about a minute;
    /// here within one sync). A deleted ConfigMap leaves the last content, as in kubelet.
    fn refresh_volumes(&mut self, maps: &BTreeMap<String, ConfigMap>) {
        let mut updated = Vec::new();
        let mut failed = Vec::new();
        for p in self.procs.iter_mut().filter(|p| p.stopping.is_none()) {
            for v in &mut p.volumes {
                let Some(cm) = maps.get(&v.config_map) else {
                    continue;
                };
                match v.write(cm) {
                    Ok(true) => updated.push(p.pod.clone()),
                    Ok(false) => {}
                    Err(e) => failed.push(format!("{}: {e}", p.pod)),
                }
            }
        }
        for pod in updated {
            self.update_pod(&pod, |p| p.config_updates += 1);
        }
        for message in failed {
            self.event(message);
        }
    }

    /// The readiness probe, until it first passes (a terminating pod is not ready).
    async fn probe(&mut self) {
        let mut ready = Vec::new();
        for p in self
            .procs
            .iter_mut()
            .filter(|p| !p.ready && p.stopping.is_none())
        {
            let ok = match &p.ready_path {
                Some(path) => http_ok(p.port, path).await,
                None => true,
            };
            if ok {
                p.ready = true;
                ready.push(p.pod.clone());
            }
        }
        for pod in ready {
            self.update_pod(&pod, |p| p.ready_at = Some(Instant::now()));
            self.report_ready(&pod).await;
        }
    }

    /// Creates the pod's object from the Deployment's template, its `http` port the one its
    /// process listens on (what the pod's own network namespace would give it).
    async fn create_object(&self, d: &Deployment, pod: &str, port: u16) {
        let template = serde_json::to_value(&d.spec.template).unwrap_or_default();
        let mut spec = template["spec"].clone();
        if let Some(containers) = spec["containers"].as_array_mut() {
            for c in containers {
                if let Some(ports) = c["ports"].as_array_mut() {
                    for p in ports.iter_mut().filter(|p| p["name"] == "http") {
                        p["containerPort"] = json!(port);
                    }
                }
            }
        }
        let object = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "labels": template["metadata"]["labels"],
                         "annotations": template["metadata"]["annotations"]},
            "spec": spec,
        });
        let object: ApiPod = match serde_json::from_value(object) {
            Ok(o) => o,
            Err(e) => return self.event(format!("{pod}: pod object: {e}")),
        };
        let params = PostParams::default();
        let call = self.pods.create(&params, &object);
        if let Err(e) = bounded(&format!("creating pod {pod}"), call).await {
            self.event(e);
        }
    }

    /// Writes a ready pod's status: running on loopback, Ready.
    async fn report_ready(&self, pod: &str) {
        let container = self
            .pods
            .get_opt(pod)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.spec)
            .and_then(|s| s.containers.into_iter().next());
        let Some(container) = container else {
            return;
        };
        let body = json!({"status": {
            "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
            "containerStatuses": [{"name": container.name, "image": container.image.unwrap_or_default(),
                                   "imageID": "", "ready": true, "restartCount": 0, "started": true,
                                   "state": {"running": {}}}],
        }});
        let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
        let call = self.pods.patch_status(pod, &params, &patch);
        if let Err(e) = bounded(&format!("writing the status of pod {pod}"), call).await {
            self.event(e);
        }
    }

    /// Deletes the objects of the pods that are stopping or stopped.
    async fn delete_leaving(&mut self) {
        for pod in std::mem::take(&mut self.leaving) {
            let params = DeleteParams::default();
            let call = self.pods.delete(&pod, &params);
            match bounded(&format!("deleting pod {pod}"), call).await {
                Ok(_) => {}
                Err(e) if e.contains("NotFound") || e.contains("not found") => {}
                Err(e) => self.event(e),
            }
        }
    }

    /// Writes each Deployment's status, as the Deployment controller does from its pods.
    async fn report(&mut self, live: &[&Deployment]) {
        for d in live {
            let (name, uid) = (d.name_any(), d.uid().unwrap_or_default());
            let spec = &d.spec;
            let template = template_hash(&spec.template);
            let active: Vec<&Proc> = self
                .procs
                .iter()
                .filter(|p| p.deployment == name && p.stopping.is_none())
                .collect();
            let updated = active.iter().filter(|p| p.template == template).count();
            let ready = active.iter().filter(|p| p.ready).count();
            let status = json!({
                "observedGeneration": d.metadata.generation,
                "replicas": active.len(),
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": ready,
            });
            if self.reported.get(&uid) == Some(&status) {
                continue;
            }
            let body = json!({ "status": status });
            let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
            let call = self.deployments.patch_status(&name, &params, &patch);
            match bounded(&format!("writing the status of {name}"), call).await {
                Ok(_) => {
                    self.reported.insert(uid, status);
                }
                Err(e) => self.event(e),
            }
        }
    }

    fn kill_all(&mut self) {
        for mut p in self.procs.drain(..) {
            let _ = p.child.kill();
            let status = p.child.wait().ok();
            let exit = PodExit {
                reason: p.stopping.map_or(StopReason::KubeletStopped, |(_, r)| r),
                code: status.and_then(|s| s.code()),
                killed: true,
                after_sigterm: p.stopping.map(|(at, _)| at.elapsed()),
            };
            let name = p.pod.clone();
            if let Some(pod) = lock(&self.node).pods.iter_mut().find(|x| x.name == name) {
                pod.exit = Some(exit);
            }
        }
    }
}

/// Identifies a pod template: any change rolls the Deployment, as its pod-template-hash does.
fn template_hash(template: &impl serde::Serialize) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(template)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// Whether `GET path` on the pod's port answers 200-399, kubelet's httpGet success range.
async fn http_ok(port: u16, path: &str) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(head)) => {
            let line = String::from_utf8_lossy(&head);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (200..400).contains(&code)
        }
        _ => false,
    }
}
