//! `replay`: plays a recording back at a chosen speed, optionally in a loop.
//!
//! Only the shard's tickers are played. Timestamps are kept as recorded; on each new loop they
//! move forward by the recording's span (plus one millisecond), so a looping replay keeps
//! publishing ever-newer quotes instead of repeats the pipeline would drop.

mod config;
mod recording;

use std::time::Duration;

use jiff::SignedDuration;
use tokio::time::Instant;

pub use config::ReplayConfig;
pub use recording::{BadLine, parse};

use super::{Source, SourceContext, SourceError};
use crate::quote::RawQuote;

/// How `spec.source.type` names this source.
pub const NAME: &str = "replay";

/// Quotes delivered together when playing as fast as possible.
const FAST_CHUNK: usize = 1000;

#[derive(Debug)]
pub struct ReplaySource {
    config: ReplayConfig,
}

impl ReplaySource {
    pub fn new(config: ReplayConfig) -> Self {
        Self { config }
    }
}

impl Source for ReplaySource {
    async fn run(self, mut ctx: SourceContext) -> Result<(), SourceError> {
        let path = &self.config.path;
        let text = tokio::fs::read_to_string(path).await.map_err(|e| {
            SourceError::Config(format!(
                "cannot read the recording {}: {e} (the Deployment mounts spec.source.replay.configMapKeyRef there)",
                path.display()
            ))
        })?;
        let (recording, bad) = parse(&text, self.config.format);
        for b in &bad {
            ctx.metrics.errors.with_label_values(&["validation"]).inc();
            ctx.metrics
                .validation_errors
                .with_label_values(&["malformed"])
                .inc();
            tracing::warn!(file = %path.display(), error = %b, "recording line skipped");
        }
        let (Some(first), Some(last)) = (recording.first(), recording.last()) else {
            tracing::warn!(file = %path.display(), "the recording holds no quotes; nothing to replay");
            ctx.shutdown.cancelled().await;
            return Ok(());
        };
        // Parsed once: a symbol that is not a valid ticker is played anyway and rejected (and
        // counted) by validation.
        let tickers: Vec<Option<quotestream_api::Ticker>> = recording
            .iter()
            .map(|q| quotestream_api::Ticker::parse(&q.ticker).ok())
            .collect();
        let span = last.timestamp.duration_since(first.timestamp) + SignedDuration::from_millis(1);
        let t0 = first.timestamp;
        let mut round: i32 = 0;
        loop {
            let started = Instant::now();
            let shift = span * round;
            let owned = ctx.tickers.borrow_and_update().clone();
            let mut pending: Vec<RawQuote> = Vec::new();
            for (q, _) in recording
                .iter()
                .zip(&tickers)
                .filter(|(_, t)| t.as_ref().is_none_or(|t| owned.contains(t)))
            {
                let mut q = q.clone();
                q.timestamp = q.timestamp.checked_add(shift).unwrap_or(q.timestamp);
                let due = self.due(
                    q.timestamp
                        .duration_since(t0.checked_add(shift).unwrap_or(t0)),
                );
                if let Some(due) = due {
                    let at = started + due;
                    if Instant::now() < at
                        && !pending.is_empty()
                        && !ctx.deliver(std::mem::take(&mut pending)).await
                    {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                pending.push(q);
                if pending.len() >= FAST_CHUNK && !ctx.deliver(std::mem::take(&mut pending)).await {
                    return Ok(());
                }
            }
            if !pending.is_empty() && !ctx.deliver(pending).await {
                return Ok(());
            }
            if !self.config.looped || ctx.shutdown.is_cancelled() {
                tracing::info!(quotes = recording.len(), "recording played to the end");
                ctx.shutdown.cancelled().await;
                return Ok(());
            }
            round += 1;
        }
    }
}

impl ReplaySource {
    /// When a quote recorded `offset` after the first one is due, relative to the start of the
    /// round; `None` when playing as fast as possible.
    fn due(&self, offset: SignedDuration) -> Option<Duration> {
        if self.config.speed <= 0.0 {
            return None;
        }
        let secs = offset.as_secs_f64().max(0.0) / self.config.speed;
        Some(Duration::from_secs_f64(secs))
    }
}
