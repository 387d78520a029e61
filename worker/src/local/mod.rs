//! `quotestream-worker local` (`make run`): the example S&P 500 QuoteStream streamed on this
//! machine with no cluster and no external services — every shard is a full worker (synthetic
//! source, validation, sinks) in this process, and a live summary shows what they do. When
//! `REDIS_URL`, `DATABASE_URL` or `STORAGE_URL` are set, the shards publish there too.

mod display;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use quotestream_api::contract::env::{DATABASE_URL, REDIS_URL, STORAGE_URL};
use quotestream_api::crd::{
    PostgresSink, RedisSink, SecretKeyRef, SourceType, StorageSink, SyntheticSource,
};
use quotestream_api::sharding::balanced_split;
use quotestream_api::{QuoteStream, Ticker, WorkerConfig};
use tokio_util::sync::CancellationToken;

pub use display::Display;

use crate::assembly::{RunOptions, Summary, Worker, WorkerError};
use crate::sinks::console::ConsoleView;

/// The manifest `make run` streams (examples/sp500.yaml, embedded at build time).
const EXAMPLE: &str = include_str!("../../../examples/sp500.yaml");

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub shards: Option<usize>,
    pub interval: Option<String>,
    pub seed: i64,
    pub tickers: Option<String>,
    pub duration: Option<Duration>,
    pub refresh: Duration,
    /// A streaming source and its URL (a local vendor server: `SOURCE=... make run`) instead of
    /// the synthetic market.
    pub stream: Option<LocalStream>,
}

/// A streaming source for the local run.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalStream {
    pub kind: SourceType,
    pub url: String,
}

impl LocalStream {
    /// `--source`: one of the streaming source types, with the URL of its server.
    pub fn new(kind: &str, url: String) -> Result<Self, WorkerError> {
        let kind: SourceType = serde_json::from_value(serde_json::Value::String(kind.into()))
            .ok()
            .filter(|k: &SourceType| k.is_streaming())
            .ok_or_else(|| {
                WorkerError::Config(format!(
                    "--source {kind}: the local run streams from yahoo-stream, alpaca or polygon (or leave it out for the synthetic market)"
                ))
            })?;
        Ok(Self { kind, url })
    }

    /// Points the stream's source at the local server.
    fn apply(&self, source: &mut quotestream_api::crd::Source) {
        *source = quotestream_api::crd::Source::of(self.kind);
        // Credentials come from the environment (`scripts/run-streaming.sh` sets the local
        // server's); the Secret names only matter inside a cluster.
        let url = Some(self.url.clone());
        match self.kind {
            SourceType::YahooStream => {
                source.yahoo_stream = Some(quotestream_api::crd::YahooStreamSource { url });
            }
            SourceType::Alpaca => {
                source.alpaca = Some(quotestream_api::crd::AlpacaSource {
                    credentials_secret_ref: quotestream_api::crd::AlpacaCredentials {
                        name: "local".into(),
                        key_id_key: None,
                        secret_key_key: None,
                    },
                    feed: None,
                    url,
                    max_connections: None,
                });
            }
            SourceType::Polygon => {
                source.polygon = Some(quotestream_api::crd::PolygonSource {
                    api_key_secret_ref: SecretKeyRef {
                        name: "local".into(),
                        key: "apiKey".into(),
                    },
                    url,
                    max_connections: None,
                });
            }
            // `LocalStream::new` admits only the streaming types.
            _ => {}
        }
    }
}

