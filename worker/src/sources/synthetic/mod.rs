//! `synthetic`: a built-in market simulator that needs nothing external (see [`market`]).

mod config;
mod market;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use tokio::time::MissedTickBehavior;

pub use config::SyntheticConfig;
pub use market::Market;

use super::{Source, SourceContext, SourceError};

/// How `spec.source.type` names this source.
pub const NAME: &str = "synthetic";

#[derive(Debug)]
pub struct SyntheticSource {
    config: SyntheticConfig,
}

impl SyntheticSource {
    pub fn new(config: SyntheticConfig) -> Self {
        Self { config }
    }
}

impl Source for SyntheticSource {
    async fn run(self, mut ctx: SourceContext) -> Result<(), SourceError> {
        let mut market = Market::new(self.config.seed, self.config.volatility);
        let new_york = TimeZone::get("America/New_York")
            .map_err(|e| SourceError::Config(format!("time zone America/New_York: {e}")))?;
        let mut ticks = tokio::time::interval(ctx.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            let now = Timestamp::now();
            if self.config.market_hours && !is_regular_session(now, &new_york) {
                continue;
            }
            if ctx.tickers.has_changed().unwrap_or(false) {
                let owned = ctx.tickers.borrow_and_update().clone();
                market.retain(|t| owned.contains(t));
            }
            let started = std::time::Instant::now();
            let quotes = market.tick(ctx.tickers.borrow().iter(), ctx.interval, now);
            ctx.metrics
                .fetch_duration
                .observe(started.elapsed().as_secs_f64());
            if !ctx.deliver(quotes).await {
                return Ok(());
            }
        }
    }
}

/// 9:30-16:00 America/New_York, Monday to Friday (holidays are not modelled).
fn is_regular_session(now: Timestamp, tz: &TimeZone) -> bool {
    let local = now.to_zoned(tz.clone());
    let weekday = local.weekday();
    if matches!(weekday, Weekday::Saturday | Weekday::Sunday) {
        return false;
    }
    let minutes = i32::from(local.hour()) * 60 + i32::from(local.minute());
    (9 * 60 + 30..16 * 60).contains(&minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_session_is_new_york_time() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let open: Timestamp = "2026-01-20T14:30:00Z".parse().unwrap(); // 9:30 EST, a Tuesday
        assert!(is_regular_session(open, &tz));
        let before: Timestamp = "2026-01-20T14:29:00Z".parse().unwrap();
        assert!(!is_regular_session(before, &tz));
        let saturday: Timestamp = "2026-01-24T16:00:00Z".parse().unwrap();
        assert!(!is_regular_session(saturday, &tz));
    }
}
