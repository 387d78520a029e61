//! Logging a recurring problem once per period per kind. Every occurrence is still counted in a
//! metric; the log only has to say that it happens and show one example.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The period the worker uses for every recurring warning.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct LogLimiter<K = &'static str> {
    every: Duration,
    last: HashMap<K, Instant>,
}

impl<K: Eq + Hash> Default for LogLimiter<K> {
    fn default() -> Self {
        Self::new(LOG_EVERY)
    }
}

impl<K: Eq + Hash> LogLimiter<K> {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: HashMap::new(),
        }
    }

    /// Whether a problem of this kind should be logged now (and if so, starts its period).
    pub fn due(&mut self, kind: K) -> bool {
        let now = Instant::now();
        match self.last.get_mut(&kind) {
            Some(at) if now.duration_since(*at) < self.every => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                self.last.insert(kind, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_each_kind_once_per_period() {
        let mut limiter = LogLimiter::new(Duration::from_secs(3600));
        assert!(limiter.due("malformed_json"));
        assert!(!limiter.due("malformed_json"));
        assert!(limiter.due("unknown_type"));
        let mut always = LogLimiter::new(Duration::ZERO);
        assert!(always.due("x") && always.due("x"));
    }
}
