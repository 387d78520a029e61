//! The PostgreSQL sink against a real PostgreSQL server: migrations (idempotent, concurrent),
//! exactly-once rows through replays, a server restart in the middle of the stream, shutdown
//! draining, rejected rows and startup errors. TimescaleDB is not installable here (not in
//! Debian), so these run the plain-PostgreSQL path; the hypertable SQL is unit-tested.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use quotestream_testkit::{PostgresServer, wait_until};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::queue::{self, FullPolicy, QueueSender};
use quotestream_worker::quote::{Quote, RawQuote, validate};
use quotestream_worker::sinks::postgres::{
    PostgresConfig, PostgresError, PostgresSink, connect_and_migrate,
};
use quotestream_worker::sinks::{Batch, Sink, SinkContext};

const TABLE: &str = "quotes.real_time";
const WAIT: Duration = Duration::from_secs(60);
const T0: i64 = 1_768_919_415_123; // 2026-01-20T14:30:15.123Z

fn quote(ticker: &str, ms: i64, price: f64) -> Quote {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
    validate(
        RawQuote {
            ticker: ticker.into(),
            timestamp: ts,
            price,
            volume: 45_000_000.0,
            bid: Some(price - 0.02),
            ask: Some(price + 0.02),
            open: Some(184.0),
            high: None,
            low: None,
            source: "synthetic",
        },
        ts,
    )
    .unwrap()
}

/// `count` distinct quotes over a few tickers (one a share class), starting at quote `from`.
fn batch(from: usize, count: usize) -> Batch {
    const TICKERS: [&str; 4] = ["AAPL", "MSFT", "BRK.B", "NVDA"];
    (from..from + count)
        .map(|i| quote(TICKERS[i % 4], T0 + i as i64, 100.0 + (i % 50) as f64))
        .collect::<Vec<_>>()
        .into()
}

fn config(dsn: &str) -> PostgresConfig {
    PostgresConfig::new(Some(dsn.to_owned()), TABLE).unwrap()
}

struct Running {
    tx: Option<QueueSender>,
    task: tokio::task::JoinHandle<()>,
    metrics: Metrics,
}

impl Running {
    async fn send(&self, b: Batch) {
        self.tx.as_ref().unwrap().send(b).await;
    }

    /// Closes the queue (the worker shutting down) and waits for the sink to return.
    async fn finish(mut self) -> Metrics {
        drop(self.tx.take());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the sink returned after its queue closed")
            .unwrap();
        self.metrics
    }
}

fn published(m: &Metrics) -> u64 {
    m.quotes_published.with_label_values(&["postgres"]).get()
}

fn dropped(m: &Metrics, reason: &str) -> u64 {
    m.dropped_quotes
        .with_label_values(&["postgres", reason])
        .get()
}

fn publish_errors(m: &Metrics) -> u64 {
    m.errors.with_label_values(&["publish"]).get()
}

fn start(sink: PostgresSink, capacity: usize, drain_deadline: Duration) -> Running {
    // The sink's logs, shown when a test fails (RUST_LOG to change the level).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let metrics = Metrics::new("test", 0).unwrap();
    let budget = quotestream_worker::footprint::budget_for_quotes(capacity);
    let (tx, rx) = queue::for_sink(&metrics, "postgres", budget, FullPolicy::Block);
    let ctx = SinkContext {
        metrics: metrics.clone(),
        drain_deadline,
        shutdown: tokio_util::sync::CancellationToken::new(),
        status: Default::default(),
        acks: quotestream_worker::buffer::Acks::none(),
    };
    let task = tokio::spawn(async move { sink.run(rx, ctx).await.unwrap() });
    Running {
        tx: Some(tx),
        task,
        metrics,
    }
}

fn count(server: &PostgresServer, db: &str, sql: &str) -> u64 {
    server.psql(db, sql).unwrap().parse().unwrap()
}

fn rows(server: &PostgresServer, db: &str) -> u64 {
    count(server, db, "SELECT count(*) FROM quotes.real_time")
}

