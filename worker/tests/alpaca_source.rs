#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The alpaca source against a local server speaking Alpaca's market data v2 protocol (login,
//! subscriptions acknowledged with the whole set, batched trades/quotes/daily bars, error codes),
//! including its failure scripts. What every streaming source does (login and subscription,
//! reassignment, reconnects, silence, malformed input, the whole worker into Redis) is checked
//! for Alpaca too by the shared suite, `streaming_sources.rs`; this file holds what only Alpaca
//! does.

mod support;

use std::time::Duration;

use quotestream_api::contract::env::ALPACA_KEY_ID;
use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::alpaca::{AlpacaOptions, AlpacaServer, KEY_ID, SECRET_KEY};
use quotestream_worker::sources::SourceError;
use quotestream_worker::sources::alpaca::Alpaca;

use support::{StreamRun, quick_settings, set};

/// The source as the worker builds it: from `spec.source.alpaca` (URL pointing at the fake) and
/// the credentials in the environment.
fn protocol_with(server: &AlpacaServer, secret_key: &str) -> Alpaca {
    support::alpaca(server.url("iex"), secret_key)
}

fn protocol(server: &AlpacaServer) -> Alpaca {
    protocol_with(server, SECRET_KEY)
}

async fn start(options: AlpacaOptions) -> AlpacaServer {
    AlpacaServer::start(options, 0).await.unwrap()
}

/// Alpaca keeps counting a connection that vanished for a while (alpacahq/
/// alpaca-trade-api-csharp#558): the reconnect meets 406 from our own ghost and must retry, not
/// stop the worker.
#[tokio::test]
async fn a_reconnect_that_meets_its_own_lost_connection_retries_until_alpaca_lets_go() {
    let options = AlpacaOptions {
        silent_linger: Duration::from_millis(2500),
        ..AlpacaOptions::new(Script {
            silent_after: Some(10),
            ..Script::at_rate(1000.0)
        })
    };
    let server = start(options).await;
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
    run.until("quotes after the ghost is gone", |q, m| {
        q.len() > 20
            && m.source_vendor_errors.with_label_values(&["406"]).get() >= 1
            && m.source_connected.get() == 1
    })
    .await;
    assert!(server.connections() >= 3, "silent, refused, accepted");
    assert!(!run.task.is_finished(), "the source keeps running");
    run.stop().await.unwrap();
}

#[tokio::test]
async fn refused_credentials_stop_the_source_with_the_secret_to_fix() {
    for (options, secret) in [
        (
            AlpacaOptions::new(Script {
                reject_login: true,
                ..Script::at_rate(100.0)
            }),
            SECRET_KEY,
        ),
        (AlpacaOptions::new(Script::at_rate(100.0)), "wrong"),
    ] {
        let server = start(options).await;
        let run = StreamRun::start(
            protocol_with(&server, secret),
            quick_settings(),
            set(["AAPL"]),
        );
        let metrics = run.metrics.clone();
        let Err(SourceError::Config(message)) = run.ended().await else {
            panic!("a refused login must end the source with a configuration error")
        };
        assert!(
            message.contains("402")
                && message.contains("Secret alpaca-keys")
                && message.contains("credentialsSecretRef"),
            "{message}"
        );
        assert_eq!(server.connections(), 1, "no retry loop");
        assert_eq!(
            metrics
                .source_vendor_errors
                .with_label_values(&["402"])
                .get(),
            1
        );
    }
}

#[tokio::test]
async fn another_client_on_the_same_account_stops_the_source_naming_max_connections() {
    let server = start(AlpacaOptions::new(Script::at_rate(1000.0))).await;
    let mut first = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
    first
        .until("the first client streams", |q, _| !q.is_empty())
        .await;
    let second = StreamRun::start(protocol(&server), quick_settings(), set(["MSFT"]));
    let Err(SourceError::Config(message)) = second.ended().await else {
        panic!("406 on a first connection must end the source")
    };
    assert!(
        message.contains("406")
            && message.contains("another client uses these credentials")
            && message.contains("maxConnections"),
        "{message}"
    );
    first
        .until("the first client is undisturbed", |q, _| q.len() > 10)
        .await;
    first.stop().await.unwrap();
}

#[tokio::test]
async fn the_symbol_limit_stops_the_source_naming_the_feed() {
    let options = AlpacaOptions {
        symbol_limit: Some(2),
        ..AlpacaOptions::new(Script::at_rate(100.0))
    };
    let server = start(options).await;
    let run = StreamRun::start(
        protocol(&server),
        quick_settings(),
        set(["AAPL", "MSFT", "NVDA"]),
    );
    let Err(SourceError::Config(message)) = run.ended().await else {
        panic!("405 must end the source")
    };
    assert!(
        message.contains("405") && message.contains("feed: sip") && message.contains("30 symbols"),
        "{message}"
    );
}

