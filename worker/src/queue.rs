//! The bounded queue in front of each sink. Its budget is counted in bytes (the batches' heap
//! footprint, [`crate::footprint::batch_bytes`]), so memory stays bounded whatever the batch
//! sizes and whatever a quote weighs. The rule: a queue holds at most its budget, except that
//! a single batch larger than the whole budget is admitted into an empty queue (so no batch can
//! block forever); then it holds that one batch only.
//!
//! Durable sinks use [`FullPolicy::Block`]: a full queue makes the pipeline wait, which holds
//! back the source (back-pressure). Pub/Sub uses [`FullPolicy::DropOldest`]: it must never slow
//! the durable sinks down, so when it falls behind, the oldest batches go and are counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use crate::footprint::batch_bytes;
use crate::sinks::Batch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    Block,
    DropOldest,
}

/// A queue's gauges: its depth in quotes and in bytes, the quotes it evicted, and what is still
/// queued when both ends have been dropped.
#[derive(Debug, Clone)]
pub struct QueueGauges {
    pub quotes: IntGauge,
    pub bytes: IntGauge,
    pub dropped: IntCounter,
    pub left_over: IntCounter,
}

#[derive(Debug)]
struct State {
    /// Each batch with the bytes it was counted for.
    batches: VecDeque<(Batch, usize)>,
    quotes: usize,
    bytes: usize,
    senders_alive: bool,
}

impl State {
    fn push(&mut self, batch: Batch, bytes: usize) {
        self.quotes += batch.len();
        self.bytes += bytes;
        self.batches.push_back((batch, bytes));
    }

    fn pop(&mut self) -> Option<Batch> {
        let (batch, bytes) = self.batches.pop_front()?;
        self.quotes -= batch.len();
        self.bytes -= bytes;
        Some(batch)
    }

    /// Whether `bytes` more may come in under `budget` (or the queue is empty).
    fn admits(&self, bytes: usize, budget: usize) -> bool {
        self.bytes + bytes <= budget || self.batches.is_empty()
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bytes the queue may hold.
    budget: usize,
    policy: FullPolicy,
    /// Wakes the receiver when a batch arrives or the sender closes.
    filled: Notify,
    /// Wakes a blocked sender when room appears.
    drained: Notify,
    gauges: QueueGauges,
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
        self.gauges.left_over.inc_by(st.quotes as u64);
        tracing::error!(
            quotes = st.quotes,
            "quotes still queued for a sink that has stopped; dropped (counted in streamer_sink_dropped_quotes_total{{reason=\"shutdown\"}})"
        );
        self.gauges.quotes.set(0);
        self.gauges.bytes.set(0);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque inconsistent (every update is
        // a single push/pop), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, st: &State) {
        self.gauges.quotes.set(st.quotes as i64);
        self.gauges.bytes.set(st.bytes as i64);
    }
}

/// The pipeline's end of a sink queue.
#[derive(Debug)]
pub struct QueueSender(Arc<Shared>);

/// The sink's end.
#[derive(Debug)]
pub struct QueueReceiver(Arc<Shared>);

/// The queue of the sink labelled `sink`, holding at most `budget` bytes: its depth in
/// `streamer_sink_queued_quotes{sink}` and `streamer_sink_queued_bytes{sink}`, its evictions
/// in `streamer_sink_dropped_quotes_total{sink, reason="queue_full"}`, what is left in it once
/// both ends are gone in `{sink, reason="shutdown"}`.
pub fn for_sink(
    metrics: &crate::metrics::Metrics,
    sink: &str,
    budget: usize,
    policy: FullPolicy,
) -> (QueueSender, QueueReceiver) {
    metrics
        .queue_budget_bytes
        .with_label_values(&[sink])
        .set(i64::try_from(budget).unwrap_or(i64::MAX));
    channel(
        budget,
        policy,
        QueueGauges {
            quotes: metrics.queued_quotes.with_label_values(&[sink]),
            bytes: metrics.queued_bytes.with_label_values(&[sink]),
            dropped: metrics.dropped(sink, crate::metrics::DropReason::QueueFull),
            left_over: metrics.dropped(sink, crate::metrics::DropReason::Shutdown),
        },
    )
}

/// A queue holding at most `budget` bytes of batches (see the module's rule). `gauges` track
/// its size; `gauges.dropped` counts quotes evicted by [`FullPolicy::DropOldest`],
/// `gauges.left_over` what is still queued when both ends have been dropped.
pub fn channel(
    budget: usize,
    policy: FullPolicy,
    gauges: QueueGauges,
) -> (QueueSender, QueueReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            batches: VecDeque::new(),
            quotes: 0,
            bytes: 0,
            senders_alive: true,
        }),
        budget: budget.max(1),
        policy,
        filled: Notify::new(),
        drained: Notify::new(),
        gauges,
    });
    (QueueSender(shared.clone()), QueueReceiver(shared))
}

