//! The Redis sink against a real redis-server: contract 004 messages (plain and CloudEvents),
//! heartbeats, AUTH, and an outage in the middle of the stream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use quotestream_api::crd::{RedisFormat, RedisSink as RedisSpec};
use quotestream_testkit::{RedisServer, TestCerts};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::quote::{Quote, RawQuote, validate};
use quotestream_worker::sinks::redis::RedisConfig;
use serde_json::{Value, json};
use support::redis_sink::RunningSink;

const WAIT: Duration = Duration::from_secs(10);

fn quote(ticker: &str, ms: i64) -> Quote {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
    validate(
        RawQuote {
            ticker: ticker.into(),
            timestamp: ts,
            price: 185.5,
            volume: 45_000_000.0,
            bid: Some(185.48),
            ask: Some(185.52),
            open: None,
            high: None,
            low: None,
            source: "yfinance",
        },
        ts,
    )
    .unwrap()
}

fn config(url: String, format: RedisFormat, heartbeat: Duration) -> RedisConfig {
    let spec: RedisSpec = serde_json::from_value(json!({"url": url, "format": format})).unwrap();
    let mut c = RedisConfig::from_spec(
        &spec,
        &std::collections::HashMap::new(),
        "/quotestream/markets/sp500/shard-2".into(),
    )
    .unwrap();
    c.heartbeat_every = heartbeat;
    c
}

/// The sink as the worker runs it, shard 2, a queue of 10 000 quotes' worth.
fn start(config: RedisConfig) -> RunningSink {
    let budget = quotestream_worker::footprint::budget_for_quotes(10_000);
    RunningSink::queued(2, budget).run(config, Duration::from_secs(1))
}

/// Polls `check` without blocking the runtime (the sink runs on the same thread).
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

async fn subscribe(url: &str, channel: &str) -> redis::aio::PubSub {
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub
}

async fn next_json(stream: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin)) -> Value {
    let msg = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a message within the wait")
        .unwrap();
    serde_json::from_slice(msg.get_payload_bytes()).unwrap()
}

/// The channel of the quotes.
const REALTIME: &str = "quotes.realtime";
/// A heartbeat an hour away: none during a test.
const NO_HEARTBEAT: Duration = Duration::from_secs(3600);

/// A sink publishing to `redis` in `format` (a heartbeat every `heartbeat`) and a subscriber to
/// `channel`, subscribed before the sink starts so that it misses nothing.
async fn listen(
    redis: &RedisServer,
    channel: &str,
    format: RedisFormat,
    heartbeat: Duration,
) -> (redis::aio::PubSub, RunningSink) {
    let sub = subscribe(&redis.url(), channel).await;
    (sub, start(config(redis.url(), format, heartbeat)))
}

#[tokio::test]
async fn publishes_the_contract_message_to_quotes_realtime() {
    let redis = RedisServer::start().unwrap();
    let (mut sub, sink) = listen(&redis, REALTIME, RedisFormat::Plain, NO_HEARTBEAT).await;
    let mut messages = sub.on_message();
    sink.send(vec![
        quote("AAPL", 1_768_919_415_123),
        quote("MSFT", 1_768_919_415_124),
    ])
    .await;
    assert_eq!(
        next_json(&mut messages).await,
        json!({"ticker": "AAPL", "timestamp": "2026-01-20T14:30:15.123Z", "price": 185.5,
               "volume": 45000000, "bid": 185.48, "ask": 185.52, "source": "yfinance"})
    );
    assert_eq!(next_json(&mut messages).await["ticker"], "MSFT");
    assert!(
        eventually(|| sink
            .metrics
            .redis_publishes
            .with_label_values(&["quotes.realtime"])
            .get()
            == 2)
        .await
    );
    assert_eq!(
        sink.metrics
            .quotes_published
            .with_label_values(&["redis"])
            .get(),
        2
    );
    let text = sink.metrics.render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("redis_publish_latency_seconds_count{")
                && l.contains(r#"channel="quotes.realtime""#)
                && l.ends_with(" 1")),
        "one pipeline round trip observed:\n{text}"
    );
    sink.stop(WAIT).await;
}

