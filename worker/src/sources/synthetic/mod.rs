//! `synthetic`: a built-in market simulator that needs nothing external (see [`market`]).

mod config;
mod market;

use jiff::Timestamp;
use quotestream_api::crd::Schedule;
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
        let mut ticks = tokio::time::interval(ctx.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            let now = Timestamp::now();
            if self.config.market_hours && !is_regular_session(now) {
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

/// The NYSE regular session (09:30–16:00 New York time, holidays and early closes included):
/// the same calendar as `spec.schedule` ([`quotestream_api::market`]).
fn is_regular_session(now: Timestamp) -> bool {
    Schedule::nyse_regular().window_at(now).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_session_is_new_york_time() {
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        assert!(
            is_regular_session(at("2026-01-20T14:30:00Z")),
            "9:30 EST, a Tuesday"
        );
        assert!(!is_regular_session(at("2026-01-20T14:29:00Z")));
        assert!(
            !is_regular_session(at("2026-01-24T16:00:00Z")),
            "a Saturday"
        );
        assert!(
            !is_regular_session(at("2026-01-19T16:00:00Z")),
            "Martin Luther King Jr. Day"
        );
    }
}