#[tokio::test]
async fn transient_vendor_errors_reconnect_and_a_bad_request_is_only_counted() {
    for code in [407u16, 500] {
        let options = AlpacaOptions {
            error_after: Some((20, code)),
            ..AlpacaOptions::new(Script::at_rate(2000.0))
        };
        let server = start(options).await;
        let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
        let label = code.to_string();
        run.until("quotes after the reconnect", |q, m| {
            q.len() > 40
                && m.source_vendor_errors.with_label_values(&[&label]).get() == 1
                && m.source_reconnects
                    .with_label_values(&["vendor_error"])
                    .get()
                    == 1
        })
        .await;
        assert_eq!(server.connections(), 2, "{code}");
        run.stop().await.unwrap();
    }
    let options = AlpacaOptions {
        error_after: Some((20, 400)),
        ..AlpacaOptions::new(Script::at_rate(2000.0))
    };
    let server = start(options).await;
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
    run.until("quotes after the error", |q, m| {
        q.len() > 40 && m.source_vendor_errors.with_label_values(&["400"]).get() == 1
    })
    .await;
    assert_eq!(server.connections(), 1, "400 costs no connection");
    run.stop().await.unwrap();
}

/// The whole worker as the operator configures it: `spec.source.alpaca` in the worker
/// configuration, the credentials in the environment, validation, and a real Redis.
mod whole_worker {
    use quotestream_api::WorkerConfig;

    use quotestream_worker::assembly::{RunOptions, Worker, WorkerError};
    use serde_json::json;

    use super::*;

    fn config(url: &str, redis_url: &str) -> WorkerConfig {
        serde_json::from_value(json!({
            "namespace": "t", "stream": "alpaca", "shard": 0, "shards": 1,
            "tickers": ["AAPL", "MSFT"], "interval": "1s", "requestsPerHour": 100.0,
            "source": {"type": "alpaca", "alpaca": {
                "credentialsSecretRef": {"name": "alpaca-keys"}, "url": url}},
            "sinks": {"redis": {"url": redis_url}}
        }))
        .unwrap()
    }

    fn options(env: &[(&str, &str)]) -> RunOptions {
        RunOptions {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..RunOptions::default()
        }
    }

    #[test]
    fn a_worker_without_credentials_names_the_secret() {
        let e = Worker::new(
            config("ws://127.0.0.1:1/v2/iex", "redis://127.0.0.1:1"),
            options(&[(ALPACA_KEY_ID, KEY_ID)]),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, WorkerError::Source(_)), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("APCA_API_SECRET_KEY") && e.contains("Secret alpaca-keys"),
            "{e}"
        );
    }
}

mod fuzz {
    use proptest::prelude::*;
    use quotestream_api::crd::AlpacaFeed;
    use quotestream_worker::sources::alpaca::{Decoder, ErrorContext, SecretNames};
    use quotestream_worker::sources::websocket::{Decoded, Frame};

    use super::support::fuzz::{cases, corpus, mutated};

    fn decoder() -> Decoder {
        Decoder::new(ErrorContext {
            feed: AlpacaFeed::Iex,
            secret: SecretNames {
                name: "alpaca".into(),
                key_id_key: "APCA_API_KEY_ID".into(),
                secret_key_key: "APCA_API_SECRET_KEY".into(),
            },
        })
    }

    /// Quotes, events, named reasons and messages only remembered: every message shows up.
    fn accounted(decoder: &mut Decoder, bytes: &[u8]) -> usize {
        let mut out = Decoded::default();
        let held = match std::str::from_utf8(bytes) {
            Ok(text) => decoder.decode(Frame::Text(text), &mut out),
            Err(_) => decoder.decode(Frame::Binary(bytes), &mut out),
        };
        out.quotes.len() + out.malformed.len() + out.events.len() + held
    }

    fn items(frame: &[u8]) -> usize {
        serde_json::from_slice::<Vec<serde_json::Value>>(frame)
            .map(|v| v.len())
            .unwrap_or(1)
    }

    #[test]
    fn every_message_of_every_corpus_frame_is_accounted_for() {
        let mut d = decoder();
        for (name, frame) in corpus("alpaca") {
            assert_eq!(accounted(&mut d, &frame), items(&frame), "{name}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]
        #[test]
        fn mutated_frames_never_panic_and_are_accounted_for(frame in mutated("alpaca")) {
            prop_assert!(accounted(&mut decoder(), &frame) >= 1);
        }
    }
}