#[tokio::test]
async fn cloudevents_format_wraps_the_contract_message() {
    let redis = RedisServer::start().unwrap();
    let (mut sub, sink) = listen(&redis, REALTIME, RedisFormat::Cloudevents, NO_HEARTBEAT).await;
    let mut messages = sub.on_message();
    sink.send(vec![quote("MSFT", 1_768_919_415_123)]).await;
    let event = next_json(&mut messages).await;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], "MSFT@1768919415123");
    assert_eq!(event["source"], "/quotestream/markets/sp500/shard-2");
    assert_eq!(event["type"], "io.opa.quotes.realtime.v1");
    assert_eq!(event["data"]["ticker"], "MSFT");
    assert_eq!(event["data"]["price"], 185.5);
    sink.stop(WAIT).await;
}

#[tokio::test]
async fn heartbeats_follow_the_system_health_schema() {
    let redis = RedisServer::start().unwrap();
    let (mut sub, sink) = listen(
        &redis,
        "system.health",
        RedisFormat::Plain,
        Duration::from_millis(50),
    )
    .await;
    let mut messages = sub.on_message();
    let beat = next_json(&mut messages).await;
    assert_eq!(beat["service"], "opa-quotes-streamer");
    assert_eq!(beat["status"], "healthy");
    assert!(beat["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(beat["details"]["uptime_seconds"].is_u64());
    assert!(beat["details"]["memory_mb"].as_f64().unwrap() > 0.0);
    assert!(beat["details"]["cpu_percent"].is_number());
    sink.stop(WAIT).await;
}

#[tokio::test]
async fn authenticates_with_the_password_in_the_url() {
    let redis = RedisServer::start_with_password("s3cret").unwrap();
    let (mut sub, sink) = listen(&redis, REALTIME, RedisFormat::Plain, NO_HEARTBEAT).await;
    let mut messages = sub.on_message();
    sink.send(vec![quote("NVDA", 1_768_919_415_123)]).await;
    assert_eq!(next_json(&mut messages).await["ticker"], "NVDA");
    sink.stop(WAIT).await;
}

#[tokio::test]
async fn an_outage_is_counted_and_publishing_resumes_after_restart() {
    let mut redis = RedisServer::start().unwrap();
    let sink = start(config(
        redis.url(),
        RedisFormat::Plain,
        Duration::from_secs(3600),
    ));
    sink.send(vec![quote("AAPL", 1_768_919_415_000)]).await;
    let published = sink
        .metrics
        .redis_publishes
        .with_label_values(&["quotes.realtime"]);
    assert!(eventually(|| published.get() == 1).await);

    redis.stop();
    let errors = sink
        .metrics
        .redis_publish_errors
        .with_label_values(&["quotes.realtime"]);
    sink.send(vec![
        quote("AAPL", 1_768_919_416_000),
        quote("MSFT", 1_768_919_416_000),
    ])
    .await;
    assert!(
        eventually(|| errors.get() == 2).await,
        "the lost quotes are counted"
    );
    assert_eq!(
        sink.metrics
            .dropped_quotes
            .with_label_values(&["redis", "unavailable"])
            .get(),
        2
    );

    redis.restart().unwrap();
    let mut sub = subscribe(&redis.url(), "quotes.realtime").await;
    let mut messages = sub.on_message();
    // The connection manager reconnects in the background; publish until a message gets through.
    let mut ms = 1_768_919_417_000;
    let got = loop {
        sink.send(vec![quote("NVDA", ms)]).await;
        ms += 1;
        if let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_millis(200), messages.next()).await
        {
            break msg;
        }
        assert!(
            ms < 1_768_919_417_000 + 100,
            "Redis never came back for the sink"
        );
    };
    let v: Value = serde_json::from_slice(got.get_payload_bytes()).unwrap();
    assert_eq!(v["ticker"], "NVDA");
    sink.stop(WAIT).await;
}

/// Log output of the current thread (the sink runs on the test's single-threaded runtime).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A subscriber to `channel` over TLS, trusting `ca`.
async fn subscribe_tls(url: &str, ca: &std::path::Path, channel: &str) -> redis::aio::PubSub {
    let client = redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca).unwrap()),
        },
    )
    .unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub
}

#[tokio::test]
async fn rediss_with_the_servers_ca_publishes() {
    quotestream_runtime::install_crypto_provider();
    let certs = TestCerts::generate().unwrap();
    let redis = RedisServer::start_tls_only(&certs).unwrap();
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let mut sub = subscribe_tls(&redis.url(), &certs.ca(), "quotes.realtime").await;
    let mut messages = sub.on_message();
    let mut c = config(redis.url(), RedisFormat::Plain, Duration::from_secs(3600));
    c.ca_file = Some(certs.ca());
    let sink = start(c);
    sink.send(vec![quote("AAPL", 1_768_919_415_123)]).await;
    assert_eq!(next_json(&mut messages).await["ticker"], "AAPL");
    sink.stop(WAIT).await;
}

