//! Sources: where quotes come from. Each source lives in its own folder with the same parts
//! (its settings, the connector, its tests) and implements [`Source`]: a loop that delivers
//! batches of [`RawQuote`]s for the shard's current tickers until shutdown.

pub mod alpaca;
pub mod polygon;
pub mod replay;
pub mod synthetic;
pub mod trading_day;
pub mod websocket;
pub mod yahoo;
pub mod yahoo_stream;

use std::sync::Arc;
use std::time::Duration;

use quotestream_api::TickerSet;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::quote::RawQuote;
use crate::rate_limit::RateLimiter;

/// What a running source gets from the worker.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The shard's tickers; changes when the operator reassigns (no restart).
    pub tickers: watch::Receiver<TickerSet>,
    /// Polling interval (the synthetic source's tick).
    pub interval: Duration,
    /// Where batches go. Bounded: a slow pipeline holds the source back.
    pub out: mpsc::Sender<Vec<RawQuote>>,
    pub metrics: Metrics,
    /// This shard's share of the stream's request budget.
    pub rate_limit: Arc<RateLimiter>,
    /// Cancelled on shutdown: stop fetching and return.
    pub shutdown: CancellationToken,
}

impl SourceContext {
    /// Delivers a batch; false when the pipeline is gone (shutting down).
    pub async fn deliver(&self, quotes: Vec<RawQuote>) -> bool {
        if quotes.is_empty() {
            return true;
        }
        self.metrics.quotes_fetched.inc_by(quotes.len() as u64);
        self.out.send(quotes).await.is_ok()
    }
}

/// A source failure that stops the worker (a configuration the source cannot work with).
/// Transient failures (network, 5xx, 429) are retried inside the source and only counted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Fatal(String),
}

/// A market-data source.
pub trait Source: Send + 'static {
    /// Runs until `ctx.shutdown` is cancelled (then returns Ok) or a fatal error.
    fn run(self, ctx: SourceContext) -> impl Future<Output = Result<(), SourceError>> + Send;
}
