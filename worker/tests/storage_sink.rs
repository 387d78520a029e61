//! The storage sink against a real HTTP receiver (`quotestream_testkit::StorageReceiver`, axum on
//! a free loopback port) that enforces contract 001 (INV-001..007) exactly, answers 400 with the
//! reason when violated, records every request and accepted quote, and can be scripted to fail
//! (500s, stalls past the client's timeout, 429 with Retry-After, 400) before it recovers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use jiff::Timestamp;
use quotestream_api::crd::StorageSink as StorageSpec;
use quotestream_testkit::StorageReceiver;
use quotestream_testkit::storage::{Fault, Ledger};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::queue::{self, FullPolicy, QueueSender};
use quotestream_worker::quote::{Quote, RawQuote, validate};
use quotestream_worker::sinks::storage::{StorageConfig, StorageSink};
use quotestream_worker::sinks::{Batch, Sink, SinkContext, SinkError};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Quotes and the sink under test.

/// `n` distinct valid quotes cycling over `tickers`, one millisecond apart.
fn quotes(tickers: &[&str], n: usize) -> Vec<Quote> {
    let now = Timestamp::now();
    let base = now - jiff::SignedDuration::from_hours(1);
    (0..n)
        .map(|i| {
            validate(
                RawQuote {
                    ticker: tickers[i % tickers.len()].into(),
                    timestamp: base + jiff::SignedDuration::from_millis(i as i64),
                    // Binary fractions: serde_json (without `float_roundtrip`) may parse other
                    // decimals one ulp off on the receiving side, which is not the sink's doing.
                    price: 100.0 + i as f64 * 0.125,
                    volume: 1_000.0 + i as f64,
                    bid: Some(99.0),
                    ask: Some(101.0),
                    open: (i % 2 == 0).then_some(98.5),
                    high: None,
                    low: None,
                    source: "synthetic",
                },
                now,
            )
            .unwrap()
        })
        .collect()
}

/// What the contract says storage must receive for `q`, computed independently of the sink.
fn expected(q: &Quote) -> Value {
    let mut v = json!({
        "ticker": q.ticker.as_str(),
        "timestamp": q.timestamp.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "close": q.price,
        "volume": q.volume,
        "source": q.source,
    });
    if let Some(open) = q.open {
        v["open"] = json!(open);
    }
    v
}

/// Settings with test-sized timings: retries in milliseconds, a short open period.
fn config(url: &str, batch_size: i32) -> StorageConfig {
    let spec = StorageSpec {
        url: url.into(),
        batch_size,
        buffer: None,
    };
    let mut c = StorageConfig::from_spec(&spec, &std::collections::HashMap::new()).unwrap();
    c.linger = Duration::from_millis(20);
    c.request_timeout = Duration::from_secs(5);
    c.retry_min_delay = Duration::from_millis(5);
    c.retry_max_delay = Duration::from_millis(20);
    c.breaker_open_for = Duration::from_millis(300);
    c
}

struct Running {
    tx: Option<QueueSender>,
    task: JoinHandle<Result<(), SinkError>>,
    metrics: Metrics,
}

fn start(
    config: StorageConfig,
    capacity: usize,
    drain_deadline: Duration,
    shutdown: Option<CancellationToken>,
) -> Running {
    let metrics = Metrics::new("test", 0).unwrap();
    let budget = quotestream_worker::footprint::budget_for_quotes(capacity);
    let (tx, rx) = queue::for_sink(&metrics, "storage", budget, FullPolicy::Block);
    let sink = StorageSink::new(config).unwrap();
    assert!(sink.durable());
    assert_eq!(sink.name(), "storage");
    let ctx = SinkContext {
        metrics: metrics.clone(),
        drain_deadline,
        shutdown: shutdown.unwrap_or_default(),
        status: Default::default(),
        acks: quotestream_worker::buffer::Acks::none(),
    };
    Running {
        tx: Some(tx),
        task: tokio::spawn(sink.run(rx, ctx)),
        metrics,
    }
}