/// The shard configurations of the local run: the example stream with the synthetic source.
pub fn plan(
    opts: &LocalOptions,
    env: &HashMap<String, String>,
) -> Result<Vec<WorkerConfig>, WorkerError> {
    let stream: QuoteStream = serde_yaml::from_str(EXAMPLE)
        .map_err(|e| WorkerError::Config(format!("examples/sp500.yaml: {e}")))?;
    let mut spec = stream.spec;
    let tickers = match &opts.tickers {
        Some(text) => quotestream_api::TickerSet::parse_list(text)
            .map_err(|e| WorkerError::Config(format!("--tickers: {e}")))?,
        None => spec
            .ticker_set(None)
            .map_err(|e| WorkerError::Config(e.to_string()))?,
    };
    let shards = opts
        .shards
        .unwrap_or(spec.shards as usize)
        .clamp(1, tickers.len().max(1));
    let shards = NonZeroUsize::new(shards)
        .ok_or_else(|| WorkerError::Config("--shards must be at least 1".into()))?;
    if let Some(i) = &opts.interval {
        spec.interval = i.clone();
    }
    match &opts.stream {
        Some(stream) => stream.apply(&mut spec.source),
        None => {
            spec.source = quotestream_api::crd::Source::of(SourceType::Synthetic);
            spec.source.synthetic = Some(SyntheticSource {
                seed: Some(opts.seed),
                market_hours: Some(false),
                volatility_percent: None,
            });
        }
    }
    // Only what the environment provides: no external service is needed.
    spec.sinks.redis = env.contains_key(REDIS_URL).then(|| RedisSink {
        url: None,
        url_secret_ref: None,
        ca_secret_ref: None,
        sentinel: None,
        cluster: None,
        password_secret_ref: None,
        sharded: false,
        channel: quotestream_api::crd::DEFAULT_QUOTES_CHANNEL.into(),
        format: Default::default(),
        health_channel: quotestream_api::crd::DEFAULT_HEALTH_CHANNEL.into(),
        allow_share_classes: false,
    });
    spec.sinks.postgres = env.contains_key(DATABASE_URL).then(|| PostgresSink {
        dsn_secret_ref: SecretKeyRef {
            name: "local".into(),
            key: DATABASE_URL.into(),
        },
        table: quotestream_api::crd::DEFAULT_TABLE.into(),
        buffer: None,
    });
    spec.sinks.storage = env.get(STORAGE_URL).map(|url| StorageSink {
        url: url.clone(),
        batch_size: 500,
        buffer: None,
    });
    let assignment = balanced_split(&tickers, shards);
    let per_hour = spec.source.rate_limit.requests_per_hour as f64 / shards.get() as f64;
    Ok(assignment
        .shards()
        .iter()
        .enumerate()
        .map(|(i, list)| WorkerConfig {
            namespace: "local".into(),
            stream: "sp500".into(),
            shard: i as u32,
            shards: shards.get() as u32,
            tickers: list.iter().map(Ticker::to_string).collect(),
            interval: spec.interval.clone(),
            requests_per_hour: per_hour,
            source: spec.source.clone(),
            sinks: spec.sinks.clone(),
            schedule: spec.schedule.clone(),
            epoch: 1,
            fingerprint: assignment.shard_fingerprint(i),
            queue_bytes: None,
        })
        .collect())
}

/// Runs every shard until Ctrl-C (or `duration`), showing the live summary; returns each
/// shard's summary.
pub async fn run(
    opts: LocalOptions,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<Vec<Summary>, WorkerError> {
    let configs = plan(&opts, &options.env)?;
    let mut workers = Vec::new();
    let mut views = Vec::new();
    for config in configs {
        let view = ConsoleView::default();
        let worker = Worker::new(config.clone(), options.clone(), Some(view.clone()))?;
        views.push((config, view, worker.metrics().clone()));
        workers.push(worker);
    }
    let sinks: Vec<&'static str> = [
        ("redis", REDIS_URL),
        ("storage", STORAGE_URL),
        ("postgres", DATABASE_URL),
    ]
    .into_iter()
    .filter(|(_, var)| options.env.contains_key(*var))
    .map(|(sink, _)| sink)
    .collect();
    let mut display = Display::new(views, sinks);
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(w.run(shutdown.clone())))
        .collect();

    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut refresh = tokio::time::interval(opts.refresh);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                shutdown.cancel();
                break;
            }
            _ = refresh.tick() => display.render(),
        }
    }
    let mut summaries = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => summaries.push(s),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(WorkerError::Config(format!("shard task failed: {e}"))),
        }
    }
    display.finish(&summaries);
    Ok(summaries)
}
