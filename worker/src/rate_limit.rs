//! The request budget of one shard: a token bucket (governor's GCRA) holding this shard's share
//! of the stream's `rateLimit.requestsPerHour`. The operator divides the stream's budget by the
//! shard count, so the shards together never exceed it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};

use crate::metrics::Metrics;

#[derive(Debug)]
pub struct RateLimiter {
    limiter: DefaultDirectRateLimiter,
    per_hour: f64,
}

impl RateLimiter {
    /// A bucket that refills `per_hour` requests per hour and holds up to `burst` at once.
    pub fn new(per_hour: f64, burst: u32) -> Self {
        let per_hour = per_hour.max(1.0);
        let period = Duration::from_secs_f64(3600.0 / per_hour);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: DefaultDirectRateLimiter::direct(quota),
            per_hour,
        }
    }

    /// No limit in practice (sources that make no requests).
    pub fn unlimited() -> Self {
        Self::new(3600.0 * 1_000_000.0, u32::MAX)
    }

    /// Waits for one request's token; counts a rate-limit hit when it had to wait.
    pub async fn acquire(&self, metrics: &Metrics) {
        if self.limiter.check().is_ok() {
            return;
        }
        metrics.rate_limit_hits.inc();
        self.limiter.until_ready().await;
    }

    pub fn per_hour(&self) -> f64 {
        self.per_hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_beyond_the_bucket_waits_and_is_counted() {
        let m = Metrics::new("t", 0).unwrap();
        // 36 000/h = one every 100 ms, burst 2.
        let rl = RateLimiter::new(36_000.0, 2);
        rl.acquire(&m).await;
        rl.acquire(&m).await;
        assert_eq!(m.rate_limit_hits.get(), 0);
        rl.acquire(&m).await;
        assert_eq!(m.rate_limit_hits.get(), 1);
    }
}
