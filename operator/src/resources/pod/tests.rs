use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use quotestream_api::crd::{ReplaySource, SourceType, WorkerTemplate};

use super::*;
use crate::resources::fixtures::{config_map_ref, plan, source, stream, tickers};

fn spec_of(s: &quotestream_api::QuoteStream) -> PodSpec {
    let p = plan(s, &tickers(&["AAPL", "MSFT"]));
    pod_spec(&p, &p.shards[1])
}

#[test]
fn runs_the_worker_with_its_config_directory_mounted_without_sub_path() {
    let pod = spec_of(&stream("sp500", 2));
    let c = &pod.containers[0];
    assert_eq!(c.command.as_deref().unwrap(), ["quotestream-worker", "run"]);
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].mount_path, "/etc/quotestream");
    assert_eq!(mounts[0].read_only, Some(true));
    assert!(
        mounts
            .iter()
            .all(|m| m.sub_path.is_none() && m.sub_path_expr.is_none())
    );
    let volumes = pod.volumes.as_ref().unwrap();
    assert_eq!(volumes[0].name, mounts[0].name);
    let cm = volumes[0].config_map.as_ref().unwrap();
    assert_eq!(cm.name, "sp500-shard-1");
    assert!(
        cm.items.is_none(),
        "every key, so worker.json follows updates"
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn replay_recording_is_mounted_where_the_worker_looks() {
    let mut s = stream("s", 2);
    s.spec.source = source(SourceType::Replay);
    s.spec.source.replay = Some(ReplaySource {
        config_map_key_ref: config_map_ref("recording", "day.ndjson"),
        format: None,
        speed_percent: None,
        looped: None,
    });
    let pod = spec_of(&s);
    let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
    let replay = mounts
        .iter()
        .find(|m| m.mount_path == "/etc/quotestream/replay");
    let replay = replay.expect("replay mount");
    assert!(replay.sub_path.is_none());
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == replay.name)
        .unwrap();
    assert_eq!(volume.config_map.as_ref().unwrap().name, "recording");
    // The worker's default recording path is <REPLAY_DIR>/<key>; no override is set.
    let env = pod.containers[0].env.as_ref().unwrap();
    assert!(env.iter().all(|e| e.name != "QUOTESTREAM_REPLAY_FILE"));
}

#[test]
fn meets_the_restricted_pod_security_standard() {
    let pod = spec_of(&stream("s", 2));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(),
        ["ALL"]
    );
    assert!(sc.capabilities.as_ref().unwrap().add.is_none());
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
}

#[test]
fn probes_hit_health_and_ready_on_the_named_port() {
    let pod = spec_of(&stream("s", 2));
    let c = &pod.containers[0];
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("http"), 8080)
    );
    let get = |p: &Option<Probe>| {
        let h = p.as_ref().unwrap().http_get.clone().unwrap();
        (h.path.unwrap(), h.port)
    };
    let http = IntOrString::String("http".into());
    assert_eq!(get(&c.liveness_probe), ("/health".to_owned(), http.clone()));
    assert_eq!(get(&c.readiness_probe), ("/ready".to_owned(), http));
}

#[test]
fn resources_default_and_pod_knobs_pass_through() {
    let pod = spec_of(&stream("s", 2));
    assert_eq!(pod.containers[0].resources, Some(default_resources()));
    let r = default_resources();
    assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "50m");
    assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "32Mi");
    assert_eq!(r.limits.as_ref().unwrap()["memory"].0, "128Mi");

    let mut s = stream("s", 2);
    let custom = ResourceRequirements {
        limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
        ..ResourceRequirements::default()
    };
    s.spec.worker = Some(WorkerTemplate {
        image_pull_policy: Some("Always".into()),
        resources: Some(custom.clone()),
        node_selector: Some(BTreeMap::from([("pool".into(), "markets".into())])),
        tolerations: Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }]),
        priority_class_name: Some("high".into()),
        ..WorkerTemplate::default()
    });
    let pod = spec_of(&s);
    assert_eq!(pod.containers[0].resources, Some(custom));
    assert_eq!(
        pod.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(pod.node_selector.unwrap()["pool"], "markets");
    assert_eq!(pod.tolerations.unwrap().len(), 1);
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
}

#[test]
fn the_redis_ca_secret_key_is_mounted_where_the_worker_variable_points() {
    let mut s = stream("s", 2);
    if let Some(redis) = s.spec.sinks.redis.as_mut() {
        redis.url = Some("rediss://redis:6380/0".into());
        redis.ca_secret_ref = Some(quotestream_api::crd::SecretKeyRef {
            name: "redis-ca".into(),
            key: "ca.crt".into(),
        });
    }
    let pod = spec_of(&s);
    let c = &pod.containers[0];
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/etc/quotestream/ca")
        .expect("the CA mount");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == mount.name)
        .expect("the CA volume");
    let secret = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("redis-ca"));
    let items = secret.items.as_deref().unwrap_or_default();
    assert_eq!(items.len(), 1, "only the CA key is mounted");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("ca.crt", "redis.crt")
    );
    let variable = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "QUOTESTREAM_REDIS_CA_FILE")
        .and_then(|e| e.value.clone());
    assert_eq!(
        variable.as_deref(),
        Some("/etc/quotestream/ca/redis.crt"),
        "the variable names the mounted file"
    );
}

#[test]
fn a_disk_buffer_gets_an_empty_dir_sized_by_its_max_size_and_the_path_in_env() {
    use quotestream_api::crd::{BufferType, SinkBuffer};
    let mut s = stream("s", 2);
    let mut pg = crate::resources::fixtures::postgres_sink();
    pg.buffer = Some(SinkBuffer {
        kind: BufferType::Disk,
        max_size: Some("512Mi".into()),
        when_full: None,
    });
    s.spec.sinks.postgres = Some(pg);
    let pod = spec_of(&s);
    let c = &pod.containers[0];
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/var/lib/quotestream/buffer")
        .expect("buffer mount");
    assert_eq!(mount.read_only, Some(false));
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == mount.name)
        .unwrap();
    let empty_dir = volume.empty_dir.as_ref().expect("an emptyDir");
    assert_eq!(
        empty_dir.size_limit.as_ref().map(|q| q.0.as_str()),
        Some("576Mi"),
        "512Mi plus the 64Mi margin"
    );
    let env = c.env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "QUOTESTREAM_BUFFER_DIR"
        && e.value.as_deref() == Some("/var/lib/quotestream/buffer")));

    // A memory buffer (or none) mounts nothing.
    let plain = spec_of(&stream("s", 2));
    assert!(
        plain
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .all(|v| v.empty_dir.is_none())
    );
}