impl Running {
    async fn send(&self, quotes: &[Quote]) {
        let batch: Batch = quotes.to_vec().into();
        self.tx.as_ref().unwrap().send(batch).await;
    }

    /// Closes the queue (shutdown) and waits, bounded, for the sink to drain and return.
    async fn finish(mut self) -> Metrics {
        self.tx = None;
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the sink did not return within 30 s of its queue closing")
            .unwrap()
            .unwrap();
        self.metrics
    }
}

/// A sink with batches of `batch_size` and a queue of `capacity` quotes sending to `storage`,
/// with a 5 s drain deadline and no early shutdown.
fn start_on(storage: &StorageReceiver, batch_size: i32, capacity: usize) -> Running {
    start(
        config(&storage.url(), batch_size),
        capacity,
        Duration::from_secs(5),
        None,
    )
}

/// Sends `all` through a sink [`start_on`] `storage` and waits until it drained; its metrics.
async fn deliver(
    storage: &StorageReceiver,
    batch_size: i32,
    capacity: usize,
    all: &[Quote],
) -> Metrics {
    let sink = start_on(storage, batch_size, capacity);
    sink.send(all).await;
    sink.finish().await
}

/// The status of every request the receiver answered, in order.
fn statuses(l: &Ledger) -> Vec<u16> {
    l.requests.iter().map(|r| r.status).collect()
}

/// `all` as the receiver stores them.
fn expected_all(all: &[Quote]) -> Vec<Value> {
    all.iter().map(expected).collect()
}

fn published(m: &Metrics) -> u64 {
    m.quotes_published.with_label_values(&["storage"]).get()
}
fn dropped(m: &Metrics, reason: &str) -> u64 {
    m.dropped_quotes
        .with_label_values(&["storage", reason])
        .get()
}
fn publish_errors(m: &Metrics) -> u64 {
    m.errors.with_label_values(&["publish"]).get()
}
fn circuit_open(m: &Metrics) -> i64 {
    m.circuit_open.with_label_values(&["storage"]).get()
}

/// Bounded polling (never a fixed sleep as synchronisation).
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let polled = async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(limit, polled).await.is_err() {
        panic!("{what}: not within {limit:?}");
    }
}

