//! The worker's `/ready` document: whether it takes quotes, why not, and each sink's state.
//! The worker serves it; the operator reads it from a worker that runs but is not ready, to
//! say in the stream's status which sink failed while running and what to fix. One
//! definition, so the two sides cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sink_failure::SinkFailure;

/// What a sink is doing, as `/ready` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SinkState {
    /// Writing (or idle and able to).
    Up,
    /// A transient failure (an outage, a restart): the batch in hand is kept and retried.
    /// The worker stays ready: another pod would meet the same outage.
    Retrying { reason: String },
    /// A permanent failure: quotes for this sink are dropped (`reason="sink_failed"`) until a
    /// periodic re-check succeeds; the worker is not ready.
    Failed { setting: String, reason: String },
}

/// The `/ready` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReport {
    pub ready: bool,
    /// Why not, in one line (the first failed sink's [`SinkFailure::line`], or the process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each sink's state, by its label (`redis`, `postgres`, `storage`).
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkState>,
}

impl ReadyReport {
    /// Ready unless a sink has failed or the process is not `running`; the reason names the
    /// first failed sink (by label order) as a [`SinkFailure::line`].
    pub fn new(sinks: BTreeMap<String, SinkState>, running: bool) -> Self {
        let reason = match (Self::failures_of(&sinks).into_iter().next(), running) {
            (Some(failure), _) => Some(failure.line()),
            (None, false) => Some("starting or draining".to_owned()),
            (None, true) => None,
        };
        Self {
            ready: reason.is_none(),
            reason,
            sinks,
        }
    }

    /// The sinks that failed permanently, by label.
    pub fn failures(&self) -> Vec<SinkFailure> {
        Self::failures_of(&self.sinks)
    }

    fn failures_of(sinks: &BTreeMap<String, SinkState>) -> Vec<SinkFailure> {
        sinks
            .iter()
            .filter_map(|(name, state)| match state {
                SinkState::Failed { setting, reason } => {
                    Some(SinkFailure::new(name, setting, reason))
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_round_trips_and_names_each_failed_sink() {
        let sinks = BTreeMap::from([
            ("redis".to_owned(), SinkState::Up),
            (
                "postgres".to_owned(),
                SinkState::Failed {
                    setting: "spec.sinks.postgres.dsnSecretRef".into(),
                    reason: "42501 permission denied for table real_time".into(),
                },
            ),
            (
                "storage".to_owned(),
                SinkState::Retrying {
                    reason: "503".into(),
                },
            ),
        ]);
        let report = ReadyReport::new(sinks, true);
        assert!(!report.ready);
        let failure = SinkFailure::new(
            "postgres",
            "spec.sinks.postgres.dsnSecretRef",
            "42501 permission denied for table real_time",
        );
        assert_eq!(report.reason.as_deref(), Some(failure.line().as_str()));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["sinks"]["postgres"]["state"], "failed");
        assert_eq!(json["sinks"]["storage"]["state"], "retrying");
        let back: ReadyReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.failures(), [failure]);
    }

    #[test]
    fn an_outage_keeps_the_worker_ready_and_a_stopped_process_does_not() {
        let retrying = BTreeMap::from([(
            "storage".to_owned(),
            SinkState::Retrying {
                reason: "connection refused".into(),
            },
        )]);
        assert!(ReadyReport::new(retrying.clone(), true).ready);
        let stopped = ReadyReport::new(retrying, false);
        assert!(!stopped.ready);
        assert!(stopped.failures().is_empty());
        assert_eq!(stopped.reason.as_deref(), Some("starting or draining"));
    }
}
