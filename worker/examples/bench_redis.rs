//! The Redis part of `make bench`: publish throughput of the Redis sink next to
//! `redis-benchmark`, and publish→subscribe latency at paced rates, against a throwaway local
//! redis-server. A measurement, not a test: it prints markdown tables to stdout (progress to
//! stderr) and asserts nothing about speed.
//!
//! cargo run --release -p quotestream-worker --example bench_redis [-- --quick] [-- --only sink]
//!
//! `--only sink` runs just the `RedisSink` row, five times (for profiling it).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each harness uses part of it
mod bench_common;

use anyhow::{Context, bail, ensure};
use bench_common::{load_average, pick, quick, symbol, thousands};
use futures_util::StreamExt;
use jiff::Timestamp;
use quotestream_api::WorkerConfig;
use quotestream_api::contract::env::REPLAY_FILE;
use quotestream_api::crd::RedisSink as RedisSpec;
use quotestream_testkit::RedisServer;
use quotestream_worker::assembly::{RunOptions, Worker};
use quotestream_worker::health::Health;
use quotestream_worker::metrics::Metrics;
use quotestream_worker::queue::{self, FullPolicy, QueueReceiver, QueueSender};
use quotestream_worker::quote::wire::RedisQuote;
use quotestream_worker::quote::{Quote, RawQuote, validate};
use quotestream_worker::sinks::redis::{RedisConfig, RedisSink};
use quotestream_worker::sinks::{Batch, Sink, SinkContext, SinkError};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Messages per throughput run.
fn n() -> usize {
    pick(500_000, 50_000)
}
/// Tickers the generated quotes rotate through (an S&P 500 shard's worth).
const TICKERS: usize = 500;
/// Quotes per queued batch: the sink's pipeline chunk (`RedisConfig::pipeline_max`), so every
/// sink round trip carries exactly this many PUBLISH, like redis-benchmark's `-P`.
const BATCH: usize = 1000;
/// Runs per throughput configuration (interleaved); the table shows the median.
fn repeats() -> usize {
    pick(3, 1)
}
/// 2026-01-20T14:30:15.123Z: the throughput quotes' first timestamp.
const T0_MS: i64 = 1_768_919_415_123;
/// Volumes start here (a realistic day volume, 8 digits); `volume - VOLUME_BASE` is the
/// quote's sequence number, which the latency subscriber reads back.
const VOLUME_BASE: u64 = 40_000_000;
const CHANNEL: &str = "quotes.realtime";
/// A per-sink queue of 200 000 quotes, the runtime's bound before queues were counted in bytes.
const QUEUE_QUOTES: usize = 200_000;
fn rates() -> Vec<usize> {
    pick(vec![1_000, 10_000, 50_000], vec![1_000, 10_000])
}
/// How long each latency rate runs.
fn phase() -> Duration {
    Duration::from_secs(pick(5, 1))
}
const WARMUP: Duration = Duration::from_millis(500);
/// How long the subscriber may stay silent before what has not arrived counts as lost.
const QUIET: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Quotes

/// A validated quote carrying `seq` in its volume; prices in whole cents, a one-cent spread.
fn quote(symbol: &str, timestamp: Timestamp, seq: usize, now: Timestamp) -> anyhow::Result<Quote> {
    let cents = 10_000 + (seq % 997) as i64 * 7;
    let q = validate(
        RawQuote {
            ticker: symbol.to_owned(),
            timestamp,
            price: cents as f64 / 100.0,
            volume: (VOLUME_BASE + seq as u64) as f64,
            bid: Some((cents - 1) as f64 / 100.0),
            ask: Some((cents + 1) as f64 / 100.0),
            open: None,
            high: None,
            low: None,
            source: "synthetic",
        },
        now,
    )?;
    Ok(q)
}

