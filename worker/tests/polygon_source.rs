#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The polygon source against a local server speaking Massive's (formerly Polygon.io) stocks
//! WebSocket protocol (status greeting, auth, T/Q/AM channels, batched JSON arrays), including
//! its failure scripts and account limits.

mod support;

use std::collections::BTreeSet;

use jiff::Timestamp;
use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::polygon::{Account, MALFORMED, PolygonServer};
use quotestream_worker::quote::{RawQuote, validate};
use quotestream_worker::sources::SourceError;
use quotestream_worker::sources::polygon::{Polygon, PolygonConfig};

use support::{StreamRun, eventually, quick_settings, set};

const KEY: &str = "test-key";

fn protocol(server: &PolygonServer) -> Polygon {
    Polygon::new(PolygonConfig {
        url: server.url(),
        api_key: KEY.into(),
        key_source: "key \"apiKey\" of Secret \"massive\" (spec.source.polygon.apiKeySecretRef)"
            .into(),
    })
}

fn tickers_in(quotes: &[RawQuote]) -> BTreeSet<String> {
    quotes.iter().map(|q| q.ticker.clone()).collect()
}

fn texts(server: &PolygonServer, connection: usize) -> Vec<String> {
    server
        .journal()
        .frames()
        .into_iter()
        .filter(|f| f.connection == connection)
        .map(|f| f.text)
        .collect()
}

