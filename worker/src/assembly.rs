//! The worker assembly: builds the source, the pipeline and the sinks of a shard from its
//! [`WorkerConfig`], runs them, and shuts them down in order (source first, then the pipeline,
//! then the sinks drain within the grace period).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quotestream_api::crd::Source as SourceSpec;
use quotestream_api::sink_failure::SinkFailure;
use quotestream_api::{TickerSet, WorkerConfig};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::{DiskBuffer, DiskBufferConfig};
use crate::config_file::InForce;
use crate::health::Health;
use crate::metrics::{DropReason, Metrics};
use crate::pipeline;
use crate::queue::{self, FullPolicy, QueueReceiver};
use crate::rate_limit::RateLimiter;
use crate::sinks::console::{ConsoleSink, ConsoleView};
use crate::sinks::postgres::{PostgresConfig, PostgresSink};
use crate::sinks::redis::{RedisConfig, RedisSink};
use crate::sinks::storage::{StorageConfig, StorageSink};
use crate::sinks::{Sink, SinkContext, SinkError};
use crate::sources::alpaca::AlpacaConfig;
use crate::sources::market_hours::{self, Clock};
use crate::sources::polygon::PolygonConfig;
use crate::sources::replay::ReplayConfig;
use crate::sources::synthetic::SyntheticConfig;
use crate::sources::yahoo::YahooConfig;
use crate::sources::yahoo_stream::YahooStreamConfig;
use crate::sources::{self, AnySource, Connector, SourceContext, SourceError};

/// Why a worker cannot run. Messages name the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A sink that cannot work until a setting (or the server behind it) is fixed: at start,
    /// the process exits 1 with this line, also in the container's termination message.
    #[error(transparent)]
    SinkFailed(#[from] SinkFailure),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Knobs of a worker process that are not part of the stream's configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long sinks may take to drain after shutdown begins.
    pub grace: Duration,
    /// How far ahead of this node's clock a quote may be dated (`--max-clock-skew`).
    pub max_clock_skew: Duration,
    /// Bytes each sink queue holds before back-pressure (durable) or eviction (Pub/Sub), when
    /// set (`run --queue-bytes`); else worker.json's `queueBytes`, else [`default_queue_bytes`].
    pub queue_bytes: Option<u64>,
    /// The clock of the trading-hours schedule (`--schedule-clock`; the system clock by default).
    pub clock: Clock,
    /// Directory of the durable sinks' disk buffers (`--buffer-dir`); used only by a sink whose
    /// `buffer.type` is `disk`, in `<buffer_dir>/<sink>`.
    pub buffer_dir: PathBuf,
    /// Secrets and overrides from the environment (`quotestream_api::contract::env::WORKER_READS`:
    /// `REDIS_URL`, `DATABASE_URL`, `STORAGE_URL`, the Alpaca credentials, `POLYGON_API_KEY`,
    /// `QUOTESTREAM_REPLAY_FILE`).
    pub env: HashMap<String, String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(25),
            max_clock_skew: Duration::from_secs(5),
            queue_bytes: None,
            clock: Clock::default(),
            buffer_dir: PathBuf::from(quotestream_api::contract::BUFFER_DIR),
            env: HashMap::new(),
        }
    }
}

impl RunOptions {
    /// Reads the variables the worker understands from the process environment.
    pub fn with_process_env(mut self) -> Self {
        for &key in quotestream_api::contract::env::WORKER_READS {
            if let Ok(v) = std::env::var(key) {
                self.env.insert(key.to_owned(), v);
            }
        }
        self
    }
}

/// Share of `--grace` after which the sinks stop delivering and count what is left.
const DRAIN_SHARE: f64 = 0.6;
/// Share of `--grace` after which a sink still running is stopped.
const HARD_STOP_SHARE: f64 = 0.9;

/// What a worker did, reported when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub fetched: u64,
    pub published: Vec<(String, u64)>,
    pub dropped: u64,
}

/// Builds a source from `spec.source` and the environment ([`sources::build`]).
type BuildSource = fn(&SourceSpec, &HashMap<String, String>) -> Result<AnySource, SourceError>;

