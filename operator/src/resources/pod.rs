//! The worker pod of a shard: one container under the restricted Pod Security Standard, its
//! configuration mounted as a directory, probes on the worker's HTTP endpoints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use quotestream_api::crd::{BufferType, SinkBuffer, Sinks, SourceType};

use quotestream_api::contract::{
    BUFFER_DIR, CA_DIR, CONFIG_DIR, HEALTH_PATH, HTTP_PORT, READY_PATH, REDIS_CA_FILE_NAME,
    REPLAY_DIR, TERMINATION_LOG_PATH,
};

use super::env::worker_env;
use super::plan::{ShardPlan, StreamPlan};

/// The distroless `nonroot` user.
pub const WORKER_UID: i64 = 65532;
/// Pod grace period; the worker drains within `QUOTESTREAM_GRACE` (25 s) of it.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;
/// The worker container's name (the operator reads its termination message back).
pub const CONTAINER: &str = "worker";
/// The worker container's port name (the probes and the hand-over acknowledgement use it).
pub const PORT_NAME: &str = "http";
const CONFIG_VOLUME: &str = "config";
const REPLAY_VOLUME: &str = "replay";
const CA_VOLUME: &str = "ca";
const BUFFER_VOLUME: &str = "buffer";
/// Room on the buffer volume beyond the sum of the buffers' `maxSize`: a buffer may exceed its
/// bound by one record and its ack file, and kubelet evicts a pod whose emptyDir passes its
/// sizeLimit.
const BUFFER_MARGIN_BYTES: u64 = 64 << 20;

/// The pod spec of `shard`.
pub fn pod_spec(plan: &StreamPlan, shard: &ShardPlan) -> PodSpec {
    let w = &plan.worker;
    let (volumes, mounts) = volumes(plan, shard);
    let mut env = worker_env(
        &shard.config.source,
        &shard.config.sinks,
        plan.source_hosts.as_deref(),
        w.env.as_deref().unwrap_or_default(),
    );
    if buffer_bytes(&shard.config.sinks).is_some() {
        env.push(EnvVar {
            name: quotestream_api::contract::env::BUFFER_DIR.to_owned(),
            value: Some(BUFFER_DIR.to_owned()),
            ..EnvVar::default()
        });
    }
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(plan.image.clone()),
        image_pull_policy: w.image_pull_policy.clone(),
        command: Some(vec!["quotestream-worker".to_owned(), "run".to_owned()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: i32::from(HTTP_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        // /health answers 200 while the process serves; a sink outage is reported in its body,
        // not by failing the probe (restarting would not bring the sink back).
        liveness_probe: Some(probe(HEALTH_PATH, 10, 3)),
        // /ready is 503 while starting and draining: the Deployment waits for the new pod
        // before it stops the old one.
        readiness_probe: Some(probe(READY_PATH, 5, 1)),
        resources: Some(w.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        // A worker that cannot start (a sink refused its settings) writes one line there
        // (`QUOTESTREAM_TERMINATION_LOG`); a crash that wrote nothing leaves its last log lines.
        termination_message_path: Some(TERMINATION_LOG_PATH.to_owned()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        security_context: Some(pod_security()),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        // The worker never calls the Kubernetes API, and service links only add noise to env.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        node_selector: w.node_selector.clone(),
        tolerations: w.tolerations.clone(),
        affinity: w.affinity.clone(),
        priority_class_name: w.priority_class_name.clone(),
        ..PodSpec::default()
    }
}

/// The shard ConfigMap as a directory, never with `subPath`: kubelet does not refresh subPath
/// mounts, and the worker picks up its new ticker list by re-reading the file. The replay
/// recording is a second ConfigMap volume inside that directory (ConfigMap volumes may nest
/// since Kubernetes 1.10, kubernetes#60342).
fn volumes(plan: &StreamPlan, shard: &ShardPlan) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![config_map_volume(CONFIG_VOLUME, &shard.name)];
    let mut mounts = vec![mount(CONFIG_VOLUME, CONFIG_DIR)];
    let replay = shard.config.source.replay.as_ref();
    if let (Some(SourceType::Replay), Some(r)) = (plan.source_type(), replay) {
        volumes.push(config_map_volume(REPLAY_VOLUME, &r.config_map_key_ref.name));
        mounts.push(mount(REPLAY_VOLUME, REPLAY_DIR));
    }
    // The Redis CA: only its key, under a fixed name (the worker's QUOTESTREAM_REDIS_CA_FILE).
    if let Some(ca) = shard
        .config
        .sinks
        .redis
        .as_ref()
        .and_then(|r| r.ca_secret_ref.as_ref())
    {
        volumes.push(Volume {
            name: CA_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.name.clone()),
                items: Some(vec![KeyToPath {
                    key: ca.key.clone(),
                    path: REDIS_CA_FILE_NAME.to_owned(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o444),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(CA_VOLUME, CA_DIR));
    }
    // The durable sinks' disk buffers: an emptyDir (it outlives a crash of the container, not
    // the pod), bounded by kubelet at the buffers' sizes plus a margin.
    if let Some(bytes) = buffer_bytes(&shard.config.sinks) {
        volumes.push(Volume {
            name: BUFFER_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                // In whole Mi, rounded up.
                size_limit: Some(Quantity(format!(
                    "{}Mi",
                    bytes.saturating_add(BUFFER_MARGIN_BYTES).div_ceil(1 << 20)
                ))),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            read_only: Some(false),
            ..mount(BUFFER_VOLUME, BUFFER_DIR)
        });
    }
    (volumes, mounts)
}

/// The bytes of the disk buffers `sinks` ask for (`None`: no sink has one). A `maxSize` the
/// CRD's pattern let through but that overflows counts as the default; the worker refuses it.
fn buffer_bytes(sinks: &Sinks) -> Option<u64> {
    let disk = |b: Option<&SinkBuffer>| {
        b.filter(|b| b.kind == BufferType::Disk).map(|b| {
            b.max_size
                .as_ref()
                .and_then(|s| super::queue_budget::quantity_bytes(&Quantity(s.clone())))
                .unwrap_or(quotestream_api::crd::DEFAULT_BUFFER_MAX_SIZE_BYTES)
        })
    };
    let buffers = [
        disk(sinks.storage.as_ref().and_then(|s| s.buffer.as_ref())),
        disk(sinks.postgres.as_ref().and_then(|s| s.buffer.as_ref())),
    ];
    buffers
        .into_iter()
        .flatten()
        .reduce(|a, b| a.saturating_add(b))
}

fn config_map_volume(volume: &str, config_map: &str) -> Volume {
    Volume {
        name: volume.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Requests 50m CPU / 32Mi, limit 128Mi memory and no CPU limit (throttling would add latency;
/// the request already reserves what a shard needs).
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), q("50m")),
            ("memory".to_owned(), q("32Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), q("128Mi"))])),
        ..ResourceRequirements::default()
    }
}

fn seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

/// The restricted Pod Security Standard, at pod level.
pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        seccomp_profile: Some(seccomp()),
        ..PodSecurityContext::default()
    }
}

/// The restricted Pod Security Standard, at container level (a read-only root: the worker
/// writes only to its disk buffer volume, when a sink has one).
pub(crate) fn container_security() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(seccomp()),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
mod tests;
