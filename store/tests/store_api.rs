//! The `quotestream-store` process against a real PostgreSQL 15: startup (migrations, a
//! database that is not there), POST /quotes/batch (every kind of bad input refused with a 4xx
//! naming the problem and nothing written, replays and Idempotency-Key), 503 + Retry-After
//! while the database is down, /health, /metrics and the SIGTERM drain.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use quotestream_testkit::{PostgresServer, http_get, wait_until};
use serde_json::{Value, json};
use support::{Store, batch, client, count, database, post, quote, wait_exit};

/// 2026-01-20T14:30:15.123Z
const T0: i64 = 1_768_919_415_123;

fn rows(pg: &PostgresServer, db: &str) -> u64 {
    count(pg, db, "SELECT count(*) FROM quotes.real_time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_rule_and_index_and_nothing_is_written() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "bad_input");
    let store = Store::start(&dsn, &[]);
    let http = client();
    let good = |i: i64| quote("AAPL", T0 + i, 185.5, 1000);
    let with = |field: &str, value: Value| {
        let mut q = good(1);
        q[field] = value;
        batch(vec![good(0), q])
    };
    let future = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(3))
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let hundred_k: Vec<Value> = (0..100_000).map(good).collect();
    let cases: Vec<(&str, String, u16, &str, Option<u64>)> = vec![
        ("empty batch", batch(vec![]), 422, "INV-001", None),
        (
            "lowercase ticker",
            with("ticker", json!("aapl")),
            422,
            "INV-002",
            Some(1),
        ),
        (
            "share class",
            with("ticker", json!("BRK.B")),
            422,
            "INV-002",
            Some(1),
        ),
        (
            "offset timestamp",
            with("timestamp", json!("2026-01-20T16:30:15.123+02:00")),
            422,
            "INV-003",
            Some(1),
        ),
        (
            "future timestamp",
            with("timestamp", json!(future)),
            422,
            "INV-003",
            Some(1),
        ),
        (
            "zero close",
            with("close", json!(0)),
            422,
            "INV-004",
            Some(1),
        ),
        (
            "unknown source",
            with("source", json!("bloomberg")),
            422,
            "INV-005",
            Some(1),
        ),
        (
            "1001 quotes",
            batch((0..1001).map(good).collect()),
            422,
            "INV-006",
            None,
        ),
        (
            "fractional volume",
            with("volume", json!(1.5)),
            422,
            "volume",
            Some(1),
        ),
        (
            "duplicate key",
            batch(vec![good(0), good(1), good(0)]),
            422,
            "duplicate",
            Some(2),
        ),
        (
            "NaN",
            batch(vec![good(0)]).replace("185.5", "NaN"),
            400,
            "json",
            None,
        ),
        ("malformed JSON", "{\"quotes\":[".into(), 400, "json", None),
        ("not a batch", "{\"rows\":[]}".into(), 400, "json", None),
        (
            "10 MB body",
            format!("{{\"quotes\":[],\"pad\":\"{}\"}}", "x".repeat(10 << 20)),
            413,
            "body_size",
            None,
        ),
        ("100 000 quotes", batch(hundred_k), 413, "body_size", None),
    ];
    for (what, body, status, rule, index) in cases {
        let (code, _, answer) = post(&http, &store, body, &[]).await;
        assert_eq!(code, status, "{what}: {answer}");
        let error = &answer["error"];
        assert_eq!(error["rule"], rule, "{what}: {answer}");
        assert_eq!(error["index"].as_u64(), index, "{what}: {answer}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.len() > 10),
            "{what}: {answer}"
        );
    }
    // INV-007: another content type.
    let r = http
        .post(format!("{}/quotes/batch", store.url()))
        .header("Content-Type", "text/plain")
        .body(batch(vec![good(0)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"]["rule"], "INV-007");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );

    assert_eq!(rows(&pg, "bad_input"), 0, "a refused batch writes nothing");
    // The service kept serving.
    let (code, _, answer) = post(&http, &store, batch(vec![good(0), good(1)]), &[]).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"accepted": 2, "inserted": 2, "duplicates": 0})
    );
    assert_eq!(rows(&pg, "bad_input"), 2);
    assert_eq!(
        store.metric("quotestore_rejected_batches_total{rule=\"INV-002\"}"),
        2.0
    );
    assert_eq!(
        store.metric("quotestore_rejected_batches_total{rule=\"body_size\"}"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_insert_nothing_and_idempotency_keys_name_one_batch() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "replay");
    let store = Store::start(&dsn, &[]);
    let http = client();
    let body = batch(
        (0..500)
            .map(|i| quote("MSFT", T0 + i, 400.0, 10 + i as u64))
            .collect(),
    );
    let (code, _, a) = post(&http, &store, body.clone(), &[("Idempotency-Key", "k1")]).await;
    assert_eq!((code, a["inserted"].as_u64()), (200, Some(500)), "{a}");
    // The same key: answered from the cache.
    let (code, _, a) = post(&http, &store, body.clone(), &[("Idempotency-Key", "k1")]).await;
    assert_eq!(code, 200);
    assert_eq!(
        a,
        json!({"accepted": 500, "inserted": 500, "duplicates": 0, "replay": true})
    );
    // No key: the database skips every row.
    let (code, _, a) = post(&http, &store, body, &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        a,
        json!({"accepted": 500, "inserted": 0, "duplicates": 500})
    );
    // A key reused for another body.
    let other = batch(vec![quote("MSFT", T0 + 9_999, 401.0, 1)]);
    let (code, _, a) = post(&http, &store, other, &[("Idempotency-Key", "k1")]).await;
    assert_eq!(code, 422, "{a}");
    assert_eq!(a["error"]["rule"], "idempotency_key");
    assert_eq!(rows(&pg, "replay"), 500);
    assert_eq!(store.metric("quotestore_idempotent_replays_total"), 1.0);
    // The merger folds the inserted rows (once) into the rollups.
    assert!(wait_until(support::WAIT, || store
        .metric("quotestore_rollup_merged_rows_total")
        >= 500.0));
    assert_eq!(
        count(
            &pg,
            "replay",
            "SELECT sum(quotes) FROM quotes.real_time_bars_1m"
        ),
        500
    );
    assert_eq!(
        count(
            &pg,
            "replay",
            "SELECT sum(quotes) FROM quotes.real_time_daily"
        ),
        500
    );
    assert_eq!(
        pg.psql(
            "replay",
            "SELECT symbol || ' ' || price || ' ' || volume FROM quotes.real_time_latest"
        )
        .unwrap(),
        "MSFT 400 509"
    );
    assert_eq!(
        store.metric("quotestore_ingest_rows_total{result=\"duplicate\"}"),
        500.0
    );
}

/// Group commit (docs/store.md, "Group commit"): with one database session, batches that
/// arrive while it is busy are written together by the next request that gets it, and each is
/// answered what its own write would have given — all new (one transaction), or holding a
/// replay and a row another batch of the group inserts (one transaction per batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_waiting_for_a_session_share_a_commit_and_each_gets_its_own_answer() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "groups");
    let store = Store::start(&dsn, &["--connections", "1"]);
    // The partition maintenance at startup takes the session and locks the table for a moment;
    // it must be over before the test holds the table.
    assert!(
        wait_until(support::WAIT, || store
            .log_text()
            .contains("partition maintenance")),
        "no partition maintenance at startup; log:\n{}",
        store.log_text()
    );
    let http = client();
    let (locker, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let three = |ticker: &str, from: i64| {
        (0..3)
            .map(|i| quote(ticker, T0 + from + i, 100.0, 10 + i as u64))
            .collect::<Vec<Value>>()
    };
    let parsed = || store.metric("quotestore_ingest_phase_seconds_count{phase=\"parse\"}");
    // Holds the quotes table (the only session's COPY waits on it) while `later` queue up
    // behind that session in order, then lets go; returns every answer, in order.
    let round = |first: Vec<Value>, later: Vec<Vec<Value>>| {
        let (http, locker, store, pg) = (&http, &locker, &store, &pg);
        async move {
            locker
                .batch_execute("BEGIN; LOCK TABLE quotes.real_time IN SHARE ROW EXCLUSIVE MODE")
                .await
                .unwrap();
            let before = parsed();
            let mut sent = Vec::new();
            for (k, quotes) in std::iter::once(first).chain(later).enumerate() {
                let (http, url) = (http.clone(), store.url());
                sent.push(tokio::spawn(async move {
                    let r = http
                        .post(format!("{url}/quotes/batch"))
                        .header("Content-Type", "application/json")
                        .body(batch(quotes))
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), r.json::<Value>().await.unwrap())
                }));
                // The first holds the session (its COPY waits on the lock); each later one is
                // queued (parsed and checked) before the next is sent, so the order is known.
                assert!(
                    wait_until(support::WAIT, || parsed() >= before + k as f64 + 1.0),
                    "batch {k} was not parsed"
                );
                if k == 0 {
                    assert!(
                        wait_until(support::WAIT, || count(
                            pg,
                            "groups",
                            "SELECT count(*) FROM pg_stat_activity \
                             WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%'"
                        ) == 1),
                        "the first batch's COPY did not wait on the lock"
                    );
                }
            }
            locker.batch_execute("COMMIT").await.unwrap();
            let mut answers = Vec::new();
            for s in sent {
                answers.push(s.await.unwrap());
            }
            answers
        }
    };
    let answer = |inserted: u64, duplicates: u64| {
        (
            200,
            json!({"accepted": inserted + duplicates, "inserted": inserted, "duplicates": duplicates}),
        )
    };

    // All new: the two queued batches are one group, one transaction.
    let answers = round(three("AAA", 0), vec![three("BBB", 0), three("CCC", 0)]).await;
    assert_eq!(answers, vec![answer(3, 0), answer(3, 0), answer(3, 0)]);
    assert_eq!(store.metric("quotestore_group_batches_count"), 2.0);
    assert_eq!(store.metric("quotestore_group_batches_sum"), 3.0, "1 + 2");

    // A group holding a replay of a stored batch, and a batch repeating a row of the one
    // before it in the group: each batch is answered as if written alone, in order.
    let mut repeats = three("EEE", 100);
    repeats[0] = three("DDD", 100)[0].clone();
    let answers = round(
        three("FFF", 100),
        vec![
            three("DDD", 100),
            three("AAA", 0),
            repeats,
            three("GGG", 100),
        ],
    )
    .await;
    assert_eq!(
        answers,
        vec![
            answer(3, 0),
            answer(3, 0),
            answer(0, 3),
            answer(2, 1),
            answer(3, 0)
        ]
    );
    assert_eq!(store.metric("quotestore_group_batches_count"), 4.0);
    assert_eq!(
        store.metric("quotestore_group_batches_sum"),
        8.0,
        "1 + 2 + 1 + 4"
    );
    assert_eq!(rows(&pg, "groups"), 20);
    // The rollups count every stored quote once.
    assert!(wait_until(support::WAIT, || store
        .metric("quotestore_rollup_merged_rows_total")
        >= 20.0));
    assert_eq!(
        count(
            &pg,
            "groups",
            "SELECT sum(quotes) FROM quotes.real_time_bars_1m"
        ),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_seed_checks() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "health");
    let store = Store::start(&dsn, &[]);
    let (code, text) = http_get(store.port, "/health").unwrap();
    assert_eq!(code, 200, "{text}");
    let h: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(h["status"], "healthy");
    for check in ["database", "timescaledb", "hypertable", "migrations"] {
        assert_eq!(h["checks"][check]["ok"], true, "{check}: {h}");
    }
    assert!(
        h["checks"]["timescaledb"]["detail"]
            .as_str()
            .unwrap()
            .contains("not available"),
        "{h}"
    );
    let (code, text) = http_get(store.port, "/metrics").unwrap();
    assert_eq!(code, 200);
    for name in [
        "quotestore_ingest_rows_total",
        "quotestore_ingest_rows_per_second",
        "quotestore_batch_duration_seconds_bucket",
        "quotestore_rejected_batches_total",
        "quotestore_db_errors_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_batches_get_503_with_retry_after() {
    let mut pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "outage");
    let store = Store::start(&dsn, &["--retry-after-secs", "3"]);
    let http = client();
    let (code, _, _) = post(&http, &store, batch(vec![quote("NVDA", T0, 1.0, 1)]), &[]).await;
    assert_eq!(code, 200);

    pg.stop();
    let (code, retry, a) = post(
        &http,
        &store,
        batch(vec![quote("NVDA", T0 + 1, 1.0, 1)]),
        &[],
    )
    .await;
    assert_eq!(code, 503, "{a}");
    assert_eq!(retry.as_deref(), Some("3"));
    assert_eq!(a["error"]["rule"], "database");
    let (code, text) = http_get(store.port, "/health").unwrap();
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("\"unhealthy\""), "{text}");
    // Still ready: the Service keeps routing to it so clients get the 503 and its Retry-After.
    assert_eq!(http_get(store.port, "/ready").unwrap().0, 200);
    assert!(store.metric("quotestore_db_errors_total{kind=\"unavailable\"}") >= 1.0);
    // The rollup merger fails too (it retries every second), counted apart from the batches:
    // a failing merge alone must not look like a store that cannot take batches.
    assert!(
        wait_until(support::WAIT, || {
            store.metric("quotestore_db_errors_total{kind=\"rollup\"}") >= 1.0
        }),
        "no failed merge counted as kind=\"rollup\" while the database was down"
    );

    pg.restart().unwrap();
    let (code, _, a) = post(
        &http,
        &store,
        batch(vec![quote("NVDA", T0 + 1, 1.0, 1)]),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(rows(&pg, "outage"), 2);
    assert!(wait_until(support::WAIT, || http_get(
        store.port, "/health"
    )
    .is_some_and(|(c, _)| c == 200)));
}

