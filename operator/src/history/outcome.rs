//! What a finished backfill Job did, ticker by ticker. The backfill exits 0 when every ticker
//! is done and otherwise names the tickers that failed and why in its last lines, which the
//! pod's termination message carries (`FallbackToLogsOnError`: the tail of the log, at most
//! 2048 bytes or 80 lines).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::job::{JobInfo, JobState};
use super::record::reason;

/// How a finished Job ended for its tickers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub done: Vec<String>,
    /// Failed tickers and why.
    pub failed: BTreeMap<String, String>,
}

/// Kubernetes keeps at most this much of a log as the termination message; a message this long
/// may have lost its first lines, and with them some failed tickers.
const FALLBACK_LOG_BYTES: usize = 2048;
const FALLBACK_LOG_LINES: usize = 80;

/// The outcome of a finished Job. `message` is the termination message of its last failed pod
/// (None when there is none: no pod left, killed before it wrote a line, or a deadline).
///
/// Complete: every ticker is done. Failed: a ticker named in the message failed, with the line
/// that names it as the reason. If the message names none of them (the process crashed, the
/// database was unreachable, the deadline passed) every ticker failed, with the message's
/// last line or the Job's condition as the reason. A ticker not named is done — unless the
/// message may have been cut, in which case it may have been named in a lost line, and it
/// counts as failed too (a retry is cheap: the backfill resumes from its checkpoint).
pub fn outcome(job: &JobInfo, message: Option<&str>) -> Outcome {
    if job.state == JobState::Complete {
        return Outcome {
            done: job.tickers.clone(),
            failed: BTreeMap::new(),
        };
    }
    let message = message.map(str::trim).filter(|m| !m.is_empty());
    let condition = job
        .condition
        .clone()
        .unwrap_or_else(|| "the Job failed".to_owned());
    let mut named = BTreeMap::new();
    if let Some(m) = message {
        for line in m.lines() {
            for t in &job.tickers {
                if !named.contains_key(t) && names(line, t) {
                    named.insert(t.clone(), reason(line));
                }
            }
        }
    }
    let cut = message.is_some_and(|m| {
        m.len() >= FALLBACK_LOG_BYTES - 64 || m.lines().count() >= FALLBACK_LOG_LINES
    });
    let whole = match message.and_then(|m| m.lines().rev().find(|l| !l.trim().is_empty())) {
        Some(last) => reason(&format!("{condition}; {last}")),
        None => reason(&format!(
            "{condition} (no termination message: kubectl logs job/{})",
            job.name
        )),
    };
    // Nobody named: the failure was the whole run's. Possibly cut: a lost line may have named
    // the ticker.
    let unnamed_failed = named.is_empty() || cut;
    let mut out = Outcome {
        done: Vec::new(),
        failed: BTreeMap::new(),
    };
    for t in &job.tickers {
        match named.remove(t) {
            Some(why) => {
                out.failed.insert(t.clone(), why);
            }
            None if unnamed_failed => {
                out.failed.insert(t.clone(), whole.clone());
            }
            None => out.done.push(t.clone()),
        }
    }
    out
}

/// Whether `line` names `ticker` as a whole word (`AAPL` but not `AAPLX`; `BRK.B`, `^GSPC`,
/// `BTC-USD` as written).
fn names(line: &str, ticker: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || "._^-=/".contains(c);
    line.match_indices(ticker).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + ticker.len()..].chars().next();
        // A sentence's full stop after the ticker is not part of it.
        let after_ok = match after {
            None => true,
            Some('.') => line[i + ticker.len() + 1..]
                .chars()
                .next()
                .is_none_or(|c| !part(c)),
            Some(c) => !part(c),
        };
        before.is_none_or(|c| !part(c)) && after_ok
    })
}

/// The termination message of the Job's most recent failed pod.
pub fn termination_message(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter_map(|p| {
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let message = p
                .status
                .as_ref()?
                .container_statuses
                .as_deref()?
                .iter()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .filter(|t| t.exit_code != 0)
                .find_map(|t| {
                    let text = t.message.clone().filter(|m| !m.trim().is_empty());
                    text.or_else(|| t.reason.clone())
                })?;
            Some((created, message))
        })
        .max_by_key(|(created, _)| *created)
        .map(|(_, m)| m)
}
