//! The request budget of one shard: a token bucket (governor's GCRA) holding this shard's share
//! of the stream's `rateLimit.requestsPerHour`. The operator divides the stream's budget by the
//! shard count, so the shards together never exceed it; on a reshard the share changes and the
//! running worker switches to it without a restart ([`RateLimiter::set_per_hour`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// One share: governor's buckets have a fixed quota, so a new share is a new bucket.
#[derive(Debug)]
struct Bucket {
    limiter: DefaultDirectRateLimiter,
    per_hour: f64,
}

impl Bucket {
    fn new(per_hour: f64, burst: NonZeroU32) -> Self {
        let per_hour = per_hour.max(1.0);
        let period = Duration::from_secs_f64(3600.0 / per_hour);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: DefaultDirectRateLimiter::direct(quota),
            per_hour,
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    current: watch::Sender<Arc<Bucket>>,
    burst: NonZeroU32,
}

impl RateLimiter {
    /// A bucket that refills `per_hour` requests per hour and holds up to `burst` at once.
    pub fn new(per_hour: f64, burst: u32) -> Self {
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let (current, _) = watch::channel(Arc::new(Bucket::new(per_hour, burst)));
        Self { current, burst }
    }

    /// No limit in practice (sources that make no requests).
    pub fn unlimited() -> Self {
        Self::new(3600.0 * 1_000_000.0, u32::MAX)
    }

    /// Waits for one request's token; counts a rate-limit hit (once) when it had to wait. A
    /// share changed while it waits applies at once: the wait continues on the new bucket.
    pub async fn acquire(&self, metrics: &Metrics) {
        let mut changes = self.current.subscribe();
        let mut counted = false;
        loop {
            let bucket = changes.borrow_and_update().clone();
            if bucket.limiter.check().is_ok() {
                return;
            }
            if !counted {
                metrics.rate_limit_hits.inc();
                counted = true;
            }
            tokio::select! {
                _ = bucket.limiter.until_ready() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        // Unreachable while `self` lives (it holds the sender); never spin.
                        bucket.limiter.until_ready().await;
                        return;
                    }
                }
            }
        }
    }

    /// Switches to a new share (a reshard changed `requestsPerHour`); returns whether it
    /// changed. The new bucket starts full, with the same burst.
    pub fn set_per_hour(&self, per_hour: f64) -> bool {
        if per_hour.max(1.0) == self.per_hour() {
            return false;
        }
        self.current
            .send_replace(Arc::new(Bucket::new(per_hour, self.burst)));
        true
    }

    pub fn per_hour(&self) -> f64 {
        self.current.borrow().per_hour
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

    #[tokio::test]
    async fn a_new_share_applies_to_a_request_already_waiting() {
        let m = Metrics::new("t", 0).unwrap();
        // One request per hour: the second one would wait an hour on this share.
        let rl = Arc::new(RateLimiter::new(1.0, 1));
        rl.acquire(&m).await;
        let waiting = tokio::spawn({
            let (rl, m) = (rl.clone(), m.clone());
            async move { rl.acquire(&m).await }
        });
        assert!(
            wait_for(|| m.rate_limit_hits.get() == 1).await,
            "the second request waits"
        );
        assert!(rl.set_per_hour(3_600_000.0), "a different share is applied");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting request is served by the new share")
            .unwrap();
        assert_eq!(rl.per_hour(), 3_600_000.0);
        assert_eq!(m.rate_limit_hits.get(), 1, "one wait, counted once");
    }

    #[tokio::test]
    async fn the_same_share_keeps_the_bucket() {
        let m = Metrics::new("t", 0).unwrap();
        let rl = RateLimiter::new(3_600.0, 1);
        rl.acquire(&m).await;
        assert!(!rl.set_per_hour(3_600.0), "unchanged share");
        // The bucket (and the token just taken) is kept: the next request has to wait.
        assert!(rl.current.borrow().limiter.check().is_err());
        assert!(rl.set_per_hour(1_800.0));
        assert_eq!(rl.per_hour(), 1_800.0);
        assert!(
            rl.current.borrow().limiter.check().is_ok(),
            "a new share starts with a full bucket"
        );
    }

    /// Bounded poll (the condition is set by another task on this runtime).
    async fn wait_for(check: impl Fn() -> bool) -> bool {
        for _ in 0..500 {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}