fn assert_no_drops(m: &Metrics) {
    for reason in ["rejected", "contract", "shutdown", "queue_full"] {
        assert_eq!(dropped(m, reason), 0, "dropped with reason {reason}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn every_quote_arrives_exactly_as_sent_in_batches_of_at_most_batch_size() {
    let storage = StorageReceiver::start().await.unwrap();
    let sink = start_on(&storage, 7, 1000);
    let all = quotes(&["AAPL", "MSFT", "NVDA", "GOOGL", "V"], 100);
    let mut at = 0;
    for size in [1, 3, 10, 25, 2, 40, 13, 6] {
        sink.send(&all[at..at + size]).await;
        at += size;
    }
    assert_eq!(at, all.len());
    let m = sink.finish().await;

    let l = storage.ledger();
    let want: Vec<Value> = all.iter().map(expected).collect();
    assert_eq!(
        l.accepted, want,
        "storage received exactly the quotes sent, in order"
    );
    assert!(
        l.batch_sizes.iter().all(|n| (1..=7).contains(n)),
        "{:?}",
        l.batch_sizes
    );
    assert!(
        l.requests.iter().all(|r| r.status == 200),
        "{:?}",
        l.requests
    );
    assert_eq!(l.replays, 0);
    assert_eq!(published(&m), 100);
    assert_eq!(publish_errors(&m), 0);
    assert_eq!(
        m.publish_duration
            .with_label_values(&["storage"])
            .get_sample_count(),
        l.requests.len() as u64
    );
    assert_no_drops(&m);
    assert_eq!(circuit_open(&m), 0);
}

#[tokio::test]
async fn a_large_burst_is_split_at_the_contract_limit_of_1000() {
    let storage = StorageReceiver::start().await.unwrap();
    let all = quotes(&["AAPL", "MSFT"], 2345);
    let m = deliver(&storage, 1000, 10_000, &all).await;

    let l = storage.ledger();
    assert_eq!(l.batch_sizes, [1000, 1000, 345]);
    assert_eq!(l.accepted, expected_all(&all));
    assert_eq!(published(&m), 2345);
    assert_no_drops(&m);
}

#[tokio::test]
async fn share_class_tickers_are_kept_out_and_counted() {
    let storage = StorageReceiver::start().await.unwrap();
    let all = quotes(&["AAPL", "BRK.B", "MSFT", "BF.B", "NVDA"], 20);
    let m = deliver(&storage, 50, 1000, &all).await;

    let contract: Vec<Value> = all
        .iter()
        .filter(|q| q.ticker.is_contract_symbol())
        .map(expected)
        .collect();
    assert_eq!(contract.len(), 12);
    let l = storage.ledger();
    assert_eq!(l.accepted, contract, "no share-class quote reached storage");
    assert!(
        l.requests.iter().all(|r| r.status == 200),
        "storage never had to reject: {:?}",
        l.requests
    );
    assert_eq!(
        dropped(&m, "contract"),
        8,
        "BRK.B and BF.B quotes are counted"
    );
    assert_eq!(published(&m), 12);
    assert_eq!(dropped(&m, "rejected"), 0);
}

#[tokio::test]
async fn server_errors_timeouts_and_429_are_retried_and_nothing_is_lost() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.script([
        Fault::Status(500, "database is restarting"),
        Fault::Status(502, "bad gateway"),
        Fault::Stall(Duration::from_secs(2)),
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    ]);
    let mut c = config(&storage.url(), 10);
    c.request_timeout = Duration::from_millis(300);
    // Long enough that the Retry-After of 1 s is honoured in full, not capped.
    c.breaker_open_for = Duration::from_secs(30);
    let sink = start(c, 1000, Duration::from_secs(5), None);
    let all = quotes(&["AAPL", "MSFT"], 10);
    sink.send(&all).await;
    let m = sink.finish().await;

    let l = storage.ledger();
    let statuses = statuses(&l);
    assert_eq!(
        statuses,
        [500, 502, 503, 429, 200],
        "one batch, retried until accepted"
    );
    let key = l.requests[0].key.clone().unwrap();
    assert!(
        l.requests
            .iter()
            .all(|r| r.key.as_deref() == Some(key.as_str())),
        "a retried batch carries the same Idempotency-Key"
    );
    assert!(
        l.requests[4].at - l.requests[3].at >= Duration::from_secs(1),
        "Retry-After: 1 was honoured ({:?})",
        l.requests[4].at - l.requests[3].at
    );
    assert_eq!(l.accepted, expected_all(&all));
    assert_eq!(publish_errors(&m), 4);
    assert_eq!(published(&m), 10);
    assert_no_drops(&m);
    assert_eq!(circuit_open(&m), 0, "4 failures stay below the breaker's 5");
}

#[tokio::test]
async fn the_breaker_opens_after_five_consecutive_failures_and_the_batch_waits() {
    let storage = StorageReceiver::start().await.unwrap();
    // Five failures open the breaker; the first trial fails too; the second succeeds.
    storage.script(std::iter::repeat_n(Fault::Status(500, "down"), 6));
    let open_for = Duration::from_millis(400);
    let mut c = config(&storage.url(), 10);
    c.breaker_failures = 5;
    c.breaker_open_for = open_for;
    let mut sink = start(c, 20, Duration::from_secs(5), None);
    let m = sink.metrics.clone();
    let all = quotes(&["AAPL", "MSFT", "NVDA"], 60);
    let tx = sink.tx.take().unwrap();
    let producer = tokio::spawn(async move {
        for chunk in all.chunks(10) {
            tx.send(chunk.to_vec().into()).await;
        }
        Instant::now()
    });

    eventually("the breaker opens", Duration::from_secs(10), || {
        circuit_open(&m) == 1
    })
    .await;
    // The sink holds batch 1 and the queue fills to its 20 quotes: the producer is held back.
    eventually("the queue fills up", Duration::from_secs(10), || {
        m.queued_quotes.with_label_values(&["storage"]).get() == 20
    })
    .await;
    eventually(
        "every quote is delivered after recovery",
        Duration::from_secs(20),
        || published(&m) == 60,
    )
    .await;
    let producer_done = tokio::time::timeout(Duration::from_secs(10), producer)
        .await
        .unwrap()
        .unwrap();
    let m = sink.finish().await;

    let l = storage.ledger();
    let statuses = statuses(&l);
    assert_eq!(statuses[..7], [500, 500, 500, 500, 500, 500, 200]);
    assert_eq!(
        l.requests.len(),
        12,
        "7 for the first batch, one for each of the other 5"
    );
    assert!(
        producer_done > l.requests[6].at,
        "back-pressure: the producer could only finish once storage took the held batch"
    );
    let gap = |i: usize| l.requests[i].at - l.requests[i - 1].at;
    assert!(
        gap(5) >= open_for,
        "no request while open: 5th→6th {:?}",
        gap(5)
    );
    assert!(
        gap(6) >= open_for,
        "a failed trial reopens: 6th→7th {:?}",
        gap(6)
    );
    assert!(
        l.requests[..7].iter().all(|r| r.key == l.requests[0].key),
        "the same batch was retried"
    );
    assert_eq!(l.accepted.len(), 60);
    assert_eq!(l.replays, 0);
    assert_eq!(publish_errors(&m), 6);
    assert_no_drops(&m);
    assert_eq!(circuit_open(&m), 0, "closed again");
}

/// A batch refused once (a scripted 400, as a proxy or a store in a bad minute might answer)
/// is bisected: its halves are accepted and nothing is lost. It used to be dropped whole.
#[tokio::test]
async fn a_refused_batch_is_bisected_and_a_transient_refusal_loses_nothing() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.script([Fault::Status(
        400,
        "INV-002: quotes[3].ticker is not ^[A-Z]{1,5}$ (scripted)",
    )]);
    let all = quotes(&["AAPL", "MSFT"], 10);
    let m = deliver(&storage, 5, 1000, &all).await;

    let l = storage.ledger();
    let statuses = statuses(&l);
    assert_eq!(
        statuses,
        [400, 200, 200, 200],
        "the halves, then the next batch"
    );
    assert_eq!(l.batch_sizes, [2, 3, 5]);
    assert_eq!(l.accepted, expected_all(&all));
    assert_no_drops(&m);
    assert_eq!(publish_errors(&m), 1);
    assert_eq!(published(&m), 10);
    assert_eq!(circuit_open(&m), 0);
}

