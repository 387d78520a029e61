//! The bounded queue in front of each sink. Its capacity is counted in quotes, so memory stays
//! bounded whatever the batch sizes. Durable sinks use [`FullPolicy::Block`]: a full queue makes
//! the pipeline wait, which holds back the source (back-pressure). Pub/Sub uses
//! [`FullPolicy::DropOldest`]: it must never slow the durable sinks down, so when it falls
//! behind, the oldest batches go and are counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use crate::sinks::Batch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    Block,
    DropOldest,
}

#[derive(Debug)]
struct State {
    batches: VecDeque<Batch>,
    quotes: usize,
    senders_alive: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    policy: FullPolicy,
    /// Wakes the receiver when a batch arrives or the sender closes.
    filled: Notify,
    /// Wakes a blocked sender when room appears.
    drained: Notify,
    queued: IntGauge,
    dropped: IntCounter,
    /// Counts what is still queued when both ends are gone (see `Drop`).
    left_over: IntCounter,
}

/// Once the pipeline and the sink have both let go of the queue, nobody will send what is
/// still in it: a sink that gave up at the drain deadline while the pipeline still fed it, or
/// one stopped at the hard deadline. Counted (`reason="shutdown"`), never lost silently.
impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if st.quotes == 0 {
            return;
        }
        self.left_over.inc_by(st.quotes as u64);
        tracing::error!(
            quotes = st.quotes,
            "quotes still queued for a sink that has stopped; dropped (counted in streamer_sink_dropped_quotes_total{{reason=\"shutdown\"}})"
        );
        self.queued.set(0);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque inconsistent (every update is
        // a single push/pop), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pipeline's end of a sink queue.
#[derive(Debug)]
pub struct QueueSender(Arc<Shared>);

/// The sink's end.
#[derive(Debug)]
pub struct QueueReceiver(Arc<Shared>);

/// The queue of the sink labelled `sink`: its depth in `streamer_sink_queued_quotes{sink}`, its
/// evictions in `streamer_sink_dropped_quotes_total{sink, reason="queue_full"}`, what is left in
/// it once both ends are gone in `{sink, reason="shutdown"}`.
pub fn for_sink(
    metrics: &crate::metrics::Metrics,
    sink: &str,
    capacity: usize,
    policy: FullPolicy,
) -> (QueueSender, QueueReceiver) {
    channel(
        capacity,
        policy,
        metrics.queued_quotes.with_label_values(&[sink]),
        metrics.dropped(sink, crate::metrics::DropReason::QueueFull),
        metrics.dropped(sink, crate::metrics::DropReason::Shutdown),
    )
}

/// A queue holding at most `capacity` quotes (a single larger batch is admitted when the queue
/// is empty, so no batch can block forever). `queued` tracks its size; `dropped` counts quotes
/// evicted by [`FullPolicy::DropOldest`]; `left_over` what is still queued when both ends have
/// been dropped.
pub fn channel(
    capacity: usize,
    policy: FullPolicy,
    queued: IntGauge,
    dropped: IntCounter,
    left_over: IntCounter,
) -> (QueueSender, QueueReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            batches: VecDeque::new(),
            quotes: 0,
            senders_alive: true,
        }),
        capacity: capacity.max(1),
        policy,
        filled: Notify::new(),
        drained: Notify::new(),
        queued,
        dropped,
        left_over,
    });
    (QueueSender(shared.clone()), QueueReceiver(shared))
}

impl QueueSender {
    /// Enqueues a batch, waiting for room (Block) or evicting the oldest batches (DropOldest).
    pub async fn send(&self, batch: Batch) {
        let n = batch.len();
        loop {
            let room = self.0.drained.notified();
            {
                let mut st = self.0.lock();
                let fits = st.quotes + n <= self.0.capacity || st.batches.is_empty();
                if !fits && self.0.policy == FullPolicy::DropOldest {
                    while st.quotes + n > self.0.capacity {
                        let Some(old) = st.batches.pop_front() else {
                            break;
                        };
                        st.quotes -= old.len();
                        self.0.dropped.inc_by(old.len() as u64);
                    }
                }
                if st.quotes + n <= self.0.capacity || st.batches.is_empty() {
                    st.quotes += n;
                    st.batches.push_back(batch);
                    self.0.queued.set(st.quotes as i64);
                    drop(st);
                    self.0.filled.notify_one();
                    return;
                }
            }
            room.await;
        }
    }

