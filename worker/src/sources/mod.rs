//! Sources: where quotes come from. Each source lives in its own folder with the same parts
//! and the same shape: its settings implement [`Connector`] (`NAME`, `from_spec(spec, env)`
//! with a [`ConfigError`] naming the field, a `Debug` that redacts secrets, `build()`), and
//! what they build implements [`Source`]: a loop that delivers batches of [`RawQuote`]s for the
//! shard's current tickers until shutdown.

pub mod alpaca;
pub mod hosts;
pub mod market_hours;
pub mod polygon;
pub mod replay;
pub mod synthetic;
pub mod trading_day;
pub mod websocket;
pub mod yahoo;
pub mod yahoo_stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use quotestream_api::TickerSet;
use quotestream_api::crd::Source as SourceSpec;
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
    ///
    /// `streamer_quotes_fetched_total` counts a batch once the pipeline has it, not before: a
    /// source cancelled while it waits here (a Yahoo cycle cut off by shutdown mid-way) never
    /// handed those quotes over, and counting them would break the accounting law
    /// (`crate::accounting`). The send is cancel-safe: cancelled, nothing was sent.
    pub async fn deliver(&self, quotes: Vec<RawQuote>) -> bool {
        if quotes.is_empty() {
            return true;
        }
        let n = quotes.len() as u64;
        if self.out.send(quotes).await.is_err() {
            return false;
        }
        self.metrics.quotes_fetched.inc_by(n);
        true
    }
}

/// A source failure that stops the worker (a configuration the source cannot work with).
/// Transient failures (network, 5xx, 429) are retried inside the source and only counted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Settings that cannot work, found before the source runs.
    #[error("source configuration: {0}")]
    Settings(#[from] ConfigError),
    /// A configuration the running source found unusable (a vendor refused the credentials, a
    /// recording cannot be read, ...): the message names the setting to change.
    #[error("source configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Fatal(String),
}

/// Why a source's settings cannot be used. Every variant names the field and says the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `spec.source.type` names a source whose settings block is absent.
    #[error("source.type {source_type} needs {field}: {fix}")]
    Missing {
        source_type: &'static str,
        field: &'static str,
        fix: &'static str,
    },
    /// A setting has a value the source cannot use (`value` as written, quoted when text).
    #[error("{field} is {value}: {fix}")]
    Invalid {
        field: &'static str,
        value: String,
        fix: String,
    },
    /// A credential the operator passes through the environment is unset or blank.
    #[error("{var} is not set: {fix}")]
    Credential {
        var: &'static str,
        /// The spec field that names the credential's Secret.
        field: &'static str,
        fix: String,
    },
}

impl ConfigError {
    /// The spec field to change.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Missing { field, .. }
            | Self::Invalid { field, .. }
            | Self::Credential { field, .. } => field,
        }
    }
}

/// The one shape of every source's settings: read from the QuoteStream spec and the worker's
/// environment, then built into the source that runs. `Debug` must not print secrets.
pub trait Connector: Sized + std::fmt::Debug {
    /// How `spec.source.type` spells the source.
    const NAME: &'static str;
    /// Its settings block in `spec.source`.
    type Spec;
    /// The block of `source` this connector reads.
    fn spec(source: &SourceSpec) -> Option<&Self::Spec>;
    /// Reads the block (absent: the source's defaults, or an error when it needs one) and what
    /// the operator put in the environment (`contract::env::WORKER_READS`).
    fn from_spec(
        spec: Option<&Self::Spec>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError>;
    /// The source, with the settings all sources of its kind share (`spec.source.coalesce`,
    /// `spec.source.idleTimeout` for the streaming ones).
    fn build(self, source: &SourceSpec) -> Result<AnySource, SourceError>;
}

/// Builds the source `C` reads from `source` and `env`.
pub fn build<C: Connector>(
    source: &SourceSpec,
    env: &HashMap<String, String>,
) -> Result<AnySource, SourceError> {
    C::from_spec(C::spec(source), env)?.build(source)
}

/// Every source a worker can run (a trait with async methods is not object-safe; the enum is).
#[derive(Debug)]
// Built once per worker and moved into its task: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnySource {
    Synthetic(synthetic::SyntheticSource),
    Replay(replay::ReplaySource),
    Yahoo(yahoo::YahooSource),
    YahooStream(websocket::WebsocketSource<yahoo_stream::YahooStream>),
    Alpaca(websocket::WebsocketSource<alpaca::Alpaca>),
    Polygon(websocket::WebsocketSource<polygon::Polygon>),
}

impl AnySource {
    pub async fn run(self, ctx: SourceContext) -> Result<(), SourceError> {
        match self {
            Self::Synthetic(s) => s.run(ctx).await,
            Self::Replay(s) => s.run(ctx).await,
            Self::Yahoo(s) => s.run(ctx).await,
            Self::YahooStream(s) => s.run(ctx).await,
            Self::Alpaca(s) => s.run(ctx).await,
            Self::Polygon(s) => s.run(ctx).await,
        }
    }
}

/// A market-data source.
pub trait Source: Send + 'static {
    /// Runs until `ctx.shutdown` is cancelled (then returns Ok) or a fatal error.
    fn run(self, ctx: SourceContext) -> impl Future<Output = Result<(), SourceError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote() -> RawQuote {
        RawQuote::trade("AAPL", jiff::Timestamp::now(), 1.0, 1.0, "synthetic")
    }

    /// A cycle cancelled while the pipeline is full (shutdown mid-cycle) counts only what the
    /// pipeline received.
    #[tokio::test]
    async fn a_delivery_cancelled_before_the_pipeline_took_it_is_not_counted() {
        let (out, mut input) = mpsc::channel(1);
        let (_tickers, watched) = watch::channel(TickerSet::default());
        let ctx = SourceContext {
            tickers: watched,
            interval: Duration::from_secs(1),
            out,
            metrics: Metrics::new("t", 0).unwrap(),
            rate_limit: Arc::new(RateLimiter::unlimited()),
            shutdown: CancellationToken::new(),
        };
        assert!(ctx.deliver(vec![quote(), quote()]).await);
        let stuck = tokio::time::timeout(
            Duration::from_millis(20),
            ctx.deliver(vec![quote(), quote(), quote()]),
        )
        .await;
        assert!(stuck.is_err(), "the channel is full: the delivery waits");
        assert_eq!(
            ctx.metrics.quotes_fetched.get(),
            2,
            "only what was handed over"
        );
        assert_eq!(input.recv().await.map(|b| b.len()), Some(2));
        assert!(
            input.try_recv().is_err(),
            "the cancelled batch never arrived"
        );
    }
}
