//! The ranges every duration and size the worker reads from outside (worker.json, the command
//! line) must fall in, and the limits on what a vendor may send. Values outside are refused at
//! start with an error naming the setting: a zero period panics `tokio::time::interval` (an
//! abort in a release build), a duration near `u64::MAX` nanoseconds overflows the `Instant`
//! it is added to, and an unbounded frame or body is memory a 128 Mi pod does not have.

use std::time::Duration;

use quotestream_api::duration::Bounds;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// `interval` of worker.json and `local --interval`: the tick of polling and synthetic sources.
/// The CRD admits 100ms..1h; a hand-written worker.json (benchmarks) may go down to 1ms.
pub const INTERVAL: Bounds = Bounds::new(MS, HOUR);
/// `run --grace`: the drain budget on SIGTERM.
pub const GRACE: Bounds = Bounds::new(MS, HOUR);
/// `run --reload-every`: how often worker.json is re-read.
pub const RELOAD_EVERY: Bounds = Bounds::new(Duration::from_millis(10), HOUR);
/// `local --duration`.
pub const LOCAL_DURATION: Bounds = Bounds::new(MS, Duration::from_secs(365 * 24 * 3600));
/// `run --max-clock-skew`: how far ahead of the clock a quote may be dated.
pub const MAX_CLOCK_SKEW: Bounds = Bounds::new(Duration::ZERO, HOUR);
/// `spec.source.yahoo.timeout`: one HTTP request.
pub const HTTP_TIMEOUT: Bounds = Bounds::new(Duration::from_millis(10), Duration::from_secs(300));
/// `spec.source.idleTimeout`: shorter cannot tell a quiet market from a dead connection.
pub const IDLE_TIMEOUT: Bounds = Bounds::new(SECOND, HOUR);
/// `spec.source.coalesce` (0 means "every tick", like unset).
pub const COALESCE: Bounds = Bounds::new(Duration::ZERO, DAY);

/// Largest WebSocket message (and frame) a streaming source accepts. Vendors send a few KiB
/// per message (Alpaca and Massive batch ticks into arrays of at most a few hundred); a larger
/// one is refused while its header is read, before its payload is buffered, and the
/// connection is replaced (`streamer_source_reconnects_total{reason="oversized"}`).
pub const MAX_WS_MESSAGE_BYTES: usize = 4 << 20;
/// Largest HTTP response body the Yahoo source reads: a 200-symbol answer is about 0.5 MiB.
/// A larger body is refused as it streams in (`streamer_errors_total{type="oversized"}`).
pub const MAX_HTTP_BODY_BYTES: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [(&str, Bounds); 7] = [
        ("interval", INTERVAL),
        ("grace", GRACE),
        ("reload-every", RELOAD_EVERY),
        ("duration", LOCAL_DURATION),
        ("timeout", HTTP_TIMEOUT),
        ("idleTimeout", IDLE_TIMEOUT),
        ("coalesce", COALESCE),
    ];

    proptest! {
        /// Whatever the text, an accepted duration is one the runtime can act on: a non-zero
        /// `tokio::time::interval` period (where the setting is one) and an `Instant` sum that
        /// does not overflow.
        #[test]
        fn accepted_durations_never_panic_the_runtime(
            text in "[0-9]{1,22}(\\.[0-9]{1,9})?(ns|us|ms|s|m|h)|\\PC{0,12}",
        ) {
            for (name, bounds) in ALL {
                if let Ok(d) = bounds.parse(&text) {
                    prop_assert!(d <= bounds.max, "{name}: {d:?}");
                    prop_assert!(std::time::Instant::now().checked_add(d).is_some(), "{name}");
                    if name != "coalesce" {
                        prop_assert!(!d.is_zero(), "{name} accepted zero");
                    }
                }
            }
        }
    }
}