#[tokio::test]
async fn shutdown_writes_what_is_held_without_waiting_for_the_linger() {
    let storage = StorageReceiver::start().await.unwrap();
    let mut c = config(&storage.url(), 1000);
    c.linger = Duration::from_secs(3600);
    let sink = start(c, 1000, Duration::from_secs(5), None);
    let all = quotes(&["AAPL"], 15);
    for chunk in all.chunks(5) {
        sink.send(chunk).await;
    }
    // finish() allows 30 s: far less than the hour-long linger.
    let m = sink.finish().await;
    let l = storage.ledger();
    assert_eq!(l.batch_sizes, [15], "the three queued batches went as one");
    assert_eq!(l.accepted, expected_all(&all));
    assert_eq!(published(&m), 15);
    assert_no_drops(&m);
}

#[tokio::test]
async fn at_the_drain_deadline_unsent_quotes_are_counted_as_shutdown_drops() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.ledger().always = Some(Fault::Status(503, "down for maintenance"));
    let sink = start(
        config(&storage.url(), 10),
        1000,
        Duration::from_millis(300),
        None,
    );
    let all = quotes(&["AAPL", "MSFT"], 30);
    for chunk in all.chunks(10) {
        sink.send(chunk).await;
    }
    eventually("the first attempt", Duration::from_secs(10), || {
        !storage.ledger().requests.is_empty()
    })
    .await;
    // The queue closes with batches still in it while the sink retries the first one.
    let m = sink.finish().await;
    assert_eq!(published(&m), 0);
    assert_eq!(
        dropped(&m, "shutdown"),
        30,
        "in hand and still queued, all counted"
    );
    assert_eq!(dropped(&m, "rejected"), 0);
    assert!(storage.ledger().accepted.is_empty());
}

