//! Why a stream's workers cannot start, read from their pods: a worker that meets a permanent
//! sink failure at start (a wrong password, a missing database, an unusable URL) exits 1 and
//! writes one line to its termination message ([`SinkFailure::line`]); kubelet keeps it in the
//! container's `state.terminated` / `lastState.terminated`. The operator turns it into the
//! stream's `Degraded` condition ([`super::status::worker_failed`]) and an Event.
//!
//! Only a container that is not ready counts: once the worker starts and passes `/ready` (the
//! password fixed), the old message in `lastState` is history, not the present.
//!
//! A sink that fails while its worker runs does not stop the worker (Redis keeps publishing):
//! the worker answers `/ready` with 503 naming the sink and the setting. [`unready_workers`]
//! says which pods to ask (`controller::worker_client`).

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::ResourceExt;
use quotestream_api::crd::SHARD_LABEL;
use quotestream_api::sink_failure::SinkFailure;

use super::acknowledgement::worker_url;
use super::pod::CONTAINER;

/// The condition reason for a sink the worker named.
pub const SINK_FAILED: &str = "SinkFailed";
/// The condition reason for a worker that stopped for another reason (its message or logs).
pub const WORKER_FAILED: &str = "WorkerFailed";

/// One worker pod whose container stopped with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFailure {
    pub pod: String,
    /// From the pod's shard label.
    pub shard: Option<String>,
    /// The sink and the setting, when the message is a sink failure line.
    pub sink: Option<SinkFailure>,
    /// The termination message as kubelet kept it.
    pub message: String,
}

impl WorkerFailure {
    /// `SinkFailed` or `WorkerFailed`.
    pub fn reason(&self) -> &'static str {
        match self.sink {
            Some(_) => SINK_FAILED,
            None => WORKER_FAILED,
        }
    }

    /// One sentence naming the shard, the pod and what to fix.
    pub fn describe(&self) -> String {
        let shard = self.shard.as_deref().unwrap_or("?");
        match &self.sink {
            Some(f) => format!(
                "shard {shard} (pod {}): sink {} cannot work, fix {}: {}",
                self.pod, f.sink, f.setting, f.reason
            ),
            None => format!(
                "shard {shard} (pod {}): the worker exited: {}",
                self.pod,
                self.message.trim()
            ),
        }
    }
}

/// A worker that runs but is not ready: it may say why at its `/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadyWorker {
    pub pod: String,
    pub shard: Option<String>,
    /// `http://<pod IP>:<port><path>`.
    pub url: String,
}

impl UnreadyWorker {
    /// The failure of one of its sinks, as the stream's status shows it.
    pub fn failed(&self, sink: SinkFailure) -> WorkerFailure {
        WorkerFailure {
            pod: self.pod.clone(),
            shard: self.shard.clone(),
            message: sink.line(),
            sink: Some(sink),
        }
    }
}

/// The pods among `pods` whose worker container runs but is not ready (not terminating, with
/// an IP), and where each serves `path`.
pub fn unready_workers(pods: &[Pod], path: &str) -> Vec<UnreadyWorker> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER))
                .is_some_and(|c| !c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .filter_map(|p| {
            Some(UnreadyWorker {
                pod: p.name_any(),
                shard: p.labels().get(SHARD_LABEL).cloned(),
                url: worker_url(p, path)?,
            })
        })
        .collect()
}

/// The failures among `pods` (the stream's, by its label), in pod-name order.
pub fn worker_failures(pods: &[Pod]) -> Vec<WorkerFailure> {
    let mut failures: Vec<WorkerFailure> = pods.iter().filter_map(failure_of).collect();
    failures.sort_by(|a, b| a.pod.cmp(&b.pod));
    failures
}

fn failure_of(pod: &Pod) -> Option<WorkerFailure> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?;
    let worker = status.iter().find(|c| c.name == CONTAINER)?;
    if worker.ready {
        return None;
    }
    // The current termination if the container is down now, else the last one (a crash loop
    // spends most of its time waiting to restart).
    let terminated: &ContainerStateTerminated = worker
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| worker.last_state.as_ref()?.terminated.as_ref())?;
    let message = terminated.message.as_deref()?.trim();
    if terminated.exit_code == 0 || message.is_empty() {
        return None;
    }
    Some(WorkerFailure {
        pod: pod.name_any(),
        shard: pod.labels().get(SHARD_LABEL).cloned(),
        sink: SinkFailure::parse(message),
        message: message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, worker: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {SHARD_LABEL: "1"}},
            "spec": {"containers": [{"name": "worker"}]},
            "status": {"containerStatuses": [worker]},
        }))
        .unwrap()
    }

    fn status(ready: bool, state: serde_json::Value, last: serde_json::Value) -> serde_json::Value {
        json!({"name": "worker", "ready": ready, "restartCount": 2, "image": "w", "imageID": "",
               "state": state, "lastState": last})
    }

    const LINE: &str = "sink postgres failed [spec.sinks.postgres.dsnSecretRef]: 28P01 password authentication failed for user \"feeder\"";

    #[test]
    fn a_crash_looping_worker_names_its_sink_and_setting() {
        let p = pod(
            "s-shard-1-x",
            status(
                false,
                json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                json!({"terminated": {"exitCode": 1, "message": LINE}}),
            ),
        );
        let failures = worker_failures(&[p]);
        assert_eq!(failures.len(), 1);
        let f = &failures[0];
        assert_eq!(f.reason(), SINK_FAILED);
        assert_eq!(f.sink.as_ref().map(|s| s.sink.as_str()), Some("postgres"));
        let text = f.describe();
        assert!(
            text.contains("shard 1")
                && text.contains("spec.sinks.postgres.dsnSecretRef")
                && text.contains("28P01"),
            "{text}"
        );
    }

    #[test]
    fn other_messages_are_a_worker_failure_and_a_ready_or_clean_worker_is_none() {
        let logs = pod(
            "a",
            status(
                false,
                json!({"terminated": {"exitCode": 101, "message": "thread 'main' panicked"}}),
                json!({}),
            ),
        );
        assert_eq!(worker_failures(&[logs])[0].reason(), WORKER_FAILED);
        let recovered = pod(
            "b",
            status(
                true,
                json!({"running": {}}),
                json!({"terminated": {"exitCode": 1, "message": LINE}}),
            ),
        );
        let clean = pod(
            "c",
            status(
                false,
                json!({"terminated": {"exitCode": 0, "message": "drained"}}),
                json!({}),
            ),
        );
        let silent = pod(
            "d",
            status(
                false,
                json!({"waiting": {}}),
                json!({"terminated": {"exitCode": 1}}),
            ),
        );
        assert!(worker_failures(&[recovered, clean, silent]).is_empty());
    }
}
