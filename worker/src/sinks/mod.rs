//! Sinks: where validated quotes go. Each sink lives in its own folder with the same parts (its
//! settings, the connector, its tests) and implements [`Sink`]: it drains its queue, writes
//! batches, retries what can be retried, and counts what it gives up on. When its queue closes
//! (shutdown) it writes what is left and returns.

pub mod console;
pub mod postgres;
pub mod redis;
pub mod storage;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::SinkStatus;
use crate::metrics::Metrics;
use crate::queue::QueueReceiver;
use crate::quote::Quote;

/// A batch of validated quotes, shared by all sinks (one allocation, many readers).
pub type Batch = Arc<[Quote]>;

/// What a running sink gets from the worker.
#[derive(Debug, Clone)]
pub struct SinkContext {
    pub metrics: Metrics,
    /// How long the sink may keep retrying once its queue has closed (the pod's grace period
    /// minus a margin); after that it counts what is left as dropped and returns.
    pub drain_deadline: Duration,
    /// Cancelled when the worker starts shutting down (before the queue closes: a full queue
    /// closes only once the pipeline has given up on it).
    pub shutdown: CancellationToken,
    /// Where the sink reports its state for `/ready` (up, retrying, failed).
    pub status: SinkStatus,
    /// How a durable sink confirms the batches it took once they are stored (in order), so a
    /// disk buffer in front of it can let them go; does nothing without one.
    pub acks: crate::buffer::Acks,
}

/// A sink failure that stops the worker (bad configuration). Outages are retried, not returned.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink} sink configuration: {reason}")]
    Config { sink: &'static str, reason: String },
}

/// A destination for quotes.
pub trait Sink: Send + 'static {
    /// Label of the sink in metrics and logs (each sink module's `NAME`).
    const NAME: &'static str;
    /// [`Sink::NAME`], for a sink in hand.
    fn name(&self) -> &'static str {
        Self::NAME
    }
    /// Whether quotes must reach it (storage, PostgreSQL) or may be dropped when it falls behind
    /// (Redis Pub/Sub, the console).
    fn durable(&self) -> bool;
    /// Runs until `queue` is closed and drained.
    fn run(
        self,
        queue: QueueReceiver,
        ctx: SinkContext,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}
