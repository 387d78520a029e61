//! Running a streaming source against a local vendor server, shared by the streaming-source
//! tests (`yahoo_stream_source.rs`, `alpaca_source.rs`, `polygon_source.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use quotestream_api::TickerSet;
use quotestream_worker::metrics::Metrics;
use quotestream_worker::quote::RawQuote;
use quotestream_worker::rate_limit::RateLimiter;
use quotestream_worker::sources::stream::{Protocol, StreamSettings, StreamSource};
use quotestream_worker::sources::{Source, SourceContext, SourceError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything the source should do; failures say what did not happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn set<S: AsRef<str>>(symbols: impl IntoIterator<Item = S>) -> TickerSet {
    TickerSet::from_symbols(symbols).unwrap()
}

/// Settings that make reconnects and silence detection quick enough for tests.
pub fn quick_settings() -> StreamSettings {
    StreamSettings {
        idle_timeout: Duration::from_secs(1),
        ping_every: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(5),
        login_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        ..StreamSettings::default()
    }
}

/// A streaming source running in the test's runtime.
pub struct StreamRun {
    pub tickers: watch::Sender<TickerSet>,
    pub quotes: mpsc::Receiver<Vec<RawQuote>>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), SourceError>>,
}

impl StreamRun {
    pub fn start<P: Protocol + std::fmt::Debug>(
        protocol: P,
        settings: StreamSettings,
        tickers: TickerSet,
    ) -> Self {
        let metrics = Metrics::new("test", 0).unwrap();
        let (tickers_tx, tickers_rx) = watch::channel(tickers);
        let (out, quotes) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let ctx = SourceContext {
            tickers: tickers_rx,
            interval: Duration::from_secs(1),
            out,
            metrics: metrics.clone(),
            rate_limit: Arc::new(RateLimiter::unlimited()),
            shutdown: shutdown.clone(),
        };
        let task = tokio::spawn(StreamSource::new(protocol, settings).run(ctx));
        Self {
            tickers: tickers_tx,
            quotes,
            metrics,
            shutdown,
            task,
        }
    }

    /// The next delivered batch; panics after PATIENCE.
    pub async fn next_batch(&mut self) -> Vec<RawQuote> {
        tokio::time::timeout(PATIENCE, self.quotes.recv())
            .await
            .expect("the source delivered nothing within 10s")
            .expect("the source stopped")
    }

    /// Takes delivered quotes until `check` holds for what arrived so far (and the metrics);
    /// returns them. Panics naming `what` after PATIENCE.
    pub async fn until(
        &mut self,
        what: &str,
        mut check: impl FnMut(&[RawQuote], &Metrics) -> bool,
    ) -> Vec<RawQuote> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while !check(&seen, &self.metrics) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left.min(Duration::from_millis(50)), self.quotes.recv())
                .await
            {
                Ok(Some(batch)) => seen.extend(batch),
                Ok(None) => panic!("the source stopped while waiting for: {what}"),
                Err(_) => assert!(
                    !left.is_zero(),
                    "timed out after {PATIENCE:?} waiting for: {what}"
                ),
            }
        }
        seen
    }

    /// Stops the source and returns how it ended.
    pub async fn stop(self) -> Result<(), SourceError> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the source did not stop within 10s of shutdown")
            .expect("the source task panicked")
    }

    /// Waits for the source to end by itself (a fatal error) and returns how.
    pub async fn ended(self) -> Result<(), SourceError> {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the source did not stop within 10s")
            .expect("the source task panicked")
    }
}

/// Polls `check` (async-friendly: yields between tries) until it holds; panics naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
