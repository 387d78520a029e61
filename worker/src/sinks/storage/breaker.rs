//! The storage sink's circuit breaker, as pure logic: the caller passes the time in, so every
//! transition is tested deterministically.
//!
//! closed ──N consecutive failures──► open ──open period over──► half-open (one trial)
//!   ▲                                  ▲                              │
//!   └────────────── success ───────────┼──────────────────────────────┤
//!                                      └────────── failure ───────────┘
//!
//! Any answer from storage that is not a retryable failure counts as a success: a 400 proves the
//! service is up, so it closes the breaker too.

use std::time::{Duration, Instant};

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; `failures` consecutive ones have failed so far.
    Closed { failures: u32 },
    /// No request until `until`.
    Open { until: Instant },
    /// One trial request was let through at `since`; its outcome decides. If it never reports
    /// (the caller was cancelled), another trial is allowed one open period later.
    HalfOpen { since: Instant },
}

/// The answer to "may I send a request now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// Ask again at this instant.
    WaitUntil(Instant),
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: BreakerState,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` (at least 1) consecutive failures and
    /// stays open for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// True unless closed: the metric reports half-open as open, since normal traffic is still
    /// held back then.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, BreakerState::Closed { .. })
    }

    /// Whether a request may go now. Moving from open to half-open happens here, so a `Go`
    /// while not closed is the one trial request.
    pub fn poll(&mut self, now: Instant) -> Permit {
        match self.state {
            BreakerState::Closed { .. } => Permit::Go,
            BreakerState::Open { until } if now < until => Permit::WaitUntil(until),
            BreakerState::HalfOpen { since } if now < since + self.open_for => {
                Permit::WaitUntil(since + self.open_for)
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::HalfOpen { since: now };
                Permit::Go
            }
        }
    }

    /// The request got an answer that shows storage is up.
    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// The request failed in a way worth retrying (timeout, connection, 408, 429, 5xx).
    pub fn on_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => BreakerState::Open {
                until: now + self.open_for,
            },
            // A request started before the breaker opened (not possible with one request at a
            // time, but harmless): the open period already running stands.
            open @ BreakerState::Open { .. } => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPEN_FOR: Duration = Duration::from_secs(60);

    #[test]
    fn opens_after_threshold_then_half_opens_for_one_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(5, OPEN_FOR);
        for i in 0..4 {
            assert_eq!(b.poll(t0), Permit::Go);
            b.on_failure(t0);
            assert_eq!(b.state(), BreakerState::Closed { failures: i + 1 });
        }
        assert_eq!(b.poll(t0), Permit::Go);
        b.on_failure(t0);
        assert!(b.is_open());
        assert_eq!(b.poll(t0 + OPEN_FOR / 2), Permit::WaitUntil(t0 + OPEN_FOR));
        // The open period is over: exactly one trial.
        let t1 = t0 + OPEN_FOR;
        assert_eq!(b.poll(t1), Permit::Go);
        assert_eq!(b.state(), BreakerState::HalfOpen { since: t1 });
        assert_eq!(b.poll(t1), Permit::WaitUntil(t1 + OPEN_FOR));
        // The trial fails: open again for a full period.
        b.on_failure(t1);
        assert_eq!(
            b.poll(t1 + OPEN_FOR - Duration::from_millis(1)),
            Permit::WaitUntil(t1 + OPEN_FOR)
        );
        let t2 = t1 + OPEN_FOR;
        assert_eq!(b.poll(t2), Permit::Go);
        b.on_success();
        assert!(!b.is_open());
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, OPEN_FOR);
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert!(!b.is_open(), "only two consecutive failures");
        b.on_failure(t0);
        assert!(b.is_open());
    }

    #[test]
    fn a_lost_trial_is_replaced_after_one_open_period() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, OPEN_FOR);
        b.on_failure(t0);
        assert_eq!(b.poll(t0 + OPEN_FOR), Permit::Go);
        // No outcome reported (the caller was cancelled).
        assert_eq!(b.poll(t0 + OPEN_FOR * 2), Permit::Go);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Time passes, then a request is attempted; `Some(ok)` reports its outcome, `None`
        /// loses it (the caller was cancelled).
        Attempt {
            after_ms: u64,
            outcome: Option<bool>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            0u64..400,
            prop_oneof![8 => any::<bool>().prop_map(Some), 1 => Just(None)],
        )
            .prop_map(|(after_ms, outcome)| Op::Attempt { after_ms, outcome })
    }

    proptest! {
        /// Against a small model: the breaker is open exactly when the requests since the last
        /// success failed at least `threshold` times; while open, no request goes before the
        /// open period since the last failure (or trial) is over, and one always goes after.
        #[test]
        fn breaker_invariants(threshold in 1u32..8, open_ms in 1u64..300,
                              ops in proptest::collection::vec(op(), 0..200)) {
            let open_for = Duration::from_millis(open_ms);
            let mut b = Breaker::new(threshold, open_for);
            let mut now = Instant::now();
            let mut consecutive = 0u32;
            // The earliest instant the model allows the next request while open.
            let mut blocked_until: Option<Instant> = None;
            for Op::Attempt { after_ms, outcome } in ops {
                now += Duration::from_millis(after_ms);
                let permit = b.poll(now);
                match blocked_until {
                    Some(until) if now < until => prop_assert_eq!(permit, Permit::WaitUntil(until)),
                    _ => prop_assert_eq!(permit, Permit::Go),
                }
                if permit != Permit::Go {
                    prop_assert!(b.is_open());
                    continue;
                }
                let was_open = b.is_open();
                if was_open {
                    // The trial holds the next one back for an open period.
                    blocked_until = Some(now + open_for);
                }
                match outcome {
                    Some(true) => {
                        b.on_success();
                        consecutive = 0;
                        blocked_until = None;
                    }
                    Some(false) => {
                        b.on_failure(now);
                        consecutive = consecutive.saturating_add(1);
                        if consecutive >= threshold {
                            blocked_until = Some(now + open_for);
                        }
                    }
                    None => {}
                }
                prop_assert_eq!(b.is_open(), consecutive >= threshold,
                    "state {:?} after {} consecutive failures", b.state(), consecutive);
                if let BreakerState::Closed { failures } = b.state() {
                    prop_assert_eq!(failures, consecutive);
                    prop_assert!(failures < threshold);
                }
            }
        }
    }
}
