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

/// `queueBytes` of worker.json and `run --queue-bytes`: the byte budget of each sink queue.
pub const QUEUE_BYTES: ByteBounds = ByteBounds {
    min: quotestream_api::worker_config::MIN_QUEUE_BYTES,
    max: quotestream_api::worker_config::MAX_QUEUE_BYTES,
};

/// `sinks.<sink>.buffer.maxSize`: the bound of a disk buffer, from room for a few of the largest
/// batches to far more disk than a pod gets.
pub const BUFFER_MAX_SIZE: ByteBounds = ByteBounds {
    min: quotestream_api::crd::MIN_BUFFER_MAX_SIZE_BYTES,
    max: 1 << 50,
};

/// A range of sizes in bytes, written as a Kubernetes quantity (`16Mi`, `16M`, `16777216`), the
/// form `resources.limits.memory` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteBounds {
    pub min: u64,
    pub max: u64,
}

impl ByteBounds {
    /// `bytes` if it is in range; else an error saying the range.
    pub fn check(&self, bytes: u64) -> Result<u64, String> {
        if (self.min..=self.max).contains(&bytes) {
            Ok(bytes)
        } else {
            Err(format!(
                "{bytes} bytes is out of range: use {} to {}",
                quantity(self.min),
                quantity(self.max)
            ))
        }
    }

    /// Parses a quantity and checks it is in range; whole bytes (a fraction is rounded down).
    pub fn parse(&self, text: &str) -> Result<u64, String> {
        let not_a_size = || {
            format!(
                "{text:?} is not a size: use a number of bytes or a Kubernetes quantity such as 16Mi"
            )
        };
        let bytes = kube_quantity::ParsedQuantity::try_from(text.trim())
            .ok()
            .and_then(|q| q.to_bytes_f64())
            .filter(|b| b.is_finite())
            .ok_or_else(not_a_size)?;
        // Compared as floats first: a huge quantity must not saturate into the range.
        if bytes < self.min as f64 || bytes > self.max as f64 {
            return Err(format!(
                "{text:?} is out of range: use {} to {}",
                quantity(self.min),
                quantity(self.max)
            ));
        }
        self.check(bytes as u64)
    }
}

/// `bytes` in the largest binary unit that divides it (`256Ki`, `64Gi`).
fn quantity(bytes: u64) -> String {
    for (shift, unit) in [(30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queue_bytes_read_as_kubernetes_quantities() {
        assert_eq!(QUEUE_BYTES.parse("16Mi"), Ok(16 << 20));
        assert_eq!(QUEUE_BYTES.parse("16M"), Ok(16_000_000));
        assert_eq!(QUEUE_BYTES.parse("1048576"), Ok(1 << 20));
        assert_eq!(QUEUE_BYTES.parse("0.5Gi"), Ok(512 << 20));
        for bad in ["", "Mi", "16 apples", "-1Mi", "1Ki", "1Ei", "1e400", "NaN"] {
            let err = QUEUE_BYTES.parse(bad).unwrap_err();
            assert!(
                err.contains("256Ki to 64Gi") || err.contains("not a size"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            QUEUE_BYTES.check(1),
            Err("1 bytes is out of range: use 256Ki to 64Gi".into())
        );
    }

    proptest! {
        /// Whatever the text, an accepted budget is within the range.
        #[test]
        fn accepted_queue_bytes_are_in_range(
            text in "-?[0-9]{1,22}(\\.[0-9]{1,9})?(e[0-9]{1,3})?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?|\\PC{0,12}",
        ) {
            if let Ok(b) = QUEUE_BYTES.parse(&text) {
                prop_assert!((QUEUE_BYTES.min..=QUEUE_BYTES.max).contains(&b), "{}: {}", text, b);
            }
        }
    }

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