/// n() quotes in batches of [`BATCH`]: 500 tickers, one quote per ticker per second.
fn throughput_batches(symbols: &[String]) -> anyhow::Result<Vec<Batch>> {
    let now = Timestamp::now();
    let n = n();
    let mut batches = Vec::with_capacity(n / BATCH + 1);
    let mut current = Vec::with_capacity(BATCH);
    for i in 0..n {
        let ts = Timestamp::from_millisecond(T0_MS + (i / TICKERS) as i64 * 1000)?;
        current.push(quote(&symbols[i % TICKERS], ts, i, now)?);
        if current.len() == BATCH {
            batches.push(Batch::from(std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        batches.push(Batch::from(current));
    }
    Ok(batches)
}

/// The contract message exactly as the sink encodes it (format `plain`).
fn encode(q: &Quote) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&RedisQuote::from(q))
}

// ---------------------------------------------------------------------------------------------
// The subscriber: its own thread and current-thread runtime, so it never competes with the sink
// for a runtime worker (it still shares the machine's cores).

#[derive(Debug, Default)]
struct Arrivals {
    /// (sequence number, receive instant), when recording.
    seen: Vec<(usize, Instant)>,
    /// The server closed the subscription (e.g. client-output-buffer-limit for pubsub).
    disconnected: bool,
}

#[derive(Debug)]
struct Subscriber {
    received: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<Arrivals>>>,
}

#[derive(serde::Deserialize)]
struct SeqOnly {
    volume: u64,
}

impl Subscriber {
    /// Subscribes to [`CHANNEL`] and returns once the subscription is confirmed. With `record`,
    /// every message is parsed for its sequence number and stamped on arrival.
    async fn start(url: &str, record: bool) -> anyhow::Result<Self> {
        let received = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let url = url.to_owned();
        let count = received.clone();
        let thread = std::thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || -> anyhow::Result<Arrivals> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let client = redis::Client::open(url.as_str())?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(CHANNEL).await?;
                    let _ = ready_tx.send(());
                    let mut messages = pubsub.on_message();
                    let mut out = Arrivals::default();
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut stop_rx => break,
                            msg = messages.next() => {
                                let at = Instant::now();
                                let Some(msg) = msg else {
                                    out.disconnected = true;
                                    break;
                                };
                                if record {
                                    let m: SeqOnly = serde_json::from_slice(msg.get_payload_bytes())
                                        .context("a message on quotes.realtime is not a contract quote")?;
                                    let seq = m.volume.checked_sub(VOLUME_BASE).context("volume below the sequence base")?;
                                    out.seen.push((usize::try_from(seq)?, at));
                                }
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok::<Arrivals, anyhow::Error>(out)
                })
            })
            .context("spawning the subscriber thread")?;
        let mut sub = Self {
            received,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(())) => Ok(sub),
            // The thread ended before subscribing: its error says why.
            Ok(Err(_)) => match sub.finish().await {
                Err(e) => Err(e.context("subscribing to quotes.realtime")),
                Ok(_) => bail!("the subscriber stopped before subscribing"),
            },
            Err(_) => bail!("no SUBSCRIBE confirmation from redis within 10 s"),
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed) as usize
    }

    /// Waits until `expected` messages arrived or none arrived for [`QUIET`]; returns the count.
    async fn wait_for(&self, expected: usize) -> usize {
        let mut last = self.received();
        let mut last_change = Instant::now();
        while last < expected && last_change.elapsed() < QUIET {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.received();
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
        last
    }

    async fn finish(&mut self) -> anyhow::Result<Arrivals> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take().context("subscriber already finished")?;
        match tokio::task::spawn_blocking(move || thread.join()).await? {
            Ok(result) => result,
            Err(_) => bail!("the subscriber thread panicked"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sink, driven as the runtime drives it

fn sink_config(url: &str) -> anyhow::Result<RedisConfig> {
    let spec: RedisSpec = serde_json::from_value(json!({"url": url, "channel": CHANNEL}))?;
    RedisConfig::from_spec(
        &spec,
        &HashMap::new(),
        "/quotestream/bench/redis/shard-0".into(),
    )
    .map_err(|e| anyhow::anyhow!("sinks.redis: {e}"))
}

/// A Redis sink queue exactly as `assembly::Worker::run` builds it (drop-oldest, same labels),
/// with room for `quotes` quotes.
fn sink_queue(metrics: &Metrics, quotes: usize) -> (QueueSender, QueueReceiver) {
    let budget = quotestream_worker::footprint::budget_for_quotes(quotes);
    queue::for_sink(metrics, "redis", budget, FullPolicy::DropOldest)
}

fn spawn_sink(
    url: &str,
    metrics: &Metrics,
    rx: QueueReceiver,
) -> anyhow::Result<JoinHandle<Result<(), SinkError>>> {
    let sink = RedisSink::new(
        sink_config(url)?,
        Health::new(0, metrics.clone()),
        "0".into(),
    );
    let ctx = SinkContext {
        metrics: metrics.clone(),
        drain_deadline: Duration::from_secs(10),
        shutdown: CancellationToken::new(),
        status: Default::default(),
        acks: quotestream_worker::buffer::Acks::none(),
    };
    Ok(tokio::spawn(sink.run(rx, ctx)))
}

fn sink_dropped(metrics: &Metrics) -> u64 {
    ["queue_full", "unavailable", "shutdown"]
        .iter()
        .map(|r| {
            metrics
                .dropped_quotes
                .with_label_values(&["redis", r])
                .get()
        })
        .sum()
}

fn published(metrics: &Metrics) -> u64 {
    metrics.quotes_published.with_label_values(&["redis"]).get()
}

// ---------------------------------------------------------------------------------------------
// Throughput runs. Each returns the elapsed time of n() publishes.

/// The sink alone: its queue is filled with all n() quotes first, then the sink is started and
/// timed until it has confirmed every pipeline and returned (the queue is closed, so it drains
/// and stops). What it measures: dequeue + JSON encoding + pipelined PUBLISH + metrics, one
/// pipeline in flight — the sink's ceiling when it never waits for input.
async fn run_sink(url: &str, batches: &[Batch]) -> anyhow::Result<Duration> {
    let metrics = Metrics::new("bench", 0)?;
    let n = n();
    let (tx, rx) = sink_queue(&metrics, n);
    for b in batches {
        tx.send(b.clone()).await;
    }
    drop(tx);
    let started = Instant::now();
    spawn_sink(url, &metrics, rx)?.await??;
    let took = started.elapsed();
    let done = published(&metrics);
    ensure!(
        done == n as u64,
        "the sink confirmed {done} of {n} quotes ({} dropped)",
        sink_dropped(&metrics)
    );
    Ok(took)
}

/// The redis crate without the sink: the same connection type and pipeline depth, with the
/// payloads encoded beforehand. The gap to `run_sink` is the sink's own cost.
async fn run_client(url: &str, payloads: &[Vec<u8>]) -> anyhow::Result<Duration> {
    let client = redis::Client::open(url)?;
    let mut conn = redis::aio::ConnectionManager::new(client).await?;
    let started = Instant::now();
    for chunk in payloads.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for p in chunk {
            pipe.publish(CHANNEL, p.as_slice()).ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
    }
    Ok(started.elapsed())
}

/// `redis-benchmark -c 1 -P depth -n n() publish quotes.realtime <payload>`; returns its rps.
async fn run_redis_benchmark(port: u16, depth: usize, payload: &str) -> anyhow::Result<f64> {
    // -n is rounded up to a whole number of pipelines: otherwise the last pipeline overshoots
    // it, and redis-benchmark's 250 ms progress timer can see "no live client, requests !=
    // -n" and abort with "All clients disconnected... aborting." (500 000 / 64 is not whole).
    let requests = n().div_ceil(depth) * depth;
    let out = tokio::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1"])
        .args([
            "-P",
            &depth.to_string(),
            "-n",
            &requests.to_string(),
            "--csv",
        ])
        .args(["publish", CHANNEL, payload])
        .kill_on_drop(true)
        .output()
        .await
        .context("running redis-benchmark (Debian package redis-tools)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "redis-benchmark failed ({}): {}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // The test name embeds the payload (quotes and commas unescaped), so read the numeric
    // columns from the right: …,"rps","avg","min","p50","p95","p99","max".
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("redis-benchmark printed nothing")?;
    let rps = line
        .rsplit(',')
        .nth(6)
        .map(|f| f.trim().trim_matches('"'))
        .context("redis-benchmark CSV has fewer columns than expected")?;
    rps.parse::<f64>()
        .with_context(|| format!("redis-benchmark rps {rps:?} in {line:?}"))
}

/// A whole worker: the replay source at speed 0 reads an NDJSON file of the same n() quotes,
/// the pipeline validates and de-duplicates, the Redis sink publishes. Timed from the source's
/// first delivery (after it has read and parsed the file) to the last confirmed (or dropped)
/// quote. Returns the time and how many quotes the sink dropped (queue_full when the source
/// outruns it).
async fn run_worker(
    url: &str,
    file: &std::path::Path,
    symbols: &[String],
    queue_quotes: usize,
) -> anyhow::Result<(Duration, u64)> {
    let config: WorkerConfig = serde_json::from_value(json!({
        "namespace": "bench", "stream": "bench", "shard": 0, "shards": 1,
        "tickers": symbols, "interval": "1s", "requestsPerHour": 100.0,
        "source": {"type": "replay", "replay": {"configMapKeyRef": {"name": "rec", "key": "quotes.ndjson"}, "speedPercent": 0}},
        "sinks": {"redis": {"url": url, "channel": CHANNEL}}
    }))?;
    let env = HashMap::from([(REPLAY_FILE.to_owned(), file.display().to_string())]);
    let worker = Worker::new(
        config,
        RunOptions {
            env,
            queue_bytes: Some(
                quotestream_worker::footprint::budget_for_quotes(queue_quotes) as u64,
            ),
            ..RunOptions::default()
        },
        None,
    )?;
    let metrics = worker.metrics().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    // Sampling the counters every millisecond bounds the timing error to about a millisecond.
    let tick = Duration::from_millis(1);
    let parse_deadline = Instant::now() + Duration::from_secs(60);
    while metrics.quotes_fetched.get() == 0 {
        ensure!(
            Instant::now() < parse_deadline && !task.is_finished(),
            "the replay source delivered nothing within 60 s"
        );
        tokio::time::sleep(tick).await;
    }
    let started = Instant::now();
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let done = published(&metrics) + sink_dropped(&metrics);
        if done >= n() as u64 || last_change.elapsed() > QUIET * 2 || task.is_finished() {
            break;
        }
        if done != last {
            last = done;
            last_change = Instant::now();
        }
        tokio::time::sleep(tick).await;
    }
    let took = started.elapsed();
    stop.cancel();
    task.await??;
    let done = published(&metrics);
    let dropped = sink_dropped(&metrics);
    let invalid =
        metrics.duplicates.get() + metrics.errors.with_label_values(&["validation"]).get();
    ensure!(
        done + dropped == n() as u64,
        "the worker published {done} and dropped {dropped} of {} quotes ({invalid} invalid or repeated)",
        n()
    );
    Ok((took, dropped))
}

// ---------------------------------------------------------------------------------------------
// Latency

/// Paces `rate` quotes/s for `duration`: every millisecond tick enqueues the quotes that are due
/// by then as one batch (a source fetch), stamped `Timestamp::now()`. The enqueue instant of
/// every quote goes into `sent`, indexed by its sequence number.
async fn pace(
    tx: &QueueSender,
    rate: usize,
    duration: Duration,
    symbols: &[String],
    sent: &mut Vec<Instant>,
) -> anyhow::Result<Range<usize>> {
    let first = sent.len();
    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let started = Instant::now();
    while sent.len() - first < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        let have = sent.len() - first;
        if due <= have {
            continue;
        }
        let now = Timestamp::now();
        let batch = (first + have..first + due)
            .map(|seq| quote(&symbols[seq % TICKERS], now, seq, now))
            .collect::<anyhow::Result<Vec<Quote>>>()?;
        let at = Instant::now();
        sent.extend(std::iter::repeat_n(at, due - have));
        tx.send(Batch::from(batch)).await;
    }
    Ok(first..sent.len())
}

#[derive(Debug)]
struct LatencyRow {
    rate: usize,
    sent: usize,
    received: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    achieved: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// One sink on a runtime-sized queue, one subscriber; a warm-up (excluded), then each rate for
/// [`phase()`].
async fn run_latency(url: &str, symbols: &[String]) -> anyhow::Result<(Vec<LatencyRow>, u64)> {
    let mut sub = Subscriber::start(url, true).await?;
    let metrics = Metrics::new("bench", 0)?;
    let (tx, rx) = sink_queue(&metrics, QUEUE_QUOTES);
    let sink = spawn_sink(url, &metrics, rx)?;
    let mut sent =
        Vec::with_capacity(rates().iter().sum::<usize>() * phase().as_secs() as usize + 1000);
    pace(&tx, 1_000, WARMUP, symbols, &mut sent).await?;
    let mut phases = Vec::new();
    for rate in rates() {
        eprintln!("latency: {rate} quotes/s for {} s", phase().as_secs());
        let started = Instant::now();
        let range = pace(&tx, rate, phase(), symbols, &mut sent).await?;
        phases.push((rate, range, started.elapsed()));
    }
    sub.wait_for(sent.len()).await;
    let arrivals = sub.finish().await?;
    drop(tx);
    sink.await??;
    if arrivals.disconnected {
        eprintln!("warning: redis closed the subscriber's connection during the latency run");
    }
    let mut received: Vec<Option<Instant>> = vec![None; sent.len()];
    for (seq, at) in arrivals.seen {
        if let Some(slot) = received.get_mut(seq) {
            *slot = Some(at);
        }
    }
    let rows = phases
        .into_iter()
        .map(|(rate, range, took)| {
            let mut lat: Vec<Duration> = range
                .clone()
                .filter_map(|seq| received[seq].map(|at| at.saturating_duration_since(sent[seq])))
                .collect();
            lat.sort_unstable();
            LatencyRow {
                rate,
                sent: range.len(),
                received: lat.len(),
                p50_ms: percentile(&lat, 0.50),
                p99_ms: percentile(&lat, 0.99),
                p999_ms: percentile(&lat, 0.999),
                max_ms: lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
                achieved: range.len() as f64 / took.as_secs_f64(),
            }
        })
        .collect();
    Ok((rows, sink_dropped(&metrics)))
}

// ---------------------------------------------------------------------------------------------
// Reporting

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Publisher {
    Benchmark(usize),
    Client,
    Sink,
    /// A whole worker with this per-sink queue size.
    Worker(usize),
}

#[derive(Debug, Default)]
struct Samples {
    rates: Vec<f64>,
    /// Messages the subscriber got, per run (runs with a subscriber).
    delivered: Vec<usize>,
    /// Messages published per run.
    expected: usize,
    /// Quotes the sink dropped, per run (whole-worker runs).
    dropped: Vec<u64>,
    disconnected: bool,
}

impl Samples {
    fn median(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench_common::warn_if_debug();
    let n = n();
    let repeats = repeats();
    let only_sink =
        std::env::args().any(|a| a == "sink") && std::env::args().any(|a| a == "--only");
    let load_before = load_average();
    let redis = RedisServer::start().context("starting redis-server")?;
    let url = redis.url();
    let port = redis.port();
    let symbols: Vec<String> = (0..TICKERS).map(symbol).collect();

    eprintln!("generating {n} quotes");
    let batches = throughput_batches(&symbols)?;
    // Encoding alone, single-threaded, as the sink does it per quote.
    let mut encode_runs = Vec::new();
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        payloads = batches
            .iter()
            .flat_map(|b| b.iter())
            .map(encode)
            .collect::<serde_json::Result<_>>()?;
        encode_runs.push(n as f64 / started.elapsed().as_secs_f64());
    }
    encode_runs.sort_by(f64::total_cmp);
    let encode_rate = encode_runs[encode_runs.len() / 2];
    let mean_len = payloads.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    let payload = payloads
        .iter()
        .min_by(|a, b| {
            (a.len() as f64 - mean_len)
                .abs()
                .total_cmp(&(b.len() as f64 - mean_len).abs())
        })
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .context("no payload")?;

    let dir = tempfile::Builder::new().prefix("bench-redis-").tempdir()?;
    let file = dir.path().join("quotes.ndjson");
    {
        let mut text = Vec::with_capacity(payloads.len() * (payload.len() + 1));
        for p in &payloads {
            text.extend_from_slice(p);
            text.push(b'\n');
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }

    // Every configuration once per round, rounds repeated: drift on this shared machine then
    // spreads over all rows instead of favouring one.
    let configs: Vec<(Publisher, bool)> = if only_sink {
        vec![(Publisher::Sink, false); 5]
    } else if quick() {
        vec![
            (Publisher::Benchmark(BATCH), false),
            (Publisher::Client, false),
            (Publisher::Sink, false),
            (Publisher::Sink, true),
            (Publisher::Worker(QUEUE_QUOTES), false),
        ]
    } else {
        vec![
            (Publisher::Benchmark(BATCH), false),
            (Publisher::Benchmark(BATCH), true),
            (Publisher::Benchmark(64), false),
            (Publisher::Benchmark(64), true),
            (Publisher::Client, false),
            (Publisher::Client, true),
            (Publisher::Sink, false),
            (Publisher::Sink, true),
            (Publisher::Worker(n), false),
            (Publisher::Worker(QUEUE_QUOTES), false),
        ]
    };
    let mut results: HashMap<(Publisher, bool), Samples> = HashMap::new();
    for round in 1..=repeats {
        for &(publisher, subscribed) in &configs {
            eprintln!(
                "throughput round {round}/{repeats}: {publisher:?}, subscriber: {subscribed}"
            );
            let mut sub = match subscribed {
                true => Some(Subscriber::start(&url, false).await?),
                false => None,
            };
            let entry = results.entry((publisher, subscribed)).or_default();
            // redis-benchmark publishes whole pipelines (see run_redis_benchmark).
            entry.expected = match publisher {
                Publisher::Benchmark(depth) => n.div_ceil(depth) * depth,
                _ => n,
            };
            let rate = match publisher {
                Publisher::Benchmark(depth) => run_redis_benchmark(port, depth, &payload).await?,
                Publisher::Client => n as f64 / run_client(&url, &payloads).await?.as_secs_f64(),
                Publisher::Sink => n as f64 / run_sink(&url, &batches).await?.as_secs_f64(),
                Publisher::Worker(queue_quotes) => {
                    let (took, dropped) = run_worker(&url, &file, &symbols, queue_quotes).await?;
                    entry.dropped.push(dropped);
                    (n as u64 - dropped) as f64 / took.as_secs_f64()
                }
            };
            entry.rates.push(rate);
            if let Some(sub) = sub.as_mut() {
                entry.delivered.push(sub.wait_for(entry.expected).await);
                entry.disconnected |= sub.finish().await?.disconnected;
            }
        }
    }

    if only_sink {
        let rates = &results[&(Publisher::Sink, false)].rates;
        let shown: Vec<String> = rates.iter().map(|r| thousands(*r)).collect();
        println!(
            "RedisSink, {n} quotes, queue pre-filled: {} quotes/s",
            shown.join(" / ")
        );
        return Ok(());
    }
    eprintln!("latency runs");
    let (latency, latency_dropped) = run_latency(&url, &symbols).await?;

    // ----- report -----
    println!(
        "Machine: {} × {}, {}; load average {load_before} before and {} after the run. Redis: `{}` (throwaway local server, loopback).{}{}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        command_output("uname", &["-sr"]),
        load_average(),
        command_output("redis-server", &["--version"]),
        bench_common::build_note(),
        if quick() {
            " Quick mode: fewer rows and runs."
        } else {
            ""
        }
    );
    println!("### Publish throughput\n");
    println!(
        "{n} contract-004 messages to `{CHANNEL}` (mean {mean_len:.0} bytes; redis-benchmark publishes one real encoded message of {} bytes). One connection, pipelined; median of {repeats} interleaved runs. The sink row fills its queue with all {n} quotes in batches of {BATCH} first, then times `RedisSink::run` until it has confirmed every pipeline (dequeue, JSON encoding, PUBLISH pipelines — up to two in flight, the next one encoded meanwhile — metrics). The client row is the redis crate alone with pre-encoded payloads, one pipeline at a time. The worker rows run a whole `assembly::Worker` (replay source at speed 0 reading an NDJSON file of the same quotes → validation → the sink's drop-oldest queue → sink), timed from the source's first delivery to the last quote confirmed or dropped; quotes/s counts confirmed quotes only. With a queue of {n} nothing can be evicted; {QUEUE_QUOTES} is what the runtime held before its queues were bounded in bytes. The subscriber drains on its own thread in this process.\n",
        payload.len()
    );
    println!(
        "| publisher | PUBLISH per round trip | subscribers | quotes/s (median) | runs | ÷ `redis-benchmark -P 1000` (same subscribers) | delivered to subscriber |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|");
    for &(publisher, subscribed) in &configs {
        let Some(s) = results.get(&(publisher, subscribed)) else {
            continue;
        };
        let (name, depth) = match publisher {
            Publisher::Benchmark(d) => (format!("`redis-benchmark -c 1 -P {d}`"), d),
            Publisher::Client => ("redis crate, pre-encoded payloads".to_owned(), BATCH),
            Publisher::Sink => ("`RedisSink` (queue pre-filled)".to_owned(), BATCH),
            Publisher::Worker(q) => (
                format!("`Worker`: replay speed 0 → pipeline → `RedisSink`, queue {q}"),
                BATCH,
            ),
        };
        let ratio = match publisher {
            Publisher::Benchmark(_) => "—".to_owned(),
            _ => results
                .get(&(Publisher::Benchmark(BATCH), subscribed))
                .map_or("n/a".into(), |b| format!("{:.2}", s.median() / b.median())),
        };
        let runs = s
            .rates
            .iter()
            .map(|r| thousands(*r))
            .collect::<Vec<_>>()
            .join(" / ");
        let delivered = if subscribed {
            let mut d = s.delivered.clone();
            d.sort_unstable();
            let min = d.first().copied().unwrap_or(0);
            format!(
                "{}{}",
                if min >= s.expected {
                    "all".to_owned()
                } else {
                    format!("min {min} of {}", s.expected)
                },
                if s.disconnected {
                    " (disconnected by the server)"
                } else {
                    ""
                }
            )
        } else if s.dropped.iter().any(|d| *d > 0) {
            let per_run = s.dropped.iter().map(|d| d.to_string()).collect::<Vec<_>>();
            format!(
                "— (sink dropped {} quotes per run: queue_full)",
                per_run.join(" / ")
            )
        } else {
            "—".into()
        };
        println!(
            "| {name} | {depth} | {} | {} | {runs} | {ratio} | {delivered} |",
            u8::from(subscribed),
            thousands(s.median())
        );
    }
    println!(
        "\nEncoding alone (`serde_json::to_vec(&RedisQuote)`, one thread, as the sink does per quote): {} quotes/s = {:.2} µs/quote.\n",
        thousands(encode_rate),
        1e6 / encode_rate
    );

    println!("### Publish → subscribe latency\n");
    println!(
        "One `RedisSink` on a queue of {QUEUE_QUOTES} quotes (drop-oldest), one subscriber (redis crate async PubSub on its own thread and runtime). Every millisecond the pacer enqueues the quotes due by then as one batch, stamped `Timestamp::now()`. Latency = subscriber receive `Instant` − enqueue `Instant`, both from the monotonic clock of this process, matched by a sequence number carried in the `volume` field (the wire timestamp has only millisecond precision, so it is not used). Includes queueing, encoding, the pipeline round trip, Redis fan-out and the subscriber's read. {} s per rate after a {} ms warm-up (excluded). Lost = enqueued − received within {} s of quiet.\n",
        phase().as_secs(),
        WARMUP.as_millis(),
        QUIET.as_secs()
    );
    println!(
        "| target rate (quotes/s) | achieved | messages | p50 ms | p99 ms | p99.9 ms | max ms | lost |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &latency {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            thousands(r.rate as f64),
            thousands(r.achieved),
            r.sent,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            r.sent - r.received
        );
    }
    if latency_dropped > 0 {
        println!("\nThe sink counted {latency_dropped} quotes as dropped during the latency runs.");
    }
    drop(redis);
    Ok(())
}
