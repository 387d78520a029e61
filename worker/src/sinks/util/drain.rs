//! The shutdown clock every sink runs on: once shutdown begins (the worker's shutdown token is
//! cancelled, or the queue closes), every wait and write is cut off at the drain deadline, and
//! what is still unsent then is counted as dropped with reason `shutdown`.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::DropReason;
use crate::queue::QueueReceiver;
use crate::sinks::SinkContext;

/// How often a waiting sink looks whether its queue was closed.
pub const CLOSE_CHECK: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Drain {
    shutdown: CancellationToken,
    grace: Duration,
    since: Option<Instant>,
}

impl Drain {
    /// `shutdown` may be a token that is never cancelled; then only [`Drain::start`] (the queue
    /// closing) starts the clock.
    pub fn new(shutdown: CancellationToken, grace: Duration) -> Self {
        Self {
            shutdown,
            grace,
            since: None,
        }
    }

    /// The clock of a running sink: the worker's shutdown token and drain deadline.
    pub fn for_sink(ctx: &SinkContext) -> Self {
        Self::new(ctx.shutdown.clone(), ctx.drain_deadline)
    }

    /// How long the sink may still retry: `None` while the worker runs, the rest of the drain
    /// deadline once shutdown has begun (the token fired, or `queue` closed).
    pub fn time_left(&mut self, queue: &QueueReceiver) -> Option<Duration> {
        if queue.is_closed() {
            self.start();
        }
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The drain deadline passed: counts `unsent` (in hand) and whatever is still in `queue`
    /// as dropped for shutdown.
    pub fn give_up(
        &self,
        ctx: &SinkContext,
        sink: &'static str,
        unsent: usize,
        queue: &QueueReceiver,
    ) {
        let mut lost = unsent;
        while let Some(batch) = queue.try_recv() {
            lost += batch.len();
        }
        if lost == 0 {
            return;
        }
        ctx.metrics
            .dropped(sink, DropReason::Shutdown)
            .inc_by(lost as u64);
        tracing::error!(
            sink,
            quotes = lost,
            drain_deadline = ?self.grace,
            "quotes still unsent at the drain deadline; dropped (counted in streamer_sink_dropped_quotes_total{{reason=\"shutdown\"}})"
        );
    }

    /// How long retries may go on once shutdown has begun.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Shutdown has begun now (if it had not already).
    pub fn start(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }

    /// When retrying must stop, once shutdown has begun.
    pub fn deadline(&mut self) -> Option<Instant> {
        if self.shutdown.is_cancelled() {
            self.start();
        }
        self.since.map(|since| since + self.grace)
    }

    /// Runs `fut` to completion unless the drain deadline comes first (then `None`). Shutdown
    /// beginning while `fut` runs moves the cut-off in, so a retry loop stuck on a down storage
    /// API notices shutdown: through the token at once, or through `queue` closing (checked
    /// every [`CLOSE_CHECK`]; the queue has no close notification of its own that would not
    /// compete with its receiver).
    pub async fn bounded<F: Future>(
        &mut self,
        fut: F,
        queue: Option<&QueueReceiver>,
    ) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            if queue.is_some_and(QueueReceiver::is_closed) {
                self.start();
            }
            match self.deadline() {
                Some(deadline) if deadline <= Instant::now() => return None,
                Some(deadline) => {
                    return tokio::time::timeout_at(deadline.into(), &mut fut)
                        .await
                        .ok();
                }
                None => {
                    let token = self.shutdown.clone();
                    let check_queue = async {
                        match queue {
                            Some(_) => tokio::time::sleep(CLOSE_CHECK).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        out = &mut fut => return Some(out),
                        () = token.cancelled() => {}
                        () = check_queue => {}
                    }
                }
            }
        }
    }

    /// Resolves at the drain deadline: never while the worker runs (the clock starts when the
    /// shutdown token fires, or [`Drain::start`]). For a sink that waits on several things at
    /// once (a `select!` over its queue and its writes in flight).
    pub async fn expired(&mut self) {
        if self.deadline().is_none() {
            self.shutdown.clone().cancelled().await;
        }
        if let Some(deadline) = self.deadline() {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    /// Sleeps until `until`; false when the drain deadline comes first.
    pub async fn sleep_until(&mut self, until: Instant, queue: Option<&QueueReceiver>) -> bool {
        self.bounded(tokio::time::sleep_until(until.into()), queue)
            .await
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real (short) time: the workspace's tokio has no `test-util` to pause the clock.
    #[tokio::test]
    async fn waits_are_cut_at_the_deadline_once_shutdown_begins() {
        let token = CancellationToken::new();
        let mut drain = Drain::new(token.clone(), Duration::from_millis(50));
        assert!(
            drain
                .sleep_until(Instant::now() + Duration::from_millis(10), None)
                .await
        );
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.cancel();
        });
        let begun = Instant::now();
        assert!(
            !drain
                .sleep_until(begun + Duration::from_secs(3600), None)
                .await,
            "the hour-long wait ends at the deadline"
        );
        assert!(begun.elapsed() < Duration::from_secs(60));
        assert!(
            drain.bounded(async { 1 }, None).await.is_none(),
            "past the deadline"
        );
    }

    #[tokio::test]
    async fn expired_waits_for_shutdown_then_for_the_deadline() {
        let token = CancellationToken::new();
        let mut drain = Drain::new(token.clone(), Duration::from_millis(30));
        let waiting = tokio::time::timeout(Duration::from_millis(50), drain.expired()).await;
        assert!(waiting.is_err(), "no deadline while the worker runs");
        token.cancel();
        let begun = Instant::now();
        drain.expired().await;
        assert!(begun.elapsed() >= Duration::from_millis(30));
        assert!(drain.bounded(async { 1 }, None).await.is_none(), "past it");
    }

    #[tokio::test]
    async fn the_queue_closing_starts_the_clock_too() {
        let mut drain = Drain::new(CancellationToken::new(), Duration::from_millis(200));
        assert_eq!(drain.deadline(), None);
        drain.start();
        let deadline = drain.deadline().unwrap();
        drain.start();
        assert_eq!(drain.deadline(), Some(deadline), "the first start counts");
        assert!(drain.sleep_until(Instant::now(), None).await);
        assert!(
            !drain
                .sleep_until(Instant::now() + Duration::from_secs(3600), None)
                .await
        );
    }

    #[tokio::test]
    async fn a_closed_queue_is_noticed_while_waiting() {
        let (tx, rx) = crate::queue::channel(
            crate::footprint::budget_for_quotes(10),
            crate::queue::FullPolicy::Block,
            crate::queue::tests::gauges(),
        );
        let mut drain = Drain::new(CancellationToken::new(), Duration::from_millis(50));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(tx);
        });
        assert!(
            !drain
                .sleep_until(Instant::now() + Duration::from_secs(3600), Some(&rx))
                .await,
            "the close started the drain clock, whose deadline ended the wait"
        );
    }
}