/// The source table: every source a QuoteStream can name, by how `spec.source.type` spells it.
/// A new source is a row here and a variant of [`AnySource`].
const SOURCES: [(&str, BuildSource); 6] = [
    (YahooConfig::NAME, sources::build::<YahooConfig>),
    (SyntheticConfig::NAME, sources::build::<SyntheticConfig>),
    (ReplayConfig::NAME, sources::build::<ReplayConfig>),
    (YahooStreamConfig::NAME, sources::build::<YahooStreamConfig>),
    (AlpacaConfig::NAME, sources::build::<AlpacaConfig>),
    (PolygonConfig::NAME, sources::build::<PolygonConfig>),
];

/// Builds a sink from the worker configuration and environment; `None` when the
/// configuration does not name it.
type BuildSink = fn(&WorkerConfig, &RunOptions, &Health) -> Result<Option<AnySink>, WorkerError>;

/// The assembly table: every sink a QuoteStream can name, by its label, in the order they are
/// built. A new sink is a row here, a [`SinkConnector`] and a variant of [`AnySink`].
const SINKS: [(&str, BuildSink); 3] = [
    (RedisConfig::NAME, build_sink::<RedisConfig>),
    (StorageConfig::NAME, build_sink::<StorageConfig>),
    (PostgresConfig::NAME, build_sink::<PostgresConfig>),
];

/// The labels of every sink a worker can run: the table's and the console (`make run`).
const SINK_NAMES: [&str; 4] = [
    crate::sinks::console::NAME,
    SINKS[0].0,
    SINKS[1].0,
    SINKS[2].0,
];

/// A sink's settings as the assembly reads them: from its block of `sinks` in worker.json and
/// the environment, then the sink built from them.
trait SinkConnector: Sized {
    /// The sink's label, as `sinks.<NAME>` spells its block.
    const NAME: &'static str;
    /// The settings; `None` when worker.json has no block for this sink.
    fn read(config: &WorkerConfig, options: &RunOptions) -> Option<Result<Self, String>>;
    fn into_sink(self, config: &WorkerConfig, health: &Health) -> Result<AnySink, WorkerError>;
}

/// Builds the sink `C` when its block is set; a settings error is a [`SinkFailure`] of the
/// block `spec.sinks.<name>` (its text names the field).
fn build_sink<C: SinkConnector>(
    config: &WorkerConfig,
    options: &RunOptions,
    health: &Health,
) -> Result<Option<AnySink>, WorkerError> {
    let Some(settings) = C::read(config, options) else {
        return Ok(None);
    };
    let settings =
        settings.map_err(|e| SinkFailure::new(C::NAME, format!("spec.sinks.{}", C::NAME), e))?;
    settings.into_sink(config, health).map(Some)
}

impl SinkConnector for RedisConfig {
    const NAME: &'static str = crate::sinks::redis::NAME;
    fn read(config: &WorkerConfig, options: &RunOptions) -> Option<Result<Self, String>> {
        let spec = config.sinks.redis.as_ref()?;
        let producer = format!(
            "/quotestream/{}/{}/shard-{}",
            config.namespace, config.stream, config.shard
        );
        Some(Self::from_spec(spec, &options.env, producer))
    }
    fn into_sink(self, config: &WorkerConfig, health: &Health) -> Result<AnySink, WorkerError> {
        // The client is built (and a CA file read) once now, so that a file the client cannot
        // use stops the worker at start rather than the sink when it first runs.
        self.ca_pem()
            .map_err(|e| SinkFailure::new(Self::NAME, "spec.sinks.redis.caSecretRef", e))?;
        let shard_label = config.shard.to_string();
        Ok(AnySink::Redis(RedisSink::new(
            self,
            health.clone(),
            shard_label,
        )))
    }
}

impl SinkConnector for StorageConfig {
    const NAME: &'static str = crate::sinks::storage::NAME;
    fn read(config: &WorkerConfig, options: &RunOptions) -> Option<Result<Self, String>> {
        let spec = config.sinks.storage.as_ref()?;
        Some(Self::from_spec(spec, &options.env).map_err(|e| e.to_string()))
    }
    fn into_sink(self, _: &WorkerConfig, _: &Health) -> Result<AnySink, WorkerError> {
        Ok(AnySink::Storage(StorageSink::new(self)?))
    }
}