#[tokio::test]
async fn the_shutdown_token_bounds_retries_even_while_the_queue_stays_open() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.ledger().always = Some(Fault::Status(500, "down"));
    let token = CancellationToken::new();
    let mut c = config(&storage.url(), 10);
    c.breaker_open_for = Duration::from_secs(3600);
    let sink = start(c, 1000, Duration::from_millis(200), Some(token.clone()));
    let all = quotes(&["AAPL", "MSFT"], 25);
    for chunk in all.chunks(10) {
        sink.send(chunk).await;
    }
    let m = sink.metrics.clone();
    eventually("the breaker opens", Duration::from_secs(10), || {
        circuit_open(&m) == 1
    })
    .await;
    // The sink now waits an hour for its trial; shutdown must cut that short.
    token.cancel();
    let Running { tx, task, .. } = sink;
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the sink returned at the drain deadline")
        .unwrap()
        .unwrap();
    drop(tx);
    assert_eq!(dropped(&m, "shutdown"), 25);
    assert_eq!(published(&m), 0);
    assert_eq!(
        storage.ledger().requests.len(),
        5,
        "no request while the breaker was open"
    );
}

#[tokio::test]
async fn the_test_receiver_enforces_the_contract() {
    // The proofs above rely on this receiver rejecting anything outside INV-001..007.
    let storage = StorageReceiver::start().await.unwrap();
    quotestream_worker::install_crypto_provider();
    let http = reqwest::Client::new();
    let url = format!("{}/quotes/batch", storage.url());
    let good = json!({"ticker": "AAPL", "timestamp": "2026-01-13T04:00:00.000Z", "close": 175.23, "volume": 1, "source": "yfinance"});
    let with = |field: &str, value: Value| {
        let mut q = good.clone();
        q[field] = value;
        json!({ "quotes": [q] })
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("INV-001", json!({"quotes": []}), "application/json"),
        ("INV-001", json!([good.clone()]), "application/json"),
        (
            "INV-006",
            json!({"quotes": vec![good.clone(); 1001]}),
            "application/json",
        ),
        (
            "INV-002",
            with("ticker", json!("BRK.B")),
            "application/json",
        ),
        ("INV-002", with("ticker", json!("aapl")), "application/json"),
        (
            "INV-003",
            with("timestamp", json!("2026-01-13T06:00:00+02:00")),
            "application/json",
        ),
        (
            "INV-003",
            with("timestamp", json!(1768276800)),
            "application/json",
        ),
        ("INV-004", with("close", json!(-1.0)), "application/json"),
        (
            "INV-005",
            with("source", json!("bloomberg")),
            "application/json",
        ),
        ("INV-007", json!({"quotes": [good.clone()]}), "text/plain"),
    ];
    for (inv, body, content_type) in cases {
        let r = http
            .post(&url)
            .header("content-type", content_type)
            .header("idempotency-key", "0123456789abcdef")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{inv}: {body}");
        let text = r.text().await.unwrap();
        assert!(text.starts_with(inv), "{inv}: answered {text:?}");
    }
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .header("idempotency-key", "0123456789abcdef")
        .body(json!({"quotes": [good]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(storage.ledger().accepted.len(), 1);
}

#[tokio::test]
async fn one_refused_quote_costs_only_itself_the_batch_is_bisected() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.ledger().refused_ticker = Some("NVDA".into());
    let sink = start_on(&storage, 1000, 2000);
    // 1000 quotes, one of them NVDA (index 617): one contract batch of 1000.
    let mut all = quotes(&["AAPL", "MSFT"], 1000);
    all[617] = quotes(&["NVDA"], 618).pop().unwrap();
    sink.send(&all).await;
    let m = sink.finish().await;

    let l = storage.ledger();
    let mut delivered = l.accepted.clone();
    let mut wanted: Vec<Value> = all
        .iter()
        .filter(|q| q.ticker.as_str() != "NVDA")
        .map(expected)
        .collect();
    let by_key = |v: &Value| (v["ticker"].to_string(), v["timestamp"].to_string());
    delivered.sort_by_key(by_key);
    wanted.sort_by_key(by_key);
    assert_eq!(delivered.len(), 999, "every other quote is delivered");
    assert_eq!(delivered, wanted);
    assert_eq!(
        dropped(&m, "rejected"),
        1,
        "only the refused quote is dropped"
    );
    assert_eq!(published(&m), 999);
    let refused = l.requests.iter().filter(|r| r.status == 422).count();
    assert!(
        refused <= 11,
        "bisection finds the quote in about log2(1000) refusals, not {refused}"
    );
    assert_eq!(circuit_open(&m), 0, "a refusal is not an outage");
}

#[tokio::test]
async fn a_409_duplicate_counts_as_delivered() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.script([Fault::Status(409, "duplicate key (symbol, timestamp)")]);
    let sink = start_on(&storage, 10, 100);
    sink.send(&quotes(&["AAPL"], 10)).await;
    let m = sink.finish().await;
    let statuses: Vec<u16> = storage.ledger().requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [409], "storage has them: nothing to resend");
    assert_eq!(published(&m), 10);
    assert_no_drops(&m);
}

