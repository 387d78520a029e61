//! The worker configuration file (the shard ConfigMap mounted at /etc/quotestream/worker.json,
//! or any file given with `--config`), and the watcher that hands what a reshard changes (the
//! ticker list, the rate-limit share) to the running worker without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quotestream_api::WorkerConfig;
use quotestream_api::worker_config::AppliedList;
use tokio_util::sync::CancellationToken;

use crate::assembly::{ReloadHandle, WorkerError, parse_tickers};

/// Reads and parses a worker configuration file.
pub fn load(path: &Path) -> Result<WorkerConfig, WorkerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| WorkerError::Config(format!("reading {}: {e}", path.display())))?;
    parse(&text).map_err(|e| {
        WorkerError::Config(format!(
            "{} is not a worker configuration: {e}",
            path.display()
        ))
    })
}

/// Parses worker.json; an error names the field it is about (`sinks.storage.batchSize:
/// invalid value: integer `-1`, expected i32`), not only a line and column.
pub fn parse(text: &str) -> Result<WorkerConfig, String> {
    let mut json = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        format!("{field}: {}", e.into_inner())
    })
}

/// Re-reads `path` every `every` and applies what a running worker can: a new ticker list and
/// a new rate-limit share (both change on every reshard). Any other change needs a new process
/// (the operator rolls the Deployment for those), so it is only logged, naming the fields.
pub async fn watch(
    path: PathBuf,
    mut current: WorkerConfig,
    every: Duration,
    live: ReloadHandle,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let next = match load(&path) {
            Ok(c) => c,
            Err(e) => {
                // Kubelet swaps the mounted file atomically, so a read error is a real problem,
                // but the worker keeps streaming its last good list.
                tracing::warn!(error = %e, "configuration not reloaded; keeping the current tickers");
                continue;
            }
        };
        if next != current {
            let reload = apply(&current, &next, &live);
            if !reload.needs_restart.is_empty() {
                tracing::warn!(path = %path.display(), fields = ?reload.needs_restart, "configuration changed beyond what a running worker applies; it applies when the worker restarts");
            }
            current = next;
        }
    }
}

/// What [`apply`] did with a changed configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reload {
    /// The new ticker list is in force.
    pub tickers: bool,
    /// The new rate-limit share is in force.
    pub requests_per_hour: bool,
    /// Changed fields that need a new process (see [`WorkerConfig::restart_changes`]).
    pub needs_restart: Vec<String>,
}

/// Applies to the running worker what changed from `current` to `next` and it can apply: the
/// ticker list and the rate-limit share. The shard count, epoch and fingerprint only describe
/// the new assignment and need nothing.
pub fn apply(current: &WorkerConfig, next: &WorkerConfig, live: &ReloadHandle) -> Reload {
    let mut reload = Reload {
        needs_restart: current.restart_changes(next),
        ..Reload::default()
    };
    let accepted = if next.tickers != current.tickers {
        match parse_tickers(&next.tickers) {
            Ok(set) => {
                let n = set.len();
                reload.tickers = live.set_tickers(set);
                if reload.tickers {
                    // Which tickers this shard took over and let go: with the other shards'
                    // lines, each ticker's owners over time (the end-to-end test reads them).
                    let had = |t: &&String| current.tickers.contains(*t);
                    let has = |t: &&String| next.tickers.contains(*t);
                    let gained = names(next.tickers.iter().filter(|t| !had(t)));
                    let released = names(current.tickers.iter().filter(|t| !has(t)));
                    tracing::info!(tickers = n, epoch = next.epoch, fingerprint = %next.fingerprint, %gained, %released, "ticker list updated without restart");
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "new ticker list rejected; keeping the current one");
                false
            }
        }
    } else {
        true
    };
    // The list in force is acknowledged only once the source has it (a rejected list is not).
    if accepted && (next.epoch, &next.fingerprint) != (current.epoch, &current.fingerprint) {
        live.acknowledge(next);
    }
    if next.requests_per_hour != current.requests_per_hour {
        reload.requests_per_hour = live.set_requests_per_hour(next.requests_per_hour);
        if reload.requests_per_hour {
            tracing::info!(
                requests_per_hour = next.requests_per_hour,
                previous = current.requests_per_hour,
                shards = next.shards,
                "rate-limit share updated without restart"
            );
        }
    }
    reload
}

/// The ticker list in force: set when the source is handed a list (at start and on each
/// reload), served on `/assignment`, where the operator reads it to acknowledge a hand-over.
#[derive(Debug, Clone, Default)]
pub struct InForce(Arc<Mutex<Option<AppliedList>>>);

impl InForce {
    /// Records `config`'s list as the one the source streams from now on.
    pub fn set(&self, config: &WorkerConfig) {
        let list = AppliedList::of(config, jiff::Timestamp::now());
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(list);
    }