impl SinkConnector for PostgresConfig {
    const NAME: &'static str = crate::sinks::postgres::NAME;
    fn read(config: &WorkerConfig, options: &RunOptions) -> Option<Result<Self, String>> {
        let spec = config.sinks.postgres.as_ref()?;
        Some(Self::from_spec(spec, &options.env).map_err(|e| e.to_string()))
    }
    fn into_sink(self, _: &WorkerConfig, _: &Health) -> Result<AnySink, WorkerError> {
        Ok(AnySink::Postgres(PostgresSink::new(self)))
    }
}

/// Every sink a worker can run (traits with async methods are not object-safe; the enum is).
#[derive(Debug)]
// Built once per worker and moved into its task: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnySink {
    Console(ConsoleSink),
    Redis(RedisSink),
    Storage(StorageSink),
    Postgres(PostgresSink),
}

impl AnySink {
    fn name(&self) -> &'static str {
        match self {
            Self::Console(s) => s.name(),
            Self::Redis(s) => s.name(),
            Self::Storage(s) => s.name(),
            Self::Postgres(s) => s.name(),
        }
    }

    fn durable(&self) -> bool {
        match self {
            Self::Console(s) => s.durable(),
            Self::Redis(s) => s.durable(),
            Self::Storage(s) => s.durable(),
            Self::Postgres(s) => s.durable(),
        }
    }

    async fn run(self, queue: QueueReceiver, ctx: SinkContext) -> Result<(), SinkError> {
        match self {
            Self::Console(s) => s.run(queue, ctx).await,
            Self::Redis(s) => s.run(queue, ctx).await,
            Self::Storage(s) => s.run(queue, ctx).await,
            Self::Postgres(s) => s.run(queue, ctx).await,
        }
    }
}

/// A worker for one shard, built and ready to run.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    /// `config.interval`, parsed once when the worker is built.
    interval: Duration,
    options: RunOptions,
    metrics: Metrics,
    health: Health,
    /// The ticker list in force, for `/assignment`.
    in_force: InForce,
    tickers: watch::Sender<TickerSet>,
    /// The shard's request budget, shared with the source and reloaded on a reshard.
    rate_limit: Arc<RateLimiter>,
    source: AnySource,
    sinks: Vec<AnySink>,
    /// Bytes each sink queue may hold.
    queue_bytes: usize,
    /// The disk buffers of the sinks that have one, by sink label.
    buffers: Vec<(&'static str, DiskBuffer)>,
}

/// The per-sink queue budget of a worker told nothing: the operator's rule
/// ([`quotestream_api::worker_config::queue_bytes_per_sink`]) for its default 128 Mi pod.
pub fn default_queue_bytes(sinks: usize) -> u64 {
    use quotestream_api::worker_config::{DEFAULT_MEMORY_LIMIT_BYTES, queue_bytes_per_sink};
    queue_bytes_per_sink(DEFAULT_MEMORY_LIMIT_BYTES, sinks)
}

/// The budget in force: `run --queue-bytes` (already checked by its parser), else worker.json's
/// `queueBytes` (checked here, so a hand-written file's error names the field), else the
/// default for `sinks` sinks.
fn queue_bytes(
    config: &WorkerConfig,
    options: &RunOptions,
    sinks: usize,
) -> Result<usize, WorkerError> {
    let bytes = match (options.queue_bytes, config.queue_bytes) {
        (Some(flag), _) => flag,
        (None, Some(file)) => crate::bounds::QUEUE_BYTES
            .check(file)
            .map_err(|e| WorkerError::Config(format!("queueBytes: {e}")))?,
        (None, None) => default_queue_bytes(sinks),
    };
    usize::try_from(bytes).map_err(|_| {
        WorkerError::Config(format!(
            "queueBytes: {bytes} does not fit this machine's address space"
        ))
    })
}

