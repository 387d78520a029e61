//! The disk buffers' metrics (label `sink`), registered with the worker's other metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct BufferMetrics {
    /// Bytes the buffer's segments take on disk.
    bytes: IntGaugeVec,
    /// Quotes appended to the buffer (accepted: from here on a crash does not lose them).
    written: IntCounterVec,
    /// Quotes read back at start that an earlier process had not delivered.
    replayed: IntCounterVec,
    /// Torn or damaged records detected and skipped.
    corrupt: IntCounterVec,
}

impl BufferMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["sink"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let bytes = IntGaugeVec::new(
            Opts::new(
                "streamer_buffer_bytes",
                "Bytes a sink's disk buffer takes on disk",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(bytes.clone()))?;
        Ok(Self {
            bytes,
            written: counter(
                "streamer_buffer_written_quotes_total",
                "Quotes appended to a sink's disk buffer",
            )?,
            replayed: counter(
                "streamer_buffer_replayed_quotes_total",
                "Quotes an earlier process left in the disk buffer, delivered after a restart",
            )?,
            corrupt: counter(
                "streamer_buffer_corrupt_records_total",
                "Torn or damaged disk buffer records detected and skipped",
            )?,
        })
    }

    pub fn bytes(&self, sink: &str) -> IntGauge {
        self.bytes.with_label_values(&[sink])
    }

    pub fn written(&self, sink: &str) -> IntCounter {
        self.written.with_label_values(&[sink])
    }

    pub fn replayed(&self, sink: &str) -> IntCounter {
        self.replayed.with_label_values(&[sink])
    }

    pub fn corrupt(&self, sink: &str) -> IntCounter {
        self.corrupt.with_label_values(&[sink])
    }
}