    /// The list in force; `None` before the source runs.
    pub fn get(&self) -> Option<AppliedList> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How many ticker names one log line lists; the rest are counted.
const LOGGED_NAMES: usize = 64;

/// `AAPL,MSFT,…` for a log line: at most [`LOGGED_NAMES`] names, then `(+N more)`.
pub fn names<'a>(tickers: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<&str> = tickers.map(String::as_str).collect();
    let mut line = all[..all.len().min(LOGGED_NAMES)].join(",");
    if all.len() > LOGGED_NAMES {
        line.push_str(&format!(" (+{} more)", all.len() - LOGGED_NAMES));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assembly::{RunOptions, Worker};

    fn config(changes: serde_json::Value) -> WorkerConfig {
        let mut json = serde_json::json!({
            "namespace": "default", "stream": "demo", "shard": 1, "shards": 3,
            "tickers": ["AAPL", "MSFT", "NVDA"], "interval": "1s", "requestsPerHour": 600.0,
            "source": {"type": "yahoo"}, "sinks": {"redis": {"url": "redis://127.0.0.1:1/0"}},
            "epoch": 4, "fingerprint": "00000000000000aa"
        });
        if let (Some(base), serde_json::Value::Object(changes)) = (json.as_object_mut(), changes) {
            base.extend(changes);
        }
        serde_json::from_value(json).unwrap()
    }

    /// A built (not running) worker's reload handle: what `watch` gets in the binary.
    fn live(config: &WorkerConfig) -> ReloadHandle {
        Worker::new(config.clone(), RunOptions::default(), None)
            .unwrap()
            .reload_handle()
    }

    /// What the operator writes to a shard that keeps running through a 3 → 5 reshard.
    fn resharded() -> WorkerConfig {
        config(serde_json::json!({
            "shards": 5, "tickers": ["AAPL", "MSFT"], "requestsPerHour": 360.0,
            "epoch": 5, "fingerprint": "00000000000000bb"
        }))
    }

    #[test]
    fn a_reshard_is_applied_entirely_without_restart() {
        let before = config(serde_json::json!({}));
        let live = live(&before);
        assert_eq!(live.requests_per_hour(), Some(600.0));
        let reload = apply(&before, &resharded(), &live);
        assert_eq!(
            reload,
            Reload {
                tickers: true,
                requests_per_hour: true,
                needs_restart: Vec::new()
            }
        );
        assert_eq!(live.requests_per_hour(), Some(360.0));
    }

    #[test]
    fn a_new_list_is_acknowledged_once_applied_and_a_rejected_one_never() {
        let before = config(serde_json::json!({}));
        let live = live(&before);
        assert_eq!(live.acknowledged(), None, "nothing before the source runs");
        apply(&before, &resharded(), &live);
        let acked = live.acknowledged().unwrap();
        assert_eq!(
            (acked.epoch, acked.fingerprint.as_str(), acked.tickers),
            (5, "00000000000000bb", 2)
        );
        let bad = config(serde_json::json!({
            "tickers": ["AAPL", "not a ticker"], "epoch": 6, "fingerprint": "00000000000000cc"
        }));
        apply(&resharded(), &bad, &live);
        assert_eq!(
            live.acknowledged().unwrap().fingerprint,
            "00000000000000bb",
            "a list the worker rejected is not acknowledged: its tickers keep their old owners"
        );
    }

    #[test]
    fn log_lines_name_a_bounded_number_of_tickers() {
        let few: Vec<String> = ["AAPL", "MSFT"].map(String::from).to_vec();
        assert_eq!(names(few.iter()), "AAPL,MSFT");
        let many: Vec<String> = (0..70).map(|i| format!("T{i}")).collect();
        let line = names(many.iter());
        assert!(line.ends_with("T63 (+6 more)"), "{line}");
    }

    #[test]
    fn what_a_running_worker_cannot_apply_is_named() {
        let before = config(serde_json::json!({}));
        let live = live(&before);
        let next = config(serde_json::json!({"interval": "2s", "tickers": ["AAPL"]}));
        let reload = apply(&before, &next, &live);
        assert!(reload.tickers, "the ticker list still applies");
        assert_eq!(reload.needs_restart, ["interval"]);
    }

    #[test]
    fn a_source_without_requests_has_no_budget_to_reload() {
        let before = config(serde_json::json!({"source": {"type": "synthetic"}}));
        let live = live(&before);
        let next = config(serde_json::json!({
            "source": {"type": "synthetic"}, "shards": 5, "requestsPerHour": 360.0
        }));
        let reload = apply(&before, &next, &live);
        assert_eq!(reload, Reload::default());
        assert_eq!(live.requests_per_hour(), None);
    }

    #[tokio::test]
    async fn the_watcher_reloads_a_rewritten_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.json");
        let before = config(serde_json::json!({}));
        std::fs::write(&path, serde_json::to_vec(&before).unwrap()).unwrap();
        let live = live(&before);
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch(
            path.clone(),
            before,
            Duration::from_millis(10),
            live.clone(),
            stop.clone(),
        ));
        // Kubelet swaps the file atomically: write, then rename.
        let staged = dir.path().join("worker.json.new");
        std::fs::write(&staged, serde_json::to_vec(&resharded()).unwrap()).unwrap();
        std::fs::rename(&staged, &path).unwrap();
        let mut reloaded = false;
        for _ in 0..500 {
            if live.requests_per_hour() == Some(360.0) {
                reloaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert!(reloaded, "the new share was applied within 5 s");
    }
}
