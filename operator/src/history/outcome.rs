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
/// The backfill prints a line per ticker (`AAPL: done; …`, `MSFT: FAILED (…); …`) and, when
/// some failed, `error: backfill failed for F of N tickers …` followed by one `  SYMBOL: reason`
/// line each (docs/history.md). Complete: every ticker is done. Failed:
///
/// 1. that list, when the message holds all of its F lines: exactly those tickers failed, each
///    with its line as the reason; the others are done;
/// 2. otherwise each `SYMBOL: …` line of one of the Job's tickers (the last one wins): `done`
///    or failed with the line as the reason;
/// 3. a ticker no line names failed too when nothing was named (the process crashed, the
///    database was unreachable, the deadline passed: the reason is the Job's condition and the
///    message's last line) or when the message may have been cut (2048 bytes or 80 lines: the
///    line may be lost). A retry is cheap: the backfill resumes from its checkpoint.
pub fn outcome(job: &JobInfo, message: Option<&str>) -> Outcome {
    let mut out = Outcome {
        done: Vec::new(),
        failed: BTreeMap::new(),
    };
    if job.state == JobState::Complete {
        out.done = job.tickers.clone();
        return out;
    }
    let message = message.map(str::trim).filter(|m| !m.is_empty());
    let lines: Vec<&str> = message.map(|m| m.lines().collect()).unwrap_or_default();
    let ours = |line: &str| -> Option<(String, String)> {
        let (symbol, rest) = line.trim().split_once(':')?;
        job.tickers
            .iter()
            .find(|t| t.as_str() == symbol)
            .map(|t| (t.clone(), rest.trim().to_owned()))
    };

    // 1. The failure list, complete.
    if let Some(at) = lines
        .iter()
        .rposition(|l| l.contains("backfill failed for "))
    {
        let count = failed_count(lines[at]);
        let listed: Vec<(String, String)> = lines[at + 1..]
            .iter()
            .filter_map(|l| ours(l).map(|(t, _)| (t, reason(l))))
            .collect();
        if count == Some(listed.len()) {
            for t in &job.tickers {
                match listed.iter().find(|(s, _)| s == t) {
                    Some((_, why)) => {
                        out.failed.insert(t.clone(), why.clone());
                    }
                    None => out.done.push(t.clone()),
                }
            }
            return out;
        }
    }

    // 2. Ticker by ticker.
    let mut said: BTreeMap<String, Option<String>> = BTreeMap::new();
    for line in &lines {
        if let Some((t, rest)) = ours(line) {
            let failed = !rest.starts_with("done");
            said.insert(t, failed.then(|| reason(line)));
        }
    }
    // 3. The unnamed.
    let cut = message
        .is_some_and(|m| m.len() >= FALLBACK_LOG_BYTES - 64 || lines.len() >= FALLBACK_LOG_LINES);
    let nothing_named = said.values().all(Option::is_none) && said.len() < job.tickers.len();
    let condition = job
        .condition
        .clone()
        .unwrap_or_else(|| "the Job failed".to_owned());
    let whole = match lines.iter().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => reason(&format!("{condition}; {last}")),
        None => reason(&format!(
            "{condition} (no termination message: kubectl logs job/{})",
            job.name
        )),
    };
    for t in &job.tickers {
        match said.get(t) {
            Some(Some(why)) => {
                out.failed.insert(t.clone(), why.clone());
            }
            Some(None) => out.done.push(t.clone()),
            None if nothing_named || cut => {
                out.failed.insert(t.clone(), whole.clone());
            }
            None => out.done.push(t.clone()),
        }
    }
    out
}

/// F of the backfill's `… backfill failed for F of N tickers …` line.
fn failed_count(line: &str) -> Option<usize> {
    let (_, rest) = line.split_once("backfill failed for ")?;
    rest.split_whitespace().next()?.parse().ok()
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
