//! `yahoo`: polls Yahoo Finance's v7 quote API, many symbols per request.
//!
//! Every interval: take the shard's current tickers, split them into chunks of
//! `symbolsPerRequest`, and fetch a few chunks at once, each request spending a token of the
//! shard's budget. Share classes are asked for in Yahoo's spelling (`BRK-B`) and come back
//! canonical (`BRK.B`). A cycle that overruns the interval makes the next tick be skipped, not
//! bunched. Failures of one chunk (after retries) cost that chunk for one cycle, never the
//! source: they are counted in `streamer_errors_total{type="fetch"}`. A symbol Yahoo has no
//! quote for (unknown, delisted, no price) is counted in `{type="missing_quote"}` each cycle and
//! logged once per symbol until it has a quote again.

mod client;
mod config;
mod crumb;
mod missing;
pub mod symbol;
mod wire;

use std::collections::HashMap;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream;
use quotestream_api::Ticker;
use tokio::time::MissedTickBehavior;

pub use client::{FetchError, USER_AGENT, YahooClient};
pub(crate) use client::{excerpt, read_body};
pub use config::DEFAULT_BASE_URL;
pub(crate) use config::check_url;
pub use config::{RetryPolicy, YahooConfig};
pub use missing::ERROR_TYPE as MISSING_QUOTE_ERROR;
pub use wire::{DecodeError, Decoded, Unusable, YahooQuote, decode};

use self::missing::MissingQuotes;
use super::{Source, SourceContext, SourceError};
use crate::quote::RawQuote;

/// How `spec.source.type` names this source.
pub const NAME: &str = "yahoo";

#[derive(Debug)]
pub struct YahooSource {
    config: YahooConfig,
    client: YahooClient,
    missing: MissingQuotes,
}

impl YahooSource {
    /// Fails only on settings no request could work with (a bad URL).
    pub fn new(config: YahooConfig) -> Result<Self, SourceError> {
        Ok(Self {
            client: YahooClient::new(&config)?,
            config,
            missing: MissingQuotes::default(),
        })
    }

    /// One poll of every ticker; false when the pipeline is gone.
    async fn cycle(&self, tickers: &[Ticker], ctx: &SourceContext) -> bool {
        let started = Instant::now();
        // The futures are made up front: a stream that maps with a closure over borrowed
        // chunks is not provably `Send` (a known limit of rustc's higher-ranked inference).
        let fetches: Vec<_> = tickers
            .chunks(self.config.symbols_per_request.max(1))
            .map(|chunk| self.fetch_chunk(chunk, ctx))
            .collect();
        let mut chunks = stream::iter(fetches).buffer_unordered(self.config.concurrency.max(1));
        // Each chunk is delivered as soon as it arrives: a slow or retried chunk does not
        // hold back the others.
        while let Some(quotes) = chunks.next().await {
            if !ctx.deliver(quotes).await {
                return false;
            }
        }
        ctx.metrics
            .fetch_duration
            .observe(started.elapsed().as_secs_f64());
        true
    }

    async fn fetch_chunk(&self, chunk: &[Ticker], ctx: &SourceContext) -> Vec<RawQuote> {
        let symbols: Vec<String> = chunk.iter().map(symbol::to_yahoo).collect();
        let decoded = match self.client.fetch(&symbols, ctx).await {
            Ok(decoded) => decoded,
            Err(e) => {
                ctx.metrics
                    .errors
                    .with_label_values(&[e.metric_label()])
                    .inc();
                tracing::warn!(
                    error = %e,
                    symbols = symbols.len(),
                    first = %symbols.first().map_or("", String::as_str),
                    "yahoo: no quotes for this chunk this cycle"
                );
                return Vec::new();
            }
        };
        let undecodable: HashMap<&str, &str> = decoded
            .bad_entries
            .iter()
            .map(|(symbol, error)| (symbol.as_str(), error.as_str()))
            .collect();
        let mut results: HashMap<&str, &wire::YahooQuote> = decoded
            .quotes
            .iter()
            .map(|q| (q.symbol.as_str(), q))
            .collect();
        let mut quotes = Vec::with_capacity(chunk.len());
        for (ticker, symbol) in chunk.iter().zip(&symbols) {
            match results
                .remove(symbol.as_str())
                .map(wire::YahooQuote::to_raw)
            {
                Some(Ok(raw)) => {
                    self.missing.resolved(ticker);
                    quotes.push(raw);
                }
                Some(Err(why)) => self.missing.report(ticker, &why, &ctx.metrics),
                None => match undecodable.get(symbol.as_str()) {
                    Some(error) => self.missing.report(
                        ticker,
                        &format!("its result did not decode: {error}"),
                        &ctx.metrics,
                    ),
                    None => self.missing.report(ticker, &NotInAnswer, &ctx.metrics),
                },
            }
        }
        quotes
    }
}

/// A requested symbol absent from `result`: Yahoo does not know it.
#[derive(Debug)]
struct NotInAnswer;

impl std::fmt::Display for NotInAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Yahoo left it out of its answer (unknown symbol?); check the ticker list")
    }
}

impl Source for YahooSource {
    async fn run(self, mut ctx: SourceContext) -> Result<(), SourceError> {
        if ctx.interval.is_zero() {
            return Err(SourceError::Config(
                "the polling interval is 0; the yahoo source needs spec.interval > 0 (e.g. 5s)"
                    .into(),
            ));
        }
        let mut ticks = tokio::time::interval(ctx.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            // The set may have changed since the last cycle (a reshard): always poll the
            // current one.
            let tickers: Vec<Ticker> = ctx.tickers.borrow_and_update().iter().cloned().collect();
            if tickers.is_empty() {
                continue;
            }
            let delivered = tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Ok(()),
                delivered = self.cycle(&tickers, &ctx) => delivered,
            };
            if !delivered {
                return Ok(());
            }
        }
    }
}
