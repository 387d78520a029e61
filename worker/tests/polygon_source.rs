#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The polygon source against a local server speaking Massive's (formerly Polygon.io) stocks
//! WebSocket protocol (status greeting, auth, T/Q/AM channels, batched JSON arrays), including
//! its failure scripts and account limits. What every streaming source does is checked for
//! Massive too by the shared suite, `streaming_sources.rs`; this file holds what only Massive
//! does.

mod support;

use std::collections::BTreeSet;

use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::polygon::PolygonServer;
use quotestream_worker::quote::RawQuote;
use quotestream_worker::sources::SourceError;
use quotestream_worker::sources::polygon::{Polygon, PolygonConfig};

use support::{StreamRun, quick_settings, set};

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

    use quotestream_api::WorkerConfig;
    use quotestream_api::contract::env::POLYGON_API_KEY;

    use quotestream_worker::assembly::{RunOptions, Worker};
    use serde_json::json;

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
