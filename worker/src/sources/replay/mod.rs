//! `replay`: plays a recording back at a chosen speed, optionally in a loop.
//!
//! Only the shard's tickers are played. Timestamps are kept as recorded; on each new loop they
//! move forward by the recording's span (plus one millisecond), so a looping replay keeps
//! publishing ever-newer quotes instead of repeats the pipeline would drop.
//!
//! The recording is streamed: one pass finds its span, then each round reads it again in
//! chunks, so a million-quote file costs a few thousand quotes of memory. A recording not in
//! time order is the exception: it is loaded whole and sorted (logged).

mod config;
mod recording;

use std::path::PathBuf;
use std::time::Duration;

use jiff::SignedDuration;
use quotestream_api::crd::ReplayFormat;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use config::ReplayConfig;
pub use recording::{BadLine, Scan, parse, read_each, scan};

use super::{Source, SourceContext, SourceError};
use crate::quote::RawQuote;

/// How `spec.source.type` names this source.
pub const NAME: &str = "replay";

/// Quotes delivered together when playing as fast as possible, and read together.
const FAST_CHUNK: usize = 1000;
/// Chunks read ahead of the player: with [`FAST_CHUNK`], what a streamed recording holds in
/// memory whatever its size.
const READ_AHEAD: usize = 2;

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
        let path = self.config.path.clone();
        let format = self.config.format;
        let unreadable = |e: &dyn std::fmt::Display| {
            SourceError::Config(format!(
                "cannot read the recording {}: {e} (the Deployment mounts spec.source.replay.configMapKeyRef there)",
                path.display()
            ))
        };
        let scan = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || recording::scan(&path, format))
                .await
                .map_err(|e| unreadable(&e))?
                .map_err(|e| unreadable(&e))?
        };
        ctx.metrics
            .errors
            .with_label_values(&["validation"])
            .inc_by(scan.bad_lines);
        ctx.metrics
            .validation_errors
            .with_label_values(&["malformed"])
            .inc_by(scan.bad_lines);
        for b in &scan.bad {
            tracing::warn!(file = %path.display(), error = %b, "recording line skipped");
        }
        if scan.bad_lines > scan.bad.len() as u64 {
            tracing::warn!(file = %path.display(), skipped = scan.bad_lines, "more recording lines skipped than logged (all are counted in streamer_validation_errors_total{{reason=\"malformed\"}})");
        }
        let (Some(t0), Some(last)) = (scan.first, scan.last) else {
            tracing::warn!(file = %path.display(), "the recording holds no quotes; nothing to replay");
            ctx.shutdown.cancelled().await;
            return Ok(());
        };
        if !scan.in_order {
            tracing::warn!(file = %path.display(), quotes = scan.quotes, "the recording is not in time order: it is loaded whole to be sorted, so its memory grows with its size; sort it by timestamp to have it streamed");
        }
        let span = last.duration_since(t0) + SignedDuration::from_millis(1);
        let mut round: i32 = 0;
        loop {
            let started = Instant::now();
            let shift = span * round;
            let round_start = t0.checked_add(shift).unwrap_or(t0);
            let owned = ctx.tickers.borrow_and_update().clone();
            let mut chunks = read_in_chunks(path.clone(), format, scan.in_order);
            let mut pending: Vec<RawQuote> = Vec::new();
            loop {
                let chunk = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    chunk = chunks.recv() => chunk,
                };
                let Some(chunk) = chunk else { break };
                // A symbol that is not a valid ticker is played anyway and rejected (and
                // counted) by validation.
                for mut q in chunk.into_iter().filter(|q| {
                    quotestream_api::Ticker::parse(&q.ticker).map_or(true, |t| owned.contains(&t))
                }) {
                    q.timestamp = q.timestamp.checked_add(shift).unwrap_or(q.timestamp);
                    if let Some(due) = self.due(q.timestamp.duration_since(round_start)) {
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
                    if pending.len() >= FAST_CHUNK
                        && !ctx.deliver(std::mem::take(&mut pending)).await
                    {
                        return Ok(());
                    }
                }
            }
            if !pending.is_empty() && !ctx.deliver(pending).await {
                return Ok(());
            }
            if !self.config.looped || ctx.shutdown.is_cancelled() {
                tracing::info!(quotes = scan.quotes, "recording played to the end");
                ctx.shutdown.cancelled().await;
                return Ok(());
            }
            round += 1;
        }
    }
}

/// The quotes of one round, in time order, in chunks of [`FAST_CHUNK`] read on a blocking
/// thread. A recording in time order is streamed: at most [`READ_AHEAD`] chunks wait here,
/// whatever its size. One that is not is read whole and sorted first. The reader stops when
/// the receiver is dropped (shutdown).
fn read_in_chunks(
    path: PathBuf,
    format: ReplayFormat,
    in_order: bool,
) -> mpsc::Receiver<Vec<RawQuote>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let read = if in_order {
            let mut chunk = Vec::with_capacity(FAST_CHUNK);
            let read = recording::read_each(&path, format, |item| {
                let Ok(q) = item else { return true };
                chunk.push(q);
                chunk.len() < FAST_CHUNK
                    || tx
                        .blocking_send(std::mem::replace(
                            &mut chunk,
                            Vec::with_capacity(FAST_CHUNK),
                        ))
                        .is_ok()
            });
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
            read
        } else {
            std::fs::read_to_string(&path).map(|text| {
                let (quotes, _) = recording::parse(&text, format);
                for chunk in quotes.chunks(FAST_CHUNK) {
                    if tx.blocking_send(chunk.to_vec()).is_err() {
                        break;
                    }
                }
            })
        };
        if let Err(e) = read {
            tracing::error!(file = %path.display(), error = %e, "the recording could not be read again; this round ends early");
        }
    });
    rx
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
