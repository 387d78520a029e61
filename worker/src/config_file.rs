//! The worker configuration file (the shard ConfigMap mounted at /etc/quotestream/worker.json,
//! or any file given with `--config`), and the watcher that hands a new ticker list to the
//! running worker without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quotestream_api::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::runtime::{TickersHandle, WorkerError, parse_tickers};

/// Reads and parses a worker configuration file.
pub fn load(path: &Path) -> Result<WorkerConfig, WorkerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| WorkerError::Config(format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        WorkerError::Config(format!(
            "{} is not a worker configuration: {e}",
            path.display()
        ))
    })
}

/// Re-reads `path` every `every` and applies a changed ticker list. Any other change needs a
/// new process (the operator rolls the Deployment for those), so it is only logged.
pub async fn watch(
    path: PathBuf,
    mut current: WorkerConfig,
    every: Duration,
    tickers: TickersHandle,
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
        if next == current {
            continue;
        }
        if next.without_tickers() != current.without_tickers() {
            tracing::warn!(path = %path.display(), "configuration changed beyond the ticker list; it applies when the worker restarts");
        }
        if next.tickers != current.tickers {
            match parse_tickers(&next.tickers) {
                Ok(set) => {
                    let n = set.len();
                    if tickers.set(set) {
                        tracing::info!(tickers = n, epoch = next.epoch, fingerprint = %next.fingerprint, "ticker list updated without restart");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "new ticker list rejected; keeping the current one")
                }
            }
        }
        current = next;
    }
}
