//! The batching loop of the durable sinks.

use std::time::Duration;

use crate::queue::QueueReceiver;
use crate::sinks::Batch;

/// Waits for a batch, then gathers more into `held` until it holds `max` quotes or `linger`
/// has passed since the first. Returns whether the queue is still open. Cancel-safe: whatever
/// was taken from the queue is in `held` (the caller counts it if it gives up).
pub async fn gather(
    queue: &mut QueueReceiver,
    held: &mut Vec<Batch>,
    max: usize,
    linger: Duration,
) -> bool {
    let Some(first) = queue.recv().await else {
        return false;
    };
    let mut quotes = held.iter().map(|b| b.len()).sum::<usize>() + first.len();
    held.push(first);
    let deadline = tokio::time::Instant::now() + linger;
    while quotes < max {
        // `recv` is cancel-safe: a batch is taken from the queue only when it is returned.
        tokio::select! {
            next = queue.recv() => match next {
                Some(batch) => {
                    quotes += batch.len();
                    held.push(batch);
                }
                None => return false,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    true
}

/// The quotes `held` holds.
pub fn len(held: &[Batch]) -> usize {
    held.iter().map(|b| b.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::{batch, gauges};
    use crate::queue::{self, FullPolicy};

    fn queue(quotes: usize) -> (queue::QueueSender, QueueReceiver) {
        let budget = crate::footprint::budget_for_quotes(quotes);
        queue::channel(budget, FullPolicy::Block, gauges())
    }

    #[tokio::test]
    async fn gathers_up_to_the_size_then_lingers_no_longer() {
        let (tx, mut rx) = queue(100);
        for _ in 0..3 {
            tx.send(batch(4)).await;
        }
        let mut held = Vec::new();
        assert!(gather(&mut rx, &mut held, 8, Duration::from_secs(3600)).await);
        assert_eq!(len(&held), 8, "stops once the size is reached");
        let mut held = Vec::new();
        assert!(gather(&mut rx, &mut held, 8, Duration::from_millis(10)).await);
        assert_eq!(len(&held), 4, "the linger ended the wait");
        drop(tx);
        let mut held = Vec::new();
        assert!(!gather(&mut rx, &mut held, 8, Duration::from_millis(10)).await);
        assert!(held.is_empty());
    }
}