#[test]
fn an_unreachable_database_stops_startup_with_a_clear_message() {
    let port = quotestream_testkit::free_port().unwrap();
    let mut store = Store::spawn(&format!("postgres://postgres@127.0.0.1:{port}/none"), &[]);
    let status = wait_exit(&mut store.child, support::WAIT);
    assert!(!status.success());
    let log = store.log_text();
    assert!(log.contains("cannot connect to PostgreSQL"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");

    let mut store = Store::spawn("", &[]);
    let status = wait_exit(&mut store.child, support::WAIT);
    assert!(!status.success());
    assert!(
        store.log_text().contains("DATABASE_URL is not set"),
        "{}",
        store.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "drain");
    let mut store = Store::start(&dsn, &[]);
    let http = client();
    // Batches in flight while SIGTERM arrives: each is either stored and answered 200, or
    // never accepted (connection refused) — none is cut halfway.
    let mut sent = Vec::new();
    for b in 0..20 {
        let body = batch(
            (0..1000)
                .map(|i| quote("AMZN", T0 + b * 1000 + i, 200.0, 1))
                .collect(),
        );
        let http = http.clone();
        let url = format!("{}/quotes/batch", store.url());
        sent.push(tokio::spawn(async move {
            http.post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }));
    }
    support::signal(store.child.id(), "TERM");
    let mut ok = 0u64;
    for s in sent {
        if s.await.unwrap() == Some(200) {
            ok += 1;
        }
    }
    let status = wait_exit(&mut store.child, support::WAIT);
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        store.log_text()
    );
    assert_eq!(
        rows(&pg, "drain"),
        ok * 1000,
        "answered batches are exactly the stored ones"
    );
}
