//! Starting a pod: its process built from the pod template (command, resolved env, mounted
//! ConfigMaps, its own port), as kubelet builds a container.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Secret};
use kube::{Api, ResourceExt};

use super::volume::{Volume, mount_volumes, translate_path};
use super::{DEFAULT_GRACE, KubeletConfig, StopReason, bounded};

/// A pod's running process.
pub(super) struct Proc {
    pub(super) pod: String,
    pub(super) deployment: String,
    pub(super) deployment_uid: Option<String>,
    pub(super) template: u64,
    pub(super) child: Child,
    pub(super) port: u16,
    pub(super) ready_path: Option<String>,
    pub(super) ready: bool,
    pub(super) volumes: Vec<Volume>,
    pub(super) grace: Duration,
    pub(super) stopping: Option<(Instant, StopReason)>,
    pub(super) killed: bool,
}

/// What starting a pod needs from the kubelet.
pub(super) struct Launch<'a> {
    pub(super) config: &'a KubeletConfig,
    pub(super) secrets: &'a Api<Secret>,
    /// The kubelet's directory; each pod gets `<root>/<pod>`.
    pub(super) root: &'a Path,
}

impl Launch<'_> {
    /// Starts `pod` for `d` (whose pod template hashes to `template`). A Secret, ConfigMap or
    /// key that is missing fails it, as kubelet's CreateContainerConfigError or FailedMount
    /// would; the next sync tries again.
    pub(super) async fn spawn(
        &self,
        d: &Deployment,
        pod: &str,
        template: u64,
        maps: &BTreeMap<String, ConfigMap>,
    ) -> Result<Proc, String> {
        let spec = d
            .spec
            .template
            .spec
            .as_ref()
            .ok_or("the pod template has no spec")?;
        let [container] = spec.containers.as_slice() else {
            return Err(format!(
                "{} containers; this kubelet runs exactly one",
                spec.containers.len()
            ));
        };
        let command = container.command.clone().unwrap_or_default();
        let (program, command_args) = command
            .split_first()
            .ok_or("no command: image entrypoints are unknown here")?;
        let program = self
            .config
            .programs
            .get(program)
            .ok_or_else(|| format!("no local program stands for {program:?}"))?;

        let dir = self.root.join(pod);
        let (volumes, mounts) = mount_volumes(spec, container, &dir, maps)?;
        let translate = |s: &str| translate_path(s, &mounts);
        let mut env = Vec::new();
        for var in container.env.iter().flatten() {
            if let Some(value) = self.env_value(var, maps).await? {
                env.push((var.name.clone(), translate(&value)));
            }
        }
        let port = quotestream_testkit::free_port().map_err(|e| format!("a free port: {e}"))?;
        let mut args: Vec<String> = command_args
            .iter()
            .chain(container.args.iter().flatten())
            .map(|a| translate(a))
            .collect();
        args.extend((self.config.extra_args)(port));

        let log = File::create(dir.join("container.log")).map_err(|e| format!("log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let child = Command::new(program)
            .args(&args)
            .env_clear()
            .envs(env)
            .env("HOSTNAME", pod)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("running {}: {e}", program.display()))?;
        let grace = spec
            .termination_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(DEFAULT_GRACE, Duration::from_secs);
        Ok(Proc {
            pod: pod.to_owned(),
            deployment: d.name_any(),
            deployment_uid: d.uid(),
            template,
            child,
            port,
            ready_path: container
                .readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .map(|h| h.path.clone().unwrap_or_else(|| "/".to_owned())),
            ready: false,
            volumes,
            grace,
            stopping: None,
            killed: false,
        })
    }

    /// An environment variable's value as kubelet resolves it when the container starts
    /// (`None`: an optional reference that does not resolve, so the variable is left out).
    /// `$(VAR)` references are not expanded.
    async fn env_value(
        &self,
        var: &EnvVar,
        maps: &BTreeMap<String, ConfigMap>,
    ) -> Result<Option<String>, String> {
        let Some(from) = &var.value_from else {
            return Ok(Some(var.value.clone().unwrap_or_default()));
        };
        let (value, optional, what) = if let Some(s) = &from.secret_key_ref {
            let secret = bounded(
                &format!("reading Secret {}", s.name),
                self.secrets.get_opt(&s.name),
            )
            .await?;
            let value = secret
                .and_then(|secret| secret.data)
                .and_then(|mut data| data.remove(&s.key))
                .map(|bytes| String::from_utf8(bytes.0))
                .transpose()
                .map_err(|_| format!("Secret {} key {} is not UTF-8", s.name, s.key))?;
            let what = format!("key {} of Secret {}", s.key, s.name);
            (value, s.optional, what)
        } else if let Some(c) = &from.config_map_key_ref {
            let value = maps
                .get(&c.name)
                .and_then(|cm| cm.data.as_ref())
                .and_then(|data| data.get(&c.key))
                .cloned();
            (
                value,
                c.optional,
                format!("key {} of ConfigMap {}", c.key, c.name),
            )
        } else {
            return Err(format!(
                "env {}: only value, secretKeyRef and configMapKeyRef are supported here",
                var.name
            ));
        };
        match value {
            Some(v) => Ok(Some(v)),
            None if optional == Some(true) => Ok(None),
            None => Err(format!(
                "CreateContainerConfigError: env {} needs {what}, which does not exist",
                var.name
            )),
        }
    }
}