    /// Quotes waiting now.
    pub fn len(&self) -> usize {
        self.0.lock().quotes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        self.0.lock().senders_alive = false;
        self.0.filled.notify_one();
    }
}

impl QueueReceiver {
    /// The next batch; `None` once the sender is gone and the queue is empty (drained).
    pub async fn recv(&mut self) -> Option<Batch> {
        loop {
            let arrival = self.0.filled.notified();
            if let Some(batch) = self.try_recv() {
                return Some(batch);
            }
            if !self.0.lock().senders_alive {
                return None;
            }
            arrival.await;
        }
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&self) -> Option<Batch> {
        let mut st = self.0.lock();
        let batch = st.batches.pop_front()?;
        st.quotes -= batch.len();
        self.0.queued.set(st.quotes as i64);
        drop(st);
        self.0.drained.notify_one();
        Some(batch)
    }

    /// Quotes waiting now.
    pub fn len(&self) -> usize {
        self.0.lock().quotes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the pipeline has closed the queue (shutdown); batches may still be waiting. A
    /// sink retrying a batch checks this to bound its retries by the drain deadline.
    pub fn is_closed(&self) -> bool {
        !self.0.lock().senders_alive
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::quote::{RawQuote, validate};

    /// `n` valid quotes (for the sink core's tests too).
    pub(crate) fn batch(n: usize) -> Batch {
        let now = jiff::Timestamp::now();
        (0..n)
            .map(|i| {
                validate(
                    RawQuote::trade(
                        "AAPL",
                        now - jiff::SignedDuration::from_millis(i as i64),
                        1.0,
                        0.0,
                        "synthetic",
                    ),
                    now,
                )
                .unwrap()
            })
            .collect::<Vec<_>>()
            .into()
    }

    pub(crate) fn gauges() -> (IntGauge, IntCounter) {
        (
            IntGauge::new("q", "q").unwrap(),
            IntCounter::new("d", "d").unwrap(),
        )
    }

    /// A counter for what is left in a queue both ends dropped.
    pub(crate) fn left_over() -> IntCounter {
        IntCounter::new("l", "l").unwrap()
    }

    #[tokio::test]
    async fn what_is_left_when_both_ends_are_gone_is_counted() {
        let (q, d) = gauges();
        let left = left_over();
        let (tx, rx) = channel(100, FullPolicy::Block, q, d, left.clone());
        tx.send(batch(3)).await;
        drop(rx);
        // The sink is gone; the pipeline still sends (it has not reached its deadline yet).
        tx.send(batch(4)).await;
        assert_eq!(left.get(), 0, "the pipeline still holds the queue");
        drop(tx);
        assert_eq!(left.get(), 7);
        let (q, d) = gauges();
        let left = left_over();
        let (tx, mut rx) = channel(100, FullPolicy::Block, q, d, left.clone());
        tx.send(batch(2)).await;
        drop(tx);
        assert!(rx.recv().await.is_some());
        drop(rx);
        assert_eq!(left.get(), 0, "a drained queue leaves nothing");
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_counts_the_rest() {
        let (q, d) = gauges();
        let (tx, mut rx) = channel(
            10,
            FullPolicy::DropOldest,
            q.clone(),
            d.clone(),
            left_over(),
        );
        for _ in 0..5 {
            tx.send(batch(4)).await;
        }
        assert_eq!(rx.len(), 8, "two batches of 4 fit in 10");
        assert_eq!(d.get(), 12, "three batches of 4 were evicted");
        assert_eq!(q.get(), 8);
        drop(tx);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none(), "drained and closed");
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let (q, d) = gauges();
        let (tx, mut rx) = channel(8, FullPolicy::Block, q, d.clone(), left_over());
        let producer = tokio::spawn(async move {
            for _ in 0..20 {
                tx.send(batch(4)).await;
            }
        });
        let mut received = 0;
        while let Some(b) = rx.recv().await {
            assert!(rx.len() <= 8, "never more than the capacity waits");
            received += b.len();
        }
        tokio::time::timeout(Duration::from_secs(5), producer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(received, 80);
        assert_eq!(d.get(), 0);
    }

    #[tokio::test]
    async fn an_oversized_batch_is_admitted_into_an_empty_queue() {
        let (q, d) = gauges();
        let (tx, mut rx) = channel(2, FullPolicy::Block, q, d, left_over());
        tx.send(batch(5)).await;
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(5));
    }
}