impl Worker {
    /// Builds the source and sinks the configuration names. `console` adds the console sink
    /// (`make run`).
    pub fn new(
        config: WorkerConfig,
        options: RunOptions,
        console: Option<ConsoleView>,
    ) -> Result<Self, WorkerError> {
        let metrics = Metrics::new(&config.stream, config.shard)?;
        let health = Health::new(config.shard, metrics.clone());
        let tickers = parse_tickers(&config.tickers)?;
        metrics.active_tickers.set(tickers.len() as i64);
        let (tickers, _) = watch::channel(tickers);
        let interval = crate::bounds::INTERVAL
            .parse(&config.interval)
            .map_err(|e| WorkerError::Config(format!("interval: {e}")))?;
        if !(config.requests_per_hour.is_finite() && config.requests_per_hour > 0.0) {
            return Err(WorkerError::Config(format!(
                "requestsPerHour is {}; it must be a positive number (the stream's spec.source.rateLimit.requestsPerHour divided by its shards)",
                config.requests_per_hour
            )));
        }
        let source = build_source(&config, &options.env)?;
        let mut sinks = Vec::new();
        if let Some(view) = console {
            sinks.push(AnySink::Console(ConsoleSink::new(view)));
        }
        for (_, build) in SINKS {
            sinks.extend(build(&config, &options, &health)?);
        }
        if sinks.is_empty() {
            return Err(WorkerError::Config(
                "no sink configured: set sinks.redis, sinks.storage or sinks.postgres".into(),
            ));
        }
        let queue_bytes = queue_bytes(&config, &options, sinks.len())?;
        let buffers = open_buffers(&config, &options, &metrics)?;
        Ok(Self {
            buffers,
            rate_limit: Arc::new(rate_limiter(&config)),
            config,
            interval,
            options,
            metrics,
            health,
            in_force: InForce::default(),
            tickers,
            source,
            sinks,
            queue_bytes,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The ticker list in force (`/assignment`).
    pub fn in_force(&self) -> &InForce {
        &self.in_force
    }

    /// A handle to change what a reshard changes while the worker runs (no restart).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            tickers: self.tickers.clone(),
            metrics: self.metrics.clone(),
            in_force: self.in_force.clone(),
            rate_limit: self
                .config
                .source
                .kind
                .is_polling()
                .then(|| self.rate_limit.clone()),
        }
    }

    /// Connects the sinks that must be reachable before the worker streams (PostgreSQL:
    /// connect and migrate). A permanent failure (a wrong password, a missing database, no
    /// privilege) is returned: the process exits 1 naming the sink and the setting. A
    /// transient one (the server is down or restarting) is logged; the sink retries once it
    /// runs.
    pub async fn connect(&mut self) -> Result<(), WorkerError> {
        for sink in &mut self.sinks {
            if let AnySink::Postgres(s) = sink {
                s.connect_at_start().await?;
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` is cancelled (or the source or a sink fails), then drains.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Summary, WorkerError> {
        let Self {
            config,
            interval,
            options,
            metrics,
            health,
            in_force,
            tickers,
            rate_limit,
            source,
            sinks,
            queue_bytes,
            mut buffers,
        } = self;
        // Shutdown budget, from SIGTERM (docs/worker.md, Reliability): until the drain deadline
        // (60% of the grace period) the pipeline forwards what it holds and the sinks deliver
        // what they have; then what is left is counted as dropped. A sink still running at the
        // hard stop (90%) is stopped and what it held counted (`abandoned`); the rest is for
        // the summary and the exit.
        let drain_deadline = options.grace.mul_f64(DRAIN_SHARE);
        let hard_stop = options.grace.mul_f64(HARD_STOP_SHARE);

        let sinks_shutdown = CancellationToken::new();
        let any_durable = sinks.iter().any(AnySink::durable);
        let mut senders = Vec::new();
        let mut sink_tasks: Vec<(&'static str, JoinHandle<Result<(), SinkError>>)> = Vec::new();
        let sink_names: Vec<&'static str> = sinks.iter().map(AnySink::name).collect();
        for sink in sinks {
            let name = sink.name();
            // Best-effort sinks drop their oldest batches rather than hold back a durable sink;
            // with no durable sink to protect they push back on the source like any other.
            let policy = if sink.durable() || !any_durable {
                FullPolicy::Block
            } else {
                FullPolicy::DropOldest
            };
            let (tx, rx) = queue::for_sink(&metrics, name, queue_bytes, policy);
            senders.push((name, tx));
            let ctx = SinkContext {
                metrics: metrics.clone(),
                drain_deadline,
                shutdown: sinks_shutdown.clone(),
                status: health.sink(name),
                acks: crate::buffer::Acks::none(),
            };
            let task = match buffers.iter().position(|(n, _)| *n == name) {
                Some(i) => {
                    let (_, buffer) = buffers.swap_remove(i);
                    let run = buffer.run(rx, queue_bytes, ctx, |rx, ctx| sink.run(rx, ctx));
                    tokio::spawn(run)
                }
                None => tokio::spawn(sink.run(rx, ctx)),
            };
            sink_tasks.push((name, task));
        }

        // A few batches of slack between source and pipeline; beyond that the source waits.
        let (out, input) = mpsc::channel(4);
        let give_up = CancellationToken::new();
        let max_skew = jiff::SignedDuration::try_from(options.max_clock_skew)
            .unwrap_or(crate::quote::DEFAULT_MAX_CLOCK_SKEW);
        let pipeline_task = tokio::spawn(pipeline::run(
            input,
            max_skew,
            tickers.subscribe(),
            senders,
            metrics.clone(),
            health.clone(),
            give_up.clone(),
        ));
        let source_stop = shutdown.child_token();
        let ctx = SourceContext {
            tickers: tickers.subscribe(),
            interval,
            out,
            metrics: metrics.clone(),
            rate_limit,
            shutdown: source_stop.clone(),
        };
        let mut source_task = match config.schedule.clone() {
            None => {
                metrics.market_window_open.set(1);
                tokio::spawn(source.run(ctx))
            }
            Some(schedule) => {
                // The first window runs the source built (and checked) at start; each later
                // window builds it anew, so a streaming source reconnects at the open.
                let (settings, env) = (config.clone(), options.env.clone());
                let mut built = Some(source);
                let build = move || match built.take() {
                    Some(source) => Ok(source),
                    None => build_source(&settings, &env)
                        .map_err(|e| SourceError::Config(e.to_string())),
                };
                let clock = options.clock;
                tokio::spawn(async move {
                    market_hours::run_in_windows(&schedule, clock, build, ctx).await
                })
            }
        };
        in_force.set(&config);
        health.set_ready(true);
        tracing::info!(stream = %config.stream, shard = config.shard, tickers = tickers.borrow().len(), source = ?config.source.kind, queue_bytes, epoch = config.epoch, fingerprint = %config.fingerprint, list = %crate::config_file::names(config.tickers.iter()), "worker running");

        let source_result = tokio::select! {
            _ = shutdown.cancelled() => None,
            r = &mut source_task => Some(r),
        };
        health.set_ready(false);
        source_stop.cancel();
        sinks_shutdown.cancel();
        let shutdown_started = tokio::time::Instant::now();
        // From here the drain deadline runs: after it the pipeline stops waiting for full queues.
        let deadline = tokio::spawn({
            let give_up = give_up.clone();
            async move {
                tokio::time::sleep(drain_deadline).await;
                give_up.cancel();
            }
        });
        let source_result = match source_result {
            Some(r) => r,
            None => source_task.await,
        };
        // The source's sender is gone: the pipeline finishes what it holds and closes the queues.
        let _ = pipeline_task.await;
        deadline.abort();
        let mut first_error: Option<WorkerError> = match source_result {
            Ok(Err(e)) => Some(e.into()),
            Ok(Ok(())) => None,
            Err(join) => Some(WorkerError::Config(format!("source task failed: {join}"))),
        };
        for (name, mut task) in sink_tasks {
            match tokio::time::timeout_at(shutdown_started + hard_stop, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    first_error.get_or_insert(e.into());
                }
                Ok(Err(join)) => tracing::error!(sink = name, error = %join, "sink task failed"),
                Err(_) => {
                    // Stopped and awaited, so it can confirm nothing more: what it neither
                    // confirmed nor dropped is known, and counted.
                    task.abort();
                    let _ = task.await;
                    let lost = crate::accounting::settle_abandoned(&metrics, name);
                    tracing::error!(
                        sink = name,
                        quotes = lost,
                        ?hard_stop,
                        "sink still running at the hard stop of the shutdown; stopped, the quotes it held dropped (counted in streamer_sink_dropped_quotes_total{{reason=\"abandoned\"}})"
                    );
                }
            }
        }
        let summary = Summary {
            fetched: metrics.quotes_fetched.get(),
            published: SINK_NAMES
                .iter()
                .map(|s| {
                    (
                        s.to_string(),
                        metrics.quotes_published.with_label_values(&[s]).get(),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            dropped: SINK_NAMES
                .iter()
                .flat_map(|s| DropReason::ALL.map(|r| metrics.dropped(s, r).get()))
                .sum(),
        };
        crate::accounting::Accounts::read(&metrics, &sink_names).log(shutdown_started.elapsed());
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }
}

/// Changes what a reshard changes in a running worker: its tickers and its rate-limit share.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tickers: watch::Sender<TickerSet>,
    metrics: Metrics,
    /// Where the list in force is acknowledged (`/assignment`).
    in_force: InForce,
    /// None for sources that make no requests (their budget is not limited).
    rate_limit: Option<Arc<RateLimiter>>,
}

impl ReloadHandle {
    /// Acknowledges `config`'s ticker list as the one in force (its tickers were handed to the
    /// source): what the operator waits for before the list's previous owners let go.
    pub fn acknowledge(&self, config: &WorkerConfig) {
        self.in_force.set(config);
    }

    /// The list acknowledged last (what `/assignment` serves).
    pub fn acknowledged(&self) -> Option<quotestream_api::worker_config::AppliedList> {
        self.in_force.get()
    }

    /// Replaces the shard's tickers; returns whether they changed.
    pub fn set_tickers(&self, tickers: TickerSet) -> bool {
        let n = tickers.len();
        let changed = self.tickers.send_if_modified(|cur| {
            if *cur == tickers {
                return false;
            }
            *cur = tickers;
            true
        });
        if changed {
            self.metrics.active_tickers.set(n as i64);
        }
        changed
    }

    /// Applies a new share of the stream's request budget; returns whether it changed (never
    /// for a source that makes no requests).
    pub fn set_requests_per_hour(&self, per_hour: f64) -> bool {
        self.rate_limit
            .as_ref()
            .is_some_and(|rl| rl.set_per_hour(per_hour))
    }

    /// The share in force, for sources that make requests.
    pub fn requests_per_hour(&self) -> Option<f64> {
        self.rate_limit.as_ref().map(|rl| rl.per_hour())
    }
}

/// The shard's tickers; an empty shard (more shards than tickers) is allowed.
pub fn parse_tickers(list: &[String]) -> Result<TickerSet, WorkerError> {
    if list.is_empty() {
        return Ok(TickerSet::default());
    }
    TickerSet::from_symbols(list).map_err(|e| WorkerError::Config(format!("tickers: {e}")))
}

fn rate_limiter(config: &WorkerConfig) -> RateLimiter {
    if config.source.kind.is_polling() {
        // A burst of a few requests lets one poll cycle's batches go out together.
        RateLimiter::new(config.requests_per_hour, 4)
    } else {
        RateLimiter::unlimited()
    }
}

/// Opens the disk buffer of each durable sink whose `buffer.type` is `disk` (at start, so a
/// bad setting or an unwritable directory stops the worker with the field's name).
fn open_buffers(
    config: &WorkerConfig,
    options: &RunOptions,
    metrics: &Metrics,
) -> Result<Vec<(&'static str, DiskBuffer)>, WorkerError> {
    let specs = [
        (
            crate::sinks::storage::NAME,
            config
                .sinks
                .storage
                .as_ref()
                .and_then(|s| s.buffer.as_ref()),
        ),
        (
            crate::sinks::postgres::NAME,
            config
                .sinks
                .postgres
                .as_ref()
                .and_then(|s| s.buffer.as_ref()),
        ),
    ];
    let mut buffers = Vec::new();
    for (sink, spec) in specs {
        let settings = DiskBufferConfig::from_spec(spec, sink, &options.buffer_dir)
            .map_err(|e| WorkerError::Config(format!("sinks.{sink}.{e}")))?;
        if let Some(settings) = settings {
            let buffer = DiskBuffer::open(&settings, sink, metrics).map_err(|e| {
                WorkerError::Config(format!(
                    "{e} (--buffer-dir / {})",
                    quotestream_api::contract::env::BUFFER_DIR
                ))
            })?;
            buffers.push((sink, buffer));
        }
    }
    Ok(buffers)
}

/// The source `spec.source.type` names, from the table.
fn build_source(
    config: &WorkerConfig,
    env: &HashMap<String, String>,
) -> Result<AnySource, WorkerError> {
    let kind = config.source.kind.name();
    let (_, build) = SOURCES
        .iter()
        .find(|(name, _)| *name == kind)
        .ok_or_else(|| {
            WorkerError::Config(format!("source.type {kind}: this worker cannot run it"))
        })?;
    Ok(build(&config.source, env)?)
}

#[cfg(test)]
mod tests {
    use quotestream_api::crd::SourceType;

    use super::*;
    use crate::sources::ConfigError;

    #[test]
    fn every_source_type_is_a_row_of_the_table_and_a_missing_block_names_its_field() {
        use SourceType::*;
        for kind in [Yahoo, Synthetic, Replay, YahooStream, Alpaca, Polygon] {
            let Some((_, build)) = SOURCES.iter().find(|(name, _)| *name == kind.name()) else {
                panic!("source.type {} has no row in SOURCES", kind.name());
            };
            let built = build(&SourceSpec::of(kind), &HashMap::new());
            // Listing every variant: a new source type does not compile until it is here.
            let needs_its_block = match kind {
                Yahoo | Synthetic | YahooStream => None,
                Replay => Some("spec.source.replay.configMapKeyRef"),
                Alpaca => Some("spec.source.alpaca.credentialsSecretRef"),
                Polygon => Some("spec.source.polygon.apiKeySecretRef"),
            };
            match (needs_its_block, built) {
                (None, Ok(_)) => {}
                (Some(field), Err(SourceError::Settings(e @ ConfigError::Missing { .. }))) => {
                    assert_eq!(e.field(), field);
                    assert!(e.to_string().contains(field), "{e}");
                }
                (expected, other) => {
                    panic!("{}: expected {expected:?}, got {other:?}", kind.name())
                }
            }
        }
        assert_eq!(SOURCES.len(), 6, "one row per source type");
    }

    use proptest::prelude::*;

    /// worker.json with `field` (a JSON pointer) set to `value`.
    fn config_with(
        source: serde_json::Value,
        field: &str,
        value: serde_json::Value,
    ) -> serde_json::Value {
        let mut json = serde_json::json!({
            "namespace": "default", "stream": "demo", "shard": 0, "shards": 1,
            "tickers": ["AAPL"], "interval": "1s", "requestsPerHour": 600.0,
            "source": source,
            "sinks": {"storage": {"url": "http://127.0.0.1:1", "batchSize": 10}},
            "queueBytes": 16 << 20,
        });
        if let Some(slot) = json.pointer_mut(field) {
            *slot = value;
        }
        json
    }

    fn any_duration_text() -> impl Strategy<Value = String> {
        "-?[0-9]{1,22}(\\.[0-9]{1,9})?(ns|us|ms|s|m|h)|0|\\PC{0,10}"
    }

    fn any_number() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::from(0)),
            Just(serde_json::Value::from(-1)),
        ]
    }

    /// One field of worker.json set to an arbitrary value, on a source that reads it.
    fn any_bad_field() -> impl Strategy<Value = (serde_json::Value, &'static str, serde_json::Value)>
    {
        let yahoo = serde_json::json!({"type": "yahoo", "yahoo": {"timeout": "1s", "symbolsPerRequest": 50}});
        let stream =
            serde_json::json!({"type": "yahoo-stream", "coalesce": "1s", "idleTimeout": "30s"});
        let replay = serde_json::json!({"type": "replay", "replay": {"configMapKeyRef": {"name": "r", "key": "k"}, "speedPercent": 100}});
        let synthetic =
            serde_json::json!({"type": "synthetic", "synthetic": {"volatilityPercent": 30}});
        let text = |source: &serde_json::Value, field: &'static str| {
            let source = source.clone();
            any_duration_text()
                .prop_map(move |t| (source.clone(), field, serde_json::Value::from(t)))
        };
        let number = |source: &serde_json::Value, field: &'static str| {
            let source = source.clone();
            any_number().prop_map(move |n| (source.clone(), field, n))
        };
        prop_oneof![
            text(&synthetic, "/interval"),
            text(&yahoo, "/source/yahoo/timeout"),
            text(&stream, "/source/coalesce"),
            text(&stream, "/source/idleTimeout"),
            number(&yahoo, "/requestsPerHour"),
            number(&yahoo, "/source/yahoo/symbolsPerRequest"),
            number(&replay, "/source/replay/speedPercent"),
            number(&synthetic, "/source/synthetic/volatilityPercent"),
            number(&synthetic, "/sinks/storage/batchSize"),
            number(&synthetic, "/shard"),
            number(&synthetic, "/queueBytes"),
        ]
    }

    /// The field's last segment, as the error message spells it.
    fn field_name(pointer: &str) -> &str {
        pointer.rsplit('/').next().unwrap_or(pointer)
    }

    proptest! {
        /// Whatever one field of worker.json holds, the worker is built or refused with a
        /// message naming that field; what is built ticks at a non-zero interval. (The binary
        /// turns the refusal into exit 1: worker_process.rs.)
        #[test]
        fn any_bad_value_is_refused_naming_its_field((source, field, value) in any_bad_field()) {
            let json = config_with(source, field, value).to_string();
            let config = match crate::config_file::parse(&json) {
                Ok(c) => c,
                // serde's own refusal (an out-of-range integer, a float for an integer).
                Err(e) => {
                    prop_assert!(e.contains(field_name(field)), "{} not named in: {}", field, e);
                    return Ok(());
                }
            };
            match Worker::new(config, RunOptions::default(), None) {
                Ok(worker) => {
                    prop_assert!(!worker.interval.is_zero());
                    let budget = crate::bounds::QUEUE_BYTES;
                    prop_assert!((budget.min..=budget.max).contains(&(worker.queue_bytes as u64)));
                    prop_assert!(worker.interval <= crate::bounds::INTERVAL.max);
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains(field_name(field)), "{} not named in: {}", field, msg);
                }
            }
        }
    }

    #[test]
    fn a_zero_interval_is_refused() {
        let json = config_with(
            serde_json::json!({"type": "synthetic"}),
            "/interval",
            "0s".into(),
        );
        let config: WorkerConfig = serde_json::from_value(json).unwrap();
        let err = Worker::new(config, RunOptions::default(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("interval") && err.contains("between 1ms and 1h"),
            "{err}"
        );
    }

    #[test]
    fn the_queue_budget_comes_from_the_flag_then_worker_json_then_the_pod_default() {
        let json = config_with(
            serde_json::json!({"type": "synthetic"}),
            "/queueBytes",
            (4u64 << 20).into(),
        );
        let config: WorkerConfig = serde_json::from_value(json).unwrap();
        let built = |config: &WorkerConfig, flag: Option<u64>| {
            Worker::new(
                config.clone(),
                RunOptions {
                    queue_bytes: flag,
                    ..RunOptions::default()
                },
                None,
            )
            .map(|w| w.queue_bytes)
        };
        assert_eq!(built(&config, None).unwrap(), 4 << 20, "worker.json");
        assert_eq!(
            built(&config, Some(8 << 20)).unwrap(),
            8 << 20,
            "the flag wins"
        );
        let unset = WorkerConfig {
            queue_bytes: None,
            ..config.clone()
        };
        assert_eq!(
            built(&unset, None).unwrap(),
            8 << 20,
            "one sink in a 128 Mi pod: a sixteenth of the limit"
        );
        let tiny = WorkerConfig {
            queue_bytes: Some(1000),
            ..config
        };
        let err = built(&tiny, None).unwrap_err().to_string();
        assert!(
            err.contains("queueBytes") && err.contains("256Ki to 64Gi"),
            "{err}"
        );
    }
}