#[tokio::test]
async fn rediss_with_another_ca_publishes_nothing_and_logs_the_certificate_error() {
    quotestream_runtime::install_crypto_provider();
    let certs = TestCerts::generate().unwrap();
    let other = TestCerts::generate().unwrap();
    let redis = RedisServer::start_tls_only(&certs).unwrap();
    let logs = Captured::default();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    let mut c = config(redis.url(), RedisFormat::Plain, Duration::from_secs(3600));
    c.ca_file = Some(other.ca());
    let sink = start(c);
    sink.send(vec![quote("AAPL", 1_768_919_415_123)]).await;
    assert!(
        eventually(|| sink
            .metrics
            .redis_publish_errors
            .with_label_values(&["quotes.realtime"])
            .get()
            > 0)
        .await,
        "the publish fails; log:\n{}",
        logs.text()
    );
    assert_eq!(
        sink.metrics
            .redis_publishes
            .with_label_values(&["quotes.realtime"])
            .get(),
        0
    );
    let text = logs.text();
    assert!(
        text.contains("Redis unavailable") && text.contains("UnknownIssuer"),
        "the log says the certificate is not trusted:\n{text}"
    );
    sink.stop(WAIT).await;
}

fn contract_drops(m: &Metrics) -> u64 {
    m.dropped_quotes
        .with_label_values(&["redis", "contract"])
        .get()
}

/// Contract 004 as written: a ticker matches `^[A-Z]{1,5}$`, so BRK.B is kept off Redis by
/// default (counted, logged), and published only with `allowShareClasses: true`.
#[tokio::test]
async fn share_classes_are_kept_off_redis_unless_the_sink_opts_in() {
    let redis = RedisServer::start().unwrap();
    let mut sub = subscribe(&redis.url(), "quotes.realtime").await;
    let mut messages = sub.on_message();
    let batch = || {
        vec![
            quote("BRK.B", 1_768_919_415_123),
            quote("AAPL", 1_768_919_415_124),
        ]
    };

    let strict = start(config(
        redis.url(),
        RedisFormat::Plain,
        Duration::from_secs(3600),
    ));
    strict.send(batch()).await;
    assert_eq!(
        next_json(&mut messages).await["ticker"],
        "AAPL",
        "the first message on the channel is AAPL: BRK.B was not published"
    );
    assert_eq!(contract_drops(&strict.metrics), 1);
    let published = |m: &Metrics| m.quotes_published.with_label_values(&["redis"]).get();
    assert!(eventually(|| published(&strict.metrics) == 1).await);
    strict.stop(WAIT).await;

    let mut c = config(redis.url(), RedisFormat::Plain, Duration::from_secs(3600));
    let spec: RedisSpec =
        serde_json::from_value(json!({"url": redis.url(), "allowShareClasses": true})).unwrap();
    assert!(spec.allow_share_classes, "the CRD field name");
    c.allow_share_classes = spec.allow_share_classes;
    let extended = start(c);
    extended.send(batch()).await;
    assert_eq!(next_json(&mut messages).await["ticker"], "BRK.B");
    assert_eq!(next_json(&mut messages).await["ticker"], "AAPL");
    assert_eq!(contract_drops(&extended.metrics), 0);
    extended.stop(WAIT).await;
}

/// An index (`^GSPC`) or a crypto pair (`BTC-USD`) in spec.tickers is never published on
/// Redis, `allowShareClasses` or not: contract 004 cannot carry it. Each quote is counted as a
/// contract drop (the PostgreSQL sink still stores it).
#[tokio::test]
async fn indices_and_crypto_are_never_published_on_redis() {
    let redis = RedisServer::start().unwrap();
    let mut sub = subscribe(&redis.url(), "quotes.realtime").await;
    let mut messages = sub.on_message();
    let mut c = config(redis.url(), RedisFormat::Plain, Duration::from_secs(3600));
    c.allow_share_classes = true;
    let sink = start(c);
    sink.send(vec![
        quote("^GSPC", 1_768_919_415_123),
        quote("BTC-USD", 1_768_919_415_124),
        quote("AAPL", 1_768_919_415_125),
    ])
    .await;
    assert_eq!(
        next_json(&mut messages).await["ticker"],
        "AAPL",
        "the first message is AAPL: the index and the pair were kept off"
    );
    assert_eq!(contract_drops(&sink.metrics), 2);
    sink.stop(WAIT).await;
}