#[tokio::test]
async fn migrations_create_the_keyed_table_once_even_when_two_workers_start_together() {
    let server = PostgresServer::start().unwrap();
    let dsn = server.create_database("migrations").unwrap();
    let c = config(&dsn);
    // Two workers starting at once, each on its own task and connection.
    let spawn = || {
        let c = c.clone();
        tokio::spawn(async move { connect_and_migrate(&c).await })
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    let mut applied = [
        a.migrations().applied.clone(),
        b.migrations().applied.clone(),
    ];
    applied.sort();
    assert_eq!(
        applied,
        [vec![], vec![1]],
        "one worker applied migration 1, the other waited for the lock and found it applied"
    );
    assert!(
        !a.migrations().timescale && !b.migrations().timescale,
        "no TimescaleDB on this server: plain PostgreSQL, migration 2 pending"
    );

    let again = connect_and_migrate(&c).await.unwrap();
    assert!(again.migrations().applied.is_empty(), "idempotent");
    assert_eq!(
        server
            .psql(
                "migrations",
                "SELECT target_table || ':' || version FROM quotes.quotestream_migrations"
            )
            .unwrap(),
        "quotes.real_time:1"
    );
    assert_eq!(
        server
            .psql(
                "migrations",
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE conrelid = 'quotes.real_time'::regclass AND contype = 'p'"
            )
            .unwrap(),
        "PRIMARY KEY (symbol, \"timestamp\")"
    );
    assert_eq!(
        server
            .psql(
                "migrations",
                "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' ORDER BY ordinal_position) \
                 FROM information_schema.columns WHERE table_schema = 'quotes' AND table_name = 'real_time'"
            )
            .unwrap(),
        "symbol text NO, timestamp timestamp with time zone NO, price double precision NO, \
         volume bigint NO, bid double precision YES, ask double precision YES, \
         open double precision YES, high double precision YES, low double precision YES, \
         source text NO, received_at timestamp with time zone NO"
    );
}

#[tokio::test]
async fn quotes_are_written_once_and_a_replayed_batch_adds_no_rows() {
    let server = PostgresServer::start().unwrap();
    let dsn = server.create_database("once").unwrap();
    let c = config(&dsn);
    let session = connect_and_migrate(&c).await.unwrap();
    let run = start(
        PostgresSink::with_session(c.clone(), session),
        100_000,
        Duration::from_secs(10),
    );
    let first = batch(0, 6000);
    run.send(first.clone()).await;
    run.send(first.clone()).await; // the pipeline replaying (e.g. after a reshard)
    let metrics = run.finish().await;
    assert_eq!(rows(&server, "once"), 6000);
    assert_eq!(published(&metrics), 12_000, "both copies were confirmed");

    // A new worker replaying the same quotes (at-least-once after a crash) adds nothing either.
    let replay = start(PostgresSink::new(c), 100_000, Duration::from_secs(10));
    replay.send(batch(3000, 3000)).await;
    replay.send(batch(6000, 10)).await;
    let metrics = replay.finish().await;
    assert_eq!(rows(&server, "once"), 6010);
    assert_eq!(published(&metrics), 3010);
    assert_eq!(
        dropped(&metrics, "rejected") + dropped(&metrics, "shutdown"),
        0
    );

    assert_eq!(
        server
            .psql(
                "once",
                "SELECT symbol || ' ' || to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
                 || ' ' || price || ' ' || volume || ' ' || bid || ' ' || ask || ' ' || open || ' ' \
                 || coalesce(high::text, 'null') || ' ' || source \
                 FROM quotes.real_time WHERE symbol = 'BRK.B' ORDER BY \"timestamp\" LIMIT 1"
            )
            .unwrap(),
        "BRK.B 2026-01-20T14:30:15.125Z 102 45000000 101.98 102.02 184 null synthetic",
        "share classes are stored as-is, every field round-trips"
    );
    assert_eq!(
        count(
            &server,
            "once",
            "SELECT count(*) FROM (SELECT symbol, \"timestamp\" FROM quotes.real_time GROUP BY 1, 2 HAVING count(*) > 1) d"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_stream_loses_and_duplicates_nothing() {
    let mut server = PostgresServer::start().unwrap();
    let dsn = server.create_database("restart").unwrap();
    let c = config(&dsn);
    let session = connect_and_migrate(&c).await.unwrap();
    let mut run = start(
        PostgresSink::with_session(c, session),
        1000,
        Duration::from_secs(30),
    );
    for i in 0..10 {
        run.send(batch(i * 100, 100)).await;
    }
    let written =
        tokio::task::block_in_place(|| wait_until(WAIT, || rows(&server, "restart") == 1000));
    assert!(
        written,
        "the first 1000 quotes were written before the outage"
    );

    tokio::task::block_in_place(|| server.stop());
    // 9000 more quotes while the server is down: the sink holds a batch (at most 5000 rows)
    // and retries, the queue (1000 quotes) fills, and the producer waits (back-pressure). The producer closes
    // the queue when done, as the pipeline does at shutdown.
    let tx = run.tx.take().unwrap();
    let producer = tokio::spawn(async move {
        for i in 10..100 {
            tx.send(batch(i * 100, 100)).await;
        }
    });
    let outage_seen = tokio::time::timeout(WAIT, async {
        while publish_errors(&run.metrics) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        outage_seen.is_ok(),
        "the sink noticed the outage and retried"
    );
    assert_eq!(
        run.metrics
            .sink_retrying
            .with_label_values(&["postgres"])
            .get(),
        1,
        "the sink reports that PostgreSQL is failing"
    );
    assert!(!producer.is_finished(), "back-pressure held the producer");
    tokio::task::block_in_place(|| server.restart().unwrap());
    tokio::time::timeout(WAIT, producer)
        .await
        .expect("the producer got through after the restart")
        .unwrap();

    let metrics = run.finish().await;
    assert_eq!(rows(&server, "restart"), 10_000, "every quote is there");
    assert_eq!(
        count(
            &server,
            "restart",
            "SELECT count(DISTINCT (symbol, \"timestamp\")) FROM quotes.real_time"
        ),
        10_000,
        "exactly once"
    );
    assert_eq!(published(&metrics), 10_000);
    assert_eq!(
        dropped(&metrics, "rejected") + dropped(&metrics, "shutdown"),
        0
    );
    assert!(publish_errors(&metrics) >= 2);
    assert_eq!(
        metrics.sink_retrying.with_label_values(&["postgres"]).get(),
        0,
        "writes resumed"
    );
    assert!(
        metrics
            .publish_duration
            .with_label_values(&["postgres"])
            .get_sample_count()
            > 0
    );
}

#[tokio::test]
async fn shutdown_writes_everything_still_in_hand_and_queued() {
    let server = PostgresServer::start().unwrap();
    let dsn = server.create_database("drain").unwrap();
    let mut c = config(&dsn);
    // Nothing would be written before the close: batches never fill and linger is long.
    c.batch_rows = 1_000_000;
    c.linger = Duration::from_secs(3600);
    let run = start(PostgresSink::new(c), 100_000, Duration::from_secs(10));
    for i in 0..5 {
        run.send(batch(i * 700, 700)).await;
    }
    let metrics = run.finish().await;
    assert_eq!(rows(&server, "drain"), 3500);
    assert_eq!(published(&metrics), 3500);
}

#[tokio::test]
async fn shutdown_during_an_outage_counts_what_could_not_be_written() {
    let mut server = PostgresServer::start().unwrap();
    let dsn = server.create_database("lost").unwrap();
    let c = config(&dsn);
    server.stop();
    let run = start(PostgresSink::new(c), 1000, Duration::from_millis(500));
    run.send(batch(0, 50)).await;
    run.send(batch(50, 25)).await;
    let metrics = run.finish().await;
    assert_eq!(
        dropped(&metrics, "shutdown"),
        75,
        "all counted once the drain deadline passed"
    );
    assert_eq!(published(&metrics), 0);
    assert!(publish_errors(&metrics) >= 1);
}

#[tokio::test]
async fn rows_the_table_refuses_are_dropped_and_counted_the_rest_is_written() {
    let server = PostgresServer::start().unwrap();
    let dsn = server.create_database("rejects").unwrap();
    let c = config(&dsn);
    drop(connect_and_migrate(&c).await.unwrap());
    // A rule added by a DBA that some quotes break (SQLSTATE 23514, a data error).
    server
        .psql(
            "rejects",
            "ALTER TABLE quotes.real_time ADD CONSTRAINT sane_price CHECK (price < 1000000)",
        )
        .unwrap();
    let mut quotes: Vec<Quote> = batch(0, 100).to_vec();
    quotes[37] = quote("AAPL", T0 + 37, 2_000_000.0);
    quotes[80] = quote("MSFT", T0 + 80, 3_000_000.0);
    let run = start(PostgresSink::new(c), 1000, Duration::from_secs(10));
    run.send(quotes.into()).await;
    let metrics = run.finish().await;
    assert_eq!(dropped(&metrics, "rejected"), 2, "only the two bad rows");
    assert_eq!(rows(&server, "rejects"), 98);
    assert_eq!(published(&metrics), 98);
}

#[tokio::test]
async fn startup_errors_say_what_to_fix() {
    let server = PostgresServer::start().unwrap();
    let msg = |e: PostgresError| e.to_string();

    let e = msg(connect_and_migrate(&config(&server.dsn("nope")))
        .await
        .unwrap_err());
    assert!(e.contains("3D000"), "{e}");
    assert!(e.contains("create the database"), "{e}");

    let port = quotestream_testkit::free_port().unwrap();
    let e = msg(
        connect_and_migrate(&config(&format!("postgres://postgres@127.0.0.1:{port}/x")))
            .await
            .unwrap_err(),
    );
    assert!(e.contains(&format!("postgres@127.0.0.1:{port}/x")), "{e}");
    assert!(e.contains("check the host and port"), "{e}");

    server.create_database("limited").unwrap();
    server.psql("limited", "CREATE ROLE feeder LOGIN").unwrap();
    let limited = format!("postgres://feeder@127.0.0.1:{}/limited", server.port());
    let e = msg(connect_and_migrate(&config(&limited)).await.unwrap_err());
    assert!(e.contains("42501"), "{e}");
    assert!(e.contains("grant the user CREATE"), "{e}");

    // A table the migrations did not create and cannot write to.
    server.create_database("foreign").unwrap();
    server
        .psql(
            "foreign",
            "CREATE SCHEMA quotes; CREATE TABLE quotes.real_time (symbol text, \"timestamp\" timestamptz)",
        )
        .unwrap();
    let e = msg(connect_and_migrate(&config(&server.dsn("foreign")))
        .await
        .unwrap_err());
    assert!(e.contains("no column price, volume"), "{e}");
}