impl QueueSender {
    /// Enqueues a batch, waiting for room (Block) or evicting the oldest batches (DropOldest).
    pub async fn send(&self, batch: Batch) {
        let bytes = batch_bytes(&batch);
        loop {
            let room = self.0.drained.notified();
            {
                let mut st = self.0.lock();
                if self.0.policy == FullPolicy::DropOldest {
                    while !st.admits(bytes, self.0.budget) {
                        let Some(old) = st.pop() else { break };
                        self.0.gauges.dropped.inc_by(old.len() as u64);
                    }
                }
                if st.admits(bytes, self.0.budget) {
                    st.push(batch, bytes);
                    self.0.publish(&st);
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

    /// Bytes waiting now (as counted against the budget).
    pub fn bytes(&self) -> usize {
        self.0.lock().bytes
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
        let batch = st.pop()?;
        self.0.publish(&st);
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

    /// Bytes waiting now (as counted against the budget).
    pub fn bytes(&self) -> usize {
        self.0.lock().bytes
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

    use futures_util::FutureExt;
    use proptest::prelude::*;

    use super::*;
    use crate::quote::{RawQuote, validate};

    /// `n` valid quotes of `ticker`.
    pub(crate) fn batch_of(ticker: &str, n: usize) -> Batch {
        let now = jiff::Timestamp::now();
        (0..n)
            .map(|i| {
                validate(
                    RawQuote::trade(
                        ticker,
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

    /// `n` valid quotes (for the sink core's tests too).
    pub(crate) fn batch(n: usize) -> Batch {
        batch_of("AAPL", n)
    }

    pub(crate) fn gauges() -> QueueGauges {
        QueueGauges {
            quotes: IntGauge::new("q", "q").unwrap(),
            bytes: IntGauge::new("b", "b").unwrap(),
            dropped: IntCounter::new("d", "d").unwrap(),
            left_over: IntCounter::new("l", "l").unwrap(),
        }
    }

    #[tokio::test]
    async fn what_is_left_when_both_ends_are_gone_is_counted() {
        let budget = crate::footprint::budget_for_quotes(100);
        let g = gauges();
        let (tx, rx) = channel(budget, FullPolicy::Block, g.clone());
        tx.send(batch(3)).await;
        drop(rx);
        // The sink is gone; the pipeline still sends (it has not reached its deadline yet).
        tx.send(batch(4)).await;
        assert_eq!(g.left_over.get(), 0, "the pipeline still holds the queue");
        drop(tx);
        assert_eq!(g.left_over.get(), 7);
        assert_eq!((g.quotes.get(), g.bytes.get()), (0, 0));
        let g = gauges();
        let (tx, mut rx) = channel(budget, FullPolicy::Block, g.clone());
        tx.send(batch(2)).await;
        drop(tx);
        assert!(rx.recv().await.is_some());
        drop(rx);
        assert_eq!(g.left_over.get(), 0, "a drained queue leaves nothing");
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_counts_the_rest() {
        let g = gauges();
        let two = 2 * batch_bytes(&batch(4));
        let (tx, mut rx) = channel(two + 10, FullPolicy::DropOldest, g.clone());
        for _ in 0..5 {
            tx.send(batch(4)).await;
        }
        assert_eq!(rx.len(), 8, "two batches of 4 fit");
        assert_eq!(g.dropped.get(), 12, "three batches of 4 were evicted");
        assert_eq!(g.quotes.get(), 8);
        assert_eq!(g.bytes.get(), two as i64);
        drop(tx);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none(), "drained and closed");
        assert_eq!((g.quotes.get(), g.bytes.get()), (0, 0));
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let g = gauges();
        let budget = 2 * batch_bytes(&batch(4));
        let (tx, mut rx) = channel(budget, FullPolicy::Block, g.clone());
        let producer = tokio::spawn(async move {
            for _ in 0..20 {
                tx.send(batch(4)).await;
            }
        });
        let mut received = 0;
        while let Some(b) = rx.recv().await {
            assert!(rx.bytes() <= budget, "never more than the budget waits");
            received += b.len();
        }
        tokio::time::timeout(Duration::from_secs(5), producer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(received, 80);
        assert_eq!(g.dropped.get(), 0);
    }

    #[tokio::test]
    async fn an_oversized_batch_is_admitted_into_an_empty_queue_only() {
        let (tx, mut rx) = channel(64, FullPolicy::Block, gauges());
        tx.send(batch(5)).await;
        assert!(
            tx.send(batch(1)).now_or_never().is_none(),
            "nothing joins an over-budget batch"
        );
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(5));
    }

    #[tokio::test]
    async fn the_bound_is_memory_not_a_count_of_quotes() {
        // A budget that holds 1000 quotes in batches of 100 holds fewer in batches of one:
        // each small batch costs its own block, reference counts and slot.
        let budget = 10 * batch_bytes(&batch(100));
        let (tx, rx) = channel(budget, FullPolicy::DropOldest, gauges());
        for _ in 0..20 {
            tx.send(batch(100)).await;
        }
        let in_hundreds = rx.len();
        for _ in 0..2000 {
            tx.send(batch(1)).await;
        }
        assert_eq!(in_hundreds, 1000);
        assert!(
            rx.len() < in_hundreds,
            "{} quotes in batches of one",
            rx.len()
        );
        assert!(rx.bytes() <= budget);
    }

    /// One step of a queue's life: the pipeline offers a batch of `n` quotes of a ticker of
    /// `len` letters, or the sink takes up to `k` batches.
    #[derive(Debug, Clone)]
    enum Step {
        Send { n: usize, len: usize },
        Take { k: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0usize..1500, 1usize..=5).prop_map(|(n, len)| Step::Send { n, len }),
            1 => (1usize..4).prop_map(|k| Step::Take { k }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the batch sizes and the budget: a queue never holds more than its budget,
        /// except one batch alone that is larger than the whole budget; its gauges say what it
        /// holds; a blocking queue loses nothing (a full one refuses the batch: the pipeline
        /// waits) and a dropping one counts every quote it evicts.
        #[test]
        fn a_queue_never_holds_more_than_its_budget_plus_at_most_one_batch(
            budget in 1usize..2_000_000,
            drop_oldest in any::<bool>(),
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            let policy = if drop_oldest { FullPolicy::DropOldest } else { FullPolicy::Block };
            let g = gauges();
            let (tx, rx) = channel(budget, policy, g.clone());
            let (mut sent, mut taken) = (0u64, 0u64);
            for step in steps {
                match step {
                    Step::Send { n, len } => {
                        let b = batch_of(&"ABCDE"[..len], n);
                        // A blocked send is abandoned: the batch never entered the queue.
                        if tx.send(b).now_or_never().is_some() {
                            sent += n as u64;
                        } else {
                            prop_assert_eq!(policy, FullPolicy::Block, "only Block waits");
                        }
                    }
                    Step::Take { k } => {
                        for _ in 0..k {
                            taken += rx.try_recv().map_or(0, |b| b.len() as u64);
                        }
                    }
                }
                let st = rx.0.lock();
                let counted: usize = st.batches.iter().map(|(b, _)| batch_bytes(b)).sum();
                prop_assert_eq!(st.bytes, counted);
                prop_assert!(
                    st.bytes <= budget || st.batches.len() == 1,
                    "{} bytes in {} batches over a budget of {}", st.bytes, st.batches.len(), budget
                );
                prop_assert_eq!(g.bytes.get(), st.bytes as i64);
                prop_assert_eq!(g.quotes.get(), st.quotes as i64);
                prop_assert_eq!(sent, taken + st.quotes as u64 + g.dropped.get());
                if policy == FullPolicy::Block {
                    prop_assert_eq!(g.dropped.get(), 0);
                }
            }
        }
    }
}