#[tokio::test]
async fn a_proxy_403_or_404_is_retried_not_dropped() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.script([
        Fault::Status(403, "<html>Forbidden (proxy)</html>"),
        Fault::Status(404, "<html>no route yet (ingress reload)</html>"),
    ]);
    let all = quotes(&["AAPL", "MSFT"], 10);
    let m = deliver(&storage, 10, 100, &all).await;
    let l = storage.ledger();
    let statuses = statuses(&l);
    assert_eq!(
        statuses,
        [403, 404, 200],
        "the same batch, kept and retried"
    );
    assert_eq!(l.accepted, expected_all(&all));
    assert_eq!(published(&m), 10);
    assert_no_drops(&m);
}

/// 429 is back-pressure from a storage that is up: the sink waits what Retry-After says and the
/// breaker stays closed. It used to count each 429 as a failure, so a storage pacing its clients
/// opened the breaker and the 60 s open period replaced the pause it asked for.
#[tokio::test]
async fn repeated_429s_honour_retry_after_and_never_open_the_breaker() {
    let storage = StorageReceiver::start().await.unwrap();
    storage.script(std::iter::repeat_n(
        Fault::TooManyRequests {
            retry_after_secs: 0,
        },
        8,
    ));
    let mut c = config(&storage.url(), 10);
    c.breaker_failures = 5;
    c.breaker_open_for = Duration::from_secs(3600);
    let sink = start(c, 100, Duration::from_secs(5), None);
    let m = sink.metrics.clone();
    sink.send(&quotes(&["AAPL"], 10)).await;
    eventually(
        "the batch is delivered right after the 8 pauses",
        Duration::from_secs(10),
        || published(&m) == 10,
    )
    .await;
    let m = sink.finish().await;
    let statuses: Vec<u16> = storage.ledger().requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses.len(), 9);
    assert_eq!(circuit_open(&m), 0);
    assert_no_drops(&m);
}
