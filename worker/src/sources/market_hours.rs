//! Trading hours (`spec.schedule`): the source runs only inside the schedule's windows.
//!
//! Outside a window the source is not running at all — a polling source makes no requests (its
//! rate budget is not spent), a streaming source has disconnected — while the rest of the
//! worker stays up: sinks, heartbeats, /ready. At each window's open the source is built anew
//! from its settings, exactly as at start, so a streaming source reconnects and resubscribes
//! the shard's current tickers.

use jiff::{SignedDuration, Timestamp};
use quotestream_api::crd::Schedule;
use std::time::Duration;

use super::{AnySource, SourceContext, SourceError};

/// The worker's notion of now. Normally the system clock; `--schedule-clock` shifts it to
/// rehearse an open or a close at another time (docs/worker.md, "Trading hours").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: SignedDuration,
}

impl Clock {
    /// A clock that reads `pretend` now and runs at the system clock's pace from there.
    pub fn starting_at(pretend: Timestamp) -> Self {
        Self {
            offset: pretend.duration_since(Timestamp::now()),
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::now()
            .checked_add(self.offset)
            .unwrap_or_else(|_| Timestamp::now())
    }

    /// How long until `t` by this clock (zero when it has passed).
    fn until(&self, t: Timestamp) -> Duration {
        Duration::try_from(t.duration_since(self.now())).unwrap_or(Duration::ZERO)
    }
}

/// Sleeps are cut into steps of at most this, so that a wall clock that jumps (NTP, a
/// suspended VM) delays an open or a close by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs the source `build` makes inside each window of `schedule` until `ctx.shutdown`.
/// A source that ends by itself (a replay that reached its end) ends this too.
pub async fn run_in_windows(
    schedule: &Schedule,
    clock: Clock,
    mut build: impl FnMut() -> Result<AnySource, SourceError>,
    ctx: SourceContext,
) -> Result<(), SourceError> {
    let metrics = ctx.metrics.clone();
    while !ctx.shutdown.is_cancelled() {
        let now = clock.now();
        let Some(window) = schedule.window_at(now) else {
            metrics.market_window_open.set(0);
            let next = schedule.next_window(now);
            metrics
                .market_next_change
                .set(next.map_or(0, |w| w.start.as_second()));
            match next {
                Some(w) => {
                    tracing::info!(state = schedule.market_state(now).as_str(), next_open = %w.start, "outside trading hours: the source is paused")
                }
                None => {
                    tracing::warn!("no trading day in the next two weeks: the source stays paused")
                }
            }
            let wake = next.map_or(MAX_SLEEP, |w| clock.until(w.start));
            pause(&ctx, wake).await;
            continue;
        };
        metrics.market_window_open.set(1);
        metrics.market_next_change.set(window.end.as_second());
        tracing::info!(closes = %window.end, "inside trading hours: the source runs");
        let stop = ctx.shutdown.child_token();
        let run = build()?.run(SourceContext {
            shutdown: stop.clone(),
            ..ctx.clone()
        });
        tokio::pin!(run);
        loop {
            let left = clock.until(window.end);
            if left.is_zero() {
                stop.cancel();
                run.await?;
                tracing::info!(closed = %window.end, "trading hours ended: the source stopped");
                break;
            }
            tokio::select! {
                result = &mut run => return result,
                _ = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
            }
        }
    }
    Ok(())
}

/// Waits `wake` (at most one step), or until shutdown.
async fn pause(ctx: &SourceContext, wake: Duration) {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => {}
        _ = tokio::time::sleep(wake.min(MAX_SLEEP)) => {}
    }
}