#[tokio::test]
async fn logs_in_then_streams_every_subscribed_ticker() {
    let account = Account {
        api_key: Some(KEY.into()),
        ..Account::default()
    };
    let server = PolygonServer::start_with(Script::at_rate(2000.0), account, 0)
        .await
        .unwrap();
    let mut run = StreamRun::start(
        protocol(&server),
        quick_settings(),
        set(["AAPL", "BRK.B", "MSFT"]),
    );
    let quotes = run
        .until("quotes with a book for all three tickers", |q, _| {
            let with_book: Vec<RawQuote> = q.iter().filter(|q| q.bid.is_some()).cloned().collect();
            tickers_in(&with_book).len() == 3
        })
        .await;
    assert_eq!(
        texts(&server, 0)[..2],
        [
            r#"{"action":"auth","params":"test-key"}"#,
            r#"{"action":"subscribe","params":"T.AAPL,Q.AAPL,AM.AAPL,T.BRK.B,Q.BRK.B,AM.BRK.B,T.MSFT,Q.MSFT,AM.MSFT"}"#
        ],
        "auth first, then one subscribe for every channel"
    );
    let now = Timestamp::now();
    for q in &quotes {
        assert_eq!(q.source, "polygon");
        assert!(q.volume > 0.0, "{q:?}");
        validate(q.clone(), now).unwrap_or_else(|e| panic!("{q:?}: {e}"));
    }
    assert!(
        quotes.iter().any(|q| q.open.is_some()),
        "the minute aggregate's day open reaches the quotes"
    );
    assert_eq!(run.metrics.source_connected.get(), 1);
    assert_eq!(run.metrics.source_subscribed.get(), 3);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_new_assignment_changes_the_subscription_on_the_same_connection() {
    let server = PolygonServer::start(Script::at_rate(2000.0), 0)
        .await
        .unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL", "MSFT"]));
    run.until("first quotes", |q, _| tickers_in(q).len() == 2)
        .await;
    run.tickers.send(set(["MSFT", "NVDA"])).unwrap();
    eventually("the unsubscribe and subscribe frames", || {
        let texts = texts(&server, 0);
        texts.contains(&r#"{"action":"unsubscribe","params":"T.AAPL,Q.AAPL,AM.AAPL"}"#.to_owned())
            && texts
                .contains(&r#"{"action":"subscribe","params":"T.NVDA,Q.NVDA,AM.NVDA"}"#.to_owned())
    })
    .await;
    run.until("NVDA quotes", |q, _| tickers_in(q).contains("NVDA"))
        .await;
    let later = run.until("more quotes", |q, _| q.len() >= 50).await;
    assert!(
        !tickers_in(&later).contains("AAPL"),
        "a removed ticker was delivered"
    );
    assert_eq!(server.connections(), 1, "the change must not reconnect");
    assert_eq!(run.metrics.source_subscribed.get(), 2);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_that_closes_mid_stream_is_logged_into_again_and_resubscribed() {
    let script = Script {
        close_after: Some(20),
        ..Script::at_rate(2000.0)
    };
    let server = PolygonServer::start(script, 0).await.unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL", "MSFT"]));
    run.until("quotes after the reconnect", |q, m| {
        q.len() > 40 && m.source_reconnects.with_label_values(&["closed"]).get() == 1
    })
    .await;
    assert_eq!(server.connections(), 2);
    assert_eq!(
        texts(&server, 1)[..2],
        [
            r#"{"action":"auth","params":"test-key"}"#,
            r#"{"action":"subscribe","params":"T.AAPL,Q.AAPL,AM.AAPL,T.MSFT,Q.MSFT,AM.MSFT"}"#
        ]
    );
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_server_is_detected_and_replaced() {
    let script = Script {
        silent_after: Some(10),
        ..Script::at_rate(1000.0)
    };
    let server = PolygonServer::start(script, 0).await.unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
    run.until("quotes from a second connection", |q, m| {
        q.len() > 20 && m.source_reconnects.with_label_values(&["silent"]).get() == 1
    })
    .await;
    assert_eq!(server.connections(), 2);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_key_stops_the_source_with_the_secret_to_fix() {
    let script = Script {
        reject_login: true,
        ..Script::at_rate(100.0)
    };
    let server = PolygonServer::start(script, 0).await.unwrap();
    let run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
    let metrics = run.metrics.clone();
    let error = run.ended().await.unwrap_err();
    let SourceError::Config(message) = &error else {
        panic!("expected a configuration error, got {error:?}");
    };
    assert!(
        message.contains("auth_failed")
            && message.contains("spec.source.polygon.apiKeySecretRef")
            && message.contains("\"massive\""),
        "{message}"
    );
    assert_eq!(server.connections(), 1, "a refused key is not retried");
    assert_eq!(
        metrics
            .source_vendor_errors
            .with_label_values(&["auth_failed"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_second_connection_on_the_key_is_refused_and_names_max_connections() {
    let server = PolygonServer::start(Script::at_rate(500.0), 0)
        .await
        .unwrap();
    let mut first = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
    first
        .until("the first connection streams", |q, _| !q.is_empty())
        .await;
    let second = StreamRun::start(protocol(&server), quick_settings(), set(["MSFT"]));
    let error = second.ended().await.unwrap_err();
    assert!(
        matches!(&error, SourceError::Config(m) if m.contains("max_connections") && m.contains("spec.source.polygon.maxConnections")),
        "{error:?}"
    );
    first
        .until("the first connection is unaffected", |q, _| q.len() > 10)
        .await;
    assert_eq!(server.connections(), 2);
    first.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_events_are_counted_by_reason_and_never_published() {
    let script = Script {
        malformed_every: Some(3),
        ..Script::at_rate(2000.0)
    };
    let server = PolygonServer::start(script, 0).await.unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL", "MSFT"]));
    let counted_by_source: Vec<&str> = MALFORMED
        .iter()
        .copied()
        .filter(|r| *r != "price")
        .collect();
    let quotes = run
        .until("every kind of bad input, and a negative price", |q, m| {
            counted_by_source
                .iter()
                .all(|reason| m.source_malformed.with_label_values(&[reason]).get() > 0)
                && q.iter().any(|q| q.price < 0.0)
        })
        .await;
    // What the source delivers is either a valid quote or one validation drops by reason
    // `price` (the negative price the fake sent): nothing unusable gets through.
    let now = Timestamp::now();
    let mut rejected = 0;
    for q in quotes {
        assert!(["AAPL", "MSFT"].contains(&q.ticker.as_str()), "{q:?}");
        if let Err(e) = validate(q.clone(), now) {
            assert_eq!(e.reason(), "price", "{q:?}: {e}");
            rejected += 1;
        }
    }
    assert!(rejected > 0);
    assert_eq!(
        server.connections(),
        1,
        "bad input never costs the connection"
    );
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_high_rate_feed_arrives_in_batches() {
    let server = PolygonServer::start(Script::at_rate(50_000.0), 0)
        .await
        .unwrap();
    let tickers: Vec<String> = (0..100)
        .map(|i| {
            let a = (b'A' + (i / 26) as u8) as char;
            let b = (b'A' + (i % 26) as u8) as char;
            format!("X{a}{b}")
        })
        .collect();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(&tickers));
    let started = std::time::Instant::now();
    let quotes = run.until("20 000 quotes", |q, _| q.len() >= 20_000).await;
    let took = started.elapsed();
    assert_eq!(tickers_in(&quotes).len(), 100);
    // Timing is reported, never asserted.
    println!(
        "polygon: {} quotes in {took:?} ({:.0}/s) from a 50 000 events/s feed",
        quotes.len(),
        quotes.len() as f64 / took.as_secs_f64()
    );
    run.stop().await.unwrap();
}

/// The whole worker: the key from the environment, the source, validation, a real Redis.
mod worker {
    use std::collections::HashMap;

    use futures_util::StreamExt;
    use quotestream_api::WorkerConfig;
    use quotestream_api::contract::env::POLYGON_API_KEY;
    use quotestream_testkit::RedisServer;
    use quotestream_worker::assembly::{RunOptions, Worker};
    use serde_json::{Value, json};
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn config(url: &str, redis_url: &str) -> WorkerConfig {
        serde_json::from_value(json!({
            "namespace": "t", "stream": "live", "shard": 0, "shards": 1,
            "tickers": ["AAPL", "MSFT"], "interval": "1s", "requestsPerHour": 100.0,
            "source": {"type": "polygon", "idleTimeout": "5s",
                       "polygon": {"apiKeySecretRef": {"name": "massive", "key": "apiKey"}, "url": url}},
            "sinks": {"redis": {"url": redis_url}}
        }))
        .unwrap()
    }

    fn options(key: Option<&str>) -> RunOptions {
        RunOptions {
            env: key
                .map(|k| HashMap::from([(POLYGON_API_KEY.to_owned(), k.to_owned())]))
                .unwrap_or_default(),
            ..RunOptions::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_validated_quotes_and_counts_what_validation_drops() {
        let redis = RedisServer::start().unwrap();
        let script = Script {
            malformed_every: Some(5),
            ..Script::at_rate(1000.0)
        };
        let account = Account {
            api_key: Some(KEY.into()),
            ..Account::default()
        };
        let server = PolygonServer::start_with(script, account, 0).await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("quotes.realtime").await.unwrap();
        let mut messages = pubsub.on_message();

        let worker = Worker::new(
            config(&server.url(), &redis.url()),
            options(Some(KEY)),
            None,
        )
        .unwrap();
        let metrics = worker.metrics().clone();
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker.run(stop.clone()));
        let mut published = Vec::new();
        while published.len() < 200 {
            let msg = tokio::time::timeout(support::PATIENCE, messages.next())
                .await
                .expect("quotes keep coming")
                .unwrap();
            published.push(serde_json::from_slice::<Value>(msg.get_payload_bytes()).unwrap());
        }
        for m in &published {
            assert_eq!(m["source"], "polygon", "{m}");
            assert!(m["price"].as_f64().unwrap() > 0.0, "{m}");
            assert!(
                ["AAPL", "MSFT"].contains(&m["ticker"].as_str().unwrap()),
                "{m}"
            );
        }
        eventually("the negative price counted by validation", || {
            metrics
                .validation_errors
                .with_label_values(&["price"])
                .get()
                > 0
        })
        .await;
        stop.cancel();
        tokio::time::timeout(support::PATIENCE, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_missing_key_is_a_configuration_error_naming_the_secret_reference() {
        let error = Worker::new(
            config("wss://socket.massive.com/stocks", "redis://127.0.0.1:1"),
            options(None),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("POLYGON_API_KEY")
                && error.contains("spec.source.polygon.apiKeySecretRef"),
            "{error}"
        );
    }
}

mod fuzz {
    use proptest::prelude::*;
    use quotestream_worker::sources::polygon::Decoder;
    use quotestream_worker::sources::websocket::{Decoded, Frame};
    use serde_json::value::RawValue;

    use super::support::fuzz::{cases, corpus, mutated};

    /// Quotes, bad parts, control events and state-only updates a frame produced; and how
    /// many it should have: one per event of an array, one for anything else.
    fn accounted(bytes: &[u8]) -> (usize, usize) {
        let mut out = Decoded::default();
        let mut decoder = Decoder::new("the key");
        let (held, expected) = match std::str::from_utf8(bytes) {
            Ok(text) => (
                decoder.decode(Frame::Text(text), &mut out),
                serde_json::from_str::<Vec<&RawValue>>(text).map_or(1, |items| items.len()),
            ),
            Err(_) => (decoder.decode(Frame::Binary(bytes), &mut out), 1),
        };
        (
            out.quotes.len() + out.malformed.len() + out.events.len() + held,
            expected,
        )
    }

    #[test]
    fn every_corpus_event_is_accounted_for_once() {
        for (name, frame) in corpus("polygon") {
            let (got, expected) = accounted(&frame);
            assert!(expected >= 1, "{name} holds no event");
            assert_eq!(got, expected, "{name}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]
        #[test]
        fn mutated_frames_never_panic_and_are_accounted_for(frame in mutated("polygon")) {
            let (got, expected) = accounted(&frame);
            prop_assert_eq!(got, expected);
        }
    }
}
