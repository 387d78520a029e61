//! The one retry backoff of the worker: jittered exponential delays between `min` and `max`,
//! with a random jitter seed (backon without its `std` feature seeds every jitter alike, and
//! workers cut off by the same outage would retry in lockstep). Sinks retry a batch with it
//! until it is written or the drain deadline passes; streaming sources reconnect with it; the
//! Yahoo client bounds it with `with_max_times`.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Jittered exponential backoff from `min` doubling to `max`, without an attempt limit.
pub fn backoff(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_jitter_seed(rand::random())
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;

    use super::*;

    #[test]
    fn delays_stay_between_min_and_twice_max_and_never_end() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let delays: Vec<_> = backoff(min, max).build().take(50).collect();
        assert_eq!(delays.len(), 50, "no attempt limit");
        // backon's jitter adds up to one more delay on top of the exponential one.
        assert!(
            delays.iter().all(|d| *d >= min && *d <= 2 * max),
            "{delays:?}"
        );
    }
}
