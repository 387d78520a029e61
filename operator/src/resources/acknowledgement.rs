//! Which pods can acknowledge a shard's ticker list, where they answer, and whether what they
//! answer acknowledges the list the operator wrote. Pure functions of the pods the reconcile
//! lists (the operator already reads them, by the stream's label); the requests themselves are
//! `controller::acks`. No API rights for the worker: it serves its list on its own HTTP port
//! ([`quotestream_api::contract::ASSIGNMENT_PATH`]).

use k8s_openapi::api::core::v1::Pod;
use quotestream_api::contract::{ASSIGNMENT_PATH, HTTP_PORT};
use quotestream_api::crd::SHARD_LABEL;
use quotestream_api::worker_config::AppliedList;

use super::plan::ShardPlan;
use super::pod::{CONTAINER, PORT_NAME};

/// One pod that may acknowledge its shard's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckEndpoint {
    pub shard: u32,
    pub pod: String,
    /// `http://<pod IP>:<port>/assignment`.
    pub url: String,
}

/// The pods of `shard` that serve it: ready, not terminating, with an IP. A terminating pod
/// is leaving (its successor, make before break, is ready already and counts instead).
pub fn ack_endpoints(pods: &[Pod], shard: u32) -> Vec<AckEndpoint> {
    let index = shard.to_string();
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SHARD_LABEL))
                .is_some_and(|s| *s == index)
        })
        .filter(|p| is_ready(p))
        .filter_map(|p| {
            Some(AckEndpoint {
                shard,
                pod: p.metadata.name.clone().unwrap_or_default(),
                url: worker_url(p, ASSIGNMENT_PATH)?,
            })
        })
        .collect()
}

/// `http://<pod IP>:<http port><path>`: where the pod's worker serves `path`; `None` before
/// the pod has an IP.
pub fn worker_url(pod: &Pod, path: &str) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    let host = match ip.contains(':') {
        true => format!("[{ip}]"),
        false => ip.to_owned(),
    };
    Some(format!("http://{host}:{}{path}", http_port(pod)))
}

/// The pod's `Ready` condition.
fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The worker container's `http` port (the operator writes 8080; read back in case the pod
/// says otherwise).
fn http_port(pod: &Pod) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(PORT_NAME)))
        .map_or(i32::from(HTTP_PORT), |p| p.container_port)
}

/// Whether a worker's report acknowledges the list written for `shard`: the same shard and
/// the same list fingerprint (the XXH64 of its tickers).
pub fn acknowledges(report: &AppliedList, shard: &ShardPlan) -> bool {
    report.shard == shard.index && report.fingerprint == shard.config.fingerprint
}

/// The longest a moving ticker can have been owned by nobody, in seconds: how much later
/// its new owner acknowledged it (`gained`, the worker's clock) than the moment the operator
/// let its old owner go (`released`, a lower bound of when the old owner stops). 0 when the
/// new owner had it first, which is what the hand-over guarantees.
pub fn gap_seconds(gained: jiff::Timestamp, released: jiff::Timestamp) -> f64 {
    let late = gained.duration_since(released).as_secs_f64();
    late.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, shard: &str, ready: bool, ip: Option<&str>, port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {SHARD_LABEL: shard}},
            "spec": {"containers": [{"name": CONTAINER, "ports": [{"name": PORT_NAME, "containerPort": port}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn only_ready_running_pods_of_the_shard_answer() {
        let mut leaving = pod("s-shard-1-c", "1", true, Some("10.0.0.9"), 8080);
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let pods = [
            pod("s-shard-1-a", "1", true, Some("10.0.0.7"), 8080),
            pod("s-shard-1-b", "1", false, Some("10.0.0.8"), 8080),
            leaving,
            pod("s-shard-2-a", "2", true, Some("10.0.0.10"), 8080),
            pod("s-shard-1-d", "1", true, None, 8080),
            pod("s-shard-1-e", "1", true, Some("fd00::5"), 18080),
        ];
        let urls: Vec<String> = ack_endpoints(&pods, 1).into_iter().map(|e| e.url).collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.7:8080/assignment",
                "http://[fd00::5]:18080/assignment"
            ]
        );
    }

    #[test]
    fn the_gap_counts_only_a_late_new_owner() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let released = t("2026-12-06T16:00:01Z");
        assert_eq!(gap_seconds(t("2026-12-06T16:00:00.2Z"), released), 0.0);
        assert_eq!(gap_seconds(t("2026-12-06T16:00:01.5Z"), released), 0.5);
    }
}
