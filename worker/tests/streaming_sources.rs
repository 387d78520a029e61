#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What every streaming source does, whatever the vendor (docs/streaming.md, "What every
//! streaming source does"): one suite, run against each vendor's local server
//! (`tests/testkit/src/stream/`) — `alpaca`, `polygon`, `yahoo_stream` below. A [`Vendor`] says
//! only what differs: how to start its server, the frames it expects, its bad input. What only
//! one vendor does (error codes, account limits, fuzzing its decoder) is in
//! `<vendor>_source.rs`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::StreamExt;
use jiff::Timestamp;
use quotestream_api::WorkerConfig;
use quotestream_testkit::RedisServer;
use quotestream_testkit::stream::{Journal, Script};
use quotestream_worker::assembly::{RunOptions, Worker};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::quote::{RawQuote, validate};
use quotestream_worker::sources::websocket::Protocol;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use support::{StreamRun, eventually, quick_settings, set};

/// What differs between the streaming vendors, for the shared suite.
trait Vendor {
    type Server;
    type Protocol: Protocol + std::fmt::Debug;
    /// The quotes' `source` (contracts 001 and 004).
    const SOURCE: &'static str;
    /// Whether the server's bad input includes prices ≤ 0 (passed on for validation to drop).
    const SENDS_BAD_PRICES: bool;

    async fn start(script: Script) -> Self::Server;
    /// The source as the worker builds it, pointed at the server.
    fn protocol(server: &Self::Server) -> Self::Protocol;
    fn journal(server: &Self::Server) -> &Journal;
    fn connections(server: &Self::Server) -> usize;
    /// The frames a connection begins with: the login (if any), then one subscription.
    fn first_frames(tickers: &[&str]) -> Vec<String>;
    fn subscribe(tickers: &[&str]) -> String;
    fn unsubscribe(tickers: &[&str]) -> String;
    /// What else holds for the quotes of a healthy stream, beyond what holds for every vendor
    /// (valid, of this source, every ticker with a book); false: not yet.
    fn check_stream(quotes: &[RawQuote]) -> bool;
    /// Every kind of bad input the server sends has been seen (counted or delivered).
    fn every_bad_kind_seen(quotes: &[RawQuote], metrics: &Metrics) -> bool;
    /// `spec.source` of a worker configuration using the server, and the environment the
    /// operator would give the worker.
    fn worker_source(server: &Self::Server) -> (Value, HashMap<String, String>);
}

/// The vendor's server running `script`, and the source streaming `tickers` from it.
async fn stream<V: Vendor>(script: Script, tickers: &[&str]) -> (V::Server, StreamRun) {
    let server = V::start(script).await;
    let run = StreamRun::start(V::protocol(&server), quick_settings(), set(tickers));
    (server, run)
}

fn tickers_in(quotes: &[RawQuote]) -> BTreeSet<String> {
    quotes.iter().map(|q| q.ticker.clone()).collect()
}

fn texts(journal: &Journal, connection: usize) -> Vec<String> {
    journal
        .frames()
        .into_iter()
        .filter(|f| f.connection == connection)
        .map(|f| f.text)
        .collect()
}

/// Every ticker delivered has had a quote with a book, and the vendor's own checks hold.
fn healthy<V: Vendor>(quotes: &[RawQuote]) -> bool {
    let with_book: Vec<RawQuote> = quotes.iter().filter(|q| q.bid.is_some()).cloned().collect();
    tickers_in(&with_book) == tickers_in(quotes) && V::check_stream(quotes)
}

fn starts_with(texts: &[String], expected: &[String]) -> bool {
    texts.len() >= expected.len() && texts[..expected.len()] == *expected
}

async fn streams_every_subscribed_ticker<V: Vendor>() {
    let tickers = ["AAPL", "BRK.B", "MSFT"];
    let (server, mut run) = stream::<V>(Script::at_rate(2000.0), &tickers).await;
    let quotes = run
        .until("quotes for all three tickers", |q, _| {
            tickers_in(q).len() == 3 && healthy::<V>(q)
        })
        .await;
    assert_eq!(
        tickers_in(&quotes),
        tickers.map(String::from).into(),
        "the contract's spelling"
    );
    assert!(
        starts_with(&texts(V::journal(&server), 0), &V::first_frames(&tickers)),
        "the login comes first, then one subscription in the vendor's spelling: {:?}",
        texts(V::journal(&server), 0)
    );
    let now = Timestamp::now();
    for q in &quotes {
        let valid = validate(q.clone(), now).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        assert_eq!(valid.source, V::SOURCE);
        assert!(valid.volume > 0, "{q:?}");
    }
    assert_eq!(run.metrics.source_connected.get(), 1);
    assert_eq!(run.metrics.source_subscribed.get(), 3);
    run.stop().await.unwrap();
}

async fn a_new_assignment_changes_the_subscription_on_the_same_connection<V: Vendor>() {
    let (server, mut run) = stream::<V>(Script::at_rate(2000.0), &["AAPL", "MSFT"]).await;
    run.until("first quotes", |q, _| tickers_in(q).len() == 2)
        .await;
    run.tickers.send(set(["MSFT", "NVDA"])).unwrap();
    let (unsubscribe, subscribe) = (V::unsubscribe(&["AAPL"]), V::subscribe(&["NVDA"]));
    eventually("the unsubscribe and subscribe frames", || {
        let texts = texts(V::journal(&server), 0);
        texts.contains(&unsubscribe) && texts.contains(&subscribe)
    })
    .await;
    run.until("NVDA quotes", |q, _| tickers_in(q).contains("NVDA"))
        .await;
    // AAPL ticks still in flight are dropped by the source itself, not delivered.
    let later = run.until("more quotes", |q, _| q.len() >= 50).await;
    assert!(
        !tickers_in(&later).contains("AAPL"),
        "a removed ticker was delivered"
    );
    assert_eq!(V::connections(&server), 1, "the change must not reconnect");
    let logins = V::first_frames(&[]);
    let texts = texts(V::journal(&server), 0);
    for login in &logins {
        assert_eq!(texts.iter().filter(|t| *t == login).count(), 1, "{login}");
    }
    assert_eq!(run.metrics.source_subscribed.get(), 2);
    run.stop().await.unwrap();
}

/// A server that closes mid-stream: the source logs in again and resubscribes.
async fn reconnects_after_a_close<V: Vendor>() {
    let script = Script {
        close_after: Some(60),
        ..Script::at_rate(2000.0)
    };
    let (server, mut run) = stream::<V>(script, &["AAPL", "MSFT"]).await;
    run.until("quotes after the reconnect", |q, m| {
        q.len() > 120
            && m.source_reconnects.with_label_values(&["closed"]).get() == 1
            && healthy::<V>(q)
    })
    .await;
    assert_eq!(V::connections(&server), 2);
    assert!(
        starts_with(
            &texts(V::journal(&server), 1),
            &V::first_frames(&["AAPL", "MSFT"])
        ),
        "a new connection logs in and subscribes again: {:?}",
        texts(V::journal(&server), 1)
    );
    run.stop().await.unwrap();
}

async fn a_silent_server_is_detected_and_replaced<V: Vendor>() {
    let script = Script {
        silent_after: Some(10),
        ..Script::at_rate(1000.0)
    };
    let (server, mut run) = stream::<V>(script, &["AAPL"]).await;
    run.until("quotes from a second connection", |q, m| {
        q.len() > 20 && m.source_reconnects.with_label_values(&["silent"]).get() == 1
    })
    .await;
    assert_eq!(V::connections(&server), 2);
    run.stop().await.unwrap();
}

async fn malformed_input_is_counted_by_reason_and_never_published<V: Vendor>() {
    let script = Script {
        malformed_every: Some(3),
        ..Script::at_rate(2000.0)
    };
    let (server, mut run) = stream::<V>(script, &["AAPL", "MSFT"]).await;
    let quotes = run
        .until("every kind of bad input", V::every_bad_kind_seen)
        .await;
    // What the source delivers is a valid quote or one validation drops for its price (the
    // vendor sent a price ≤ 0): nothing else unusable gets through.
    let now = Timestamp::now();
    for q in &quotes {
        assert!(["AAPL", "MSFT"].contains(&q.ticker.as_str()), "{q:?}");
        if let Err(e) = validate(q.clone(), now) {
            assert!(V::SENDS_BAD_PRICES, "{q:?}: {e}");
            assert_eq!(e.reason(), "price", "{q:?}: {e}");
        }
    }
    assert_eq!(
        V::connections(&server),
        1,
        "bad input never costs the connection"
    );
    run.stop().await.unwrap();
}

/// The whole worker as the operator configures it: the source settings in the worker
/// configuration, secrets in the environment, validation, and a real Redis.
async fn the_whole_worker_publishes_only_valid_quotes_to_redis<V: Vendor>() {
    let redis = RedisServer::start().unwrap();
    let script = Script {
        malformed_every: Some(4),
        ..Script::at_rate(2000.0)
    };
    let server = V::start(script).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("quotes.realtime").await.unwrap();
    let mut messages = pubsub.on_message();
    let (source, env) = V::worker_source(&server);
    let config: WorkerConfig = serde_json::from_value(json!({
        "namespace": "t", "stream": "live", "shard": 0, "shards": 1,
        "tickers": ["AAPL", "MSFT"], "interval": "1s", "requestsPerHour": 100.0,
        "source": source,
        "sinks": {"redis": {"url": redis.url()}}
    }))
    .unwrap();
    let options = RunOptions {
        env,
        ..RunOptions::default()
    };
    let worker = Worker::new(config, options, None).unwrap();
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
        assert_eq!(m["source"], V::SOURCE, "{m}");
        assert!(m["price"].as_f64().unwrap() > 0.0, "published: {m}");
        assert!(
            ["AAPL", "MSFT"].contains(&m["ticker"].as_str().unwrap()),
            "{m}"
        );
    }
    if V::SENDS_BAD_PRICES {
        eventually("the bad prices counted by validation", || {
            metrics
                .validation_errors
                .with_label_values(&["price"])
                .get()
                > 0
        })
        .await;
    }
    eventually("bad input counted by the source", || {
        metrics
            .source_malformed
            .with_label_values(&["bad_json"])
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

/// The suite, for one vendor.
macro_rules! suite {
    ($vendor:ty) => {
        #[tokio::test]
        async fn streams_every_subscribed_ticker() {
            super::streams_every_subscribed_ticker::<$vendor>().await;
        }

        #[tokio::test]
        async fn a_new_assignment_changes_the_subscription_on_the_same_connection() {
            super::a_new_assignment_changes_the_subscription_on_the_same_connection::<$vendor>()
                .await;
        }

        #[tokio::test]
        async fn a_server_that_closes_mid_stream_is_logged_into_again_and_resubscribed() {
            super::reconnects_after_a_close::<$vendor>().await;
        }

        #[tokio::test]
        async fn a_silent_server_is_detected_and_replaced() {
            super::a_silent_server_is_detected_and_replaced::<$vendor>().await;
        }

        #[tokio::test]
        async fn malformed_input_is_counted_by_reason_and_never_published() {
            super::malformed_input_is_counted_by_reason_and_never_published::<$vendor>().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_whole_worker_publishes_only_valid_quotes_to_redis() {
            super::the_whole_worker_publishes_only_valid_quotes_to_redis::<$vendor>().await;
        }
    };
}

mod alpaca {
    use quotestream_api::contract::env::{ALPACA_KEY_ID, ALPACA_SECRET_KEY};
    use quotestream_testkit::stream::alpaca::{
        AlpacaOptions, AlpacaServer, CountedBy, KEY_ID, MALFORMED, SECRET_KEY,
    };
    use quotestream_worker::sources::alpaca::Alpaca;

    use super::*;

    struct Vendor;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            (ALPACA_KEY_ID.to_owned(), KEY_ID.to_owned()),
            (ALPACA_SECRET_KEY.to_owned(), SECRET_KEY.to_owned()),
        ])
    }

    /// `{"action":..,"trades":[..],"quotes":[..],"dailyBars":[..]}`, in Alpaca's order.
    fn channels(action: &str, tickers: &[&str]) -> String {
        let list = serde_json::to_string(tickers).unwrap();
        format!(r#"{{"action":"{action}","trades":{list},"quotes":{list},"dailyBars":{list}}}"#)
    }

    impl super::Vendor for Vendor {
        type Server = AlpacaServer;
        type Protocol = Alpaca;
        const SOURCE: &'static str = "alpaca";
        const SENDS_BAD_PRICES: bool = true;

        async fn start(script: Script) -> AlpacaServer {
            AlpacaServer::start(AlpacaOptions::new(script), 0)
                .await
                .unwrap()
        }

        fn protocol(server: &AlpacaServer) -> Alpaca {
            support::alpaca(server.url("iex"), SECRET_KEY)
        }

        fn journal(server: &AlpacaServer) -> &Journal {
            server.journal()
        }

        fn connections(server: &AlpacaServer) -> usize {
            server.connections()
        }

        fn first_frames(tickers: &[&str]) -> Vec<String> {
            let auth = format!(r#"{{"action":"auth","key":"{KEY_ID}","secret":"{SECRET_KEY}"}}"#);
            let mut frames = vec![auth];
            frames.extend((!tickers.is_empty()).then(|| Self::subscribe(tickers)));
            frames
        }

        fn subscribe(tickers: &[&str]) -> String {
            channels("subscribe", tickers)
        }

        fn unsubscribe(tickers: &[&str]) -> String {
            channels("unsubscribe", tickers)
        }

        /// The day volume never goes down (across reconnects too: the day's trades are kept).
        fn check_stream(quotes: &[RawQuote]) -> bool {
            let mut last: BTreeMap<&str, f64> = BTreeMap::new();
            for q in quotes {
                let previous = last.insert(&q.ticker, q.volume).unwrap_or(0.0);
                assert!(
                    q.volume >= previous,
                    "{}: volume fell from {previous} to {}",
                    q.ticker,
                    q.volume
                );
            }
            true
        }

        fn every_bad_kind_seen(quotes: &[RawQuote], metrics: &Metrics) -> bool {
            let now = Timestamp::now();
            MALFORMED.iter().all(|(reason, by)| match by {
                CountedBy::Source => {
                    metrics.source_malformed.with_label_values(&[reason]).get() > 0
                }
                CountedBy::Validation => quotes
                    .iter()
                    .any(|q| validate(q.clone(), now).is_err_and(|e| e.reason() == *reason)),
            })
        }

        fn worker_source(server: &AlpacaServer) -> (Value, HashMap<String, String>) {
            let source = json!({"type": "alpaca", "alpaca": {
                "credentialsSecretRef": {"name": "alpaca-keys"}, "url": server.url("iex")}});
            (source, env())
        }
    }

    suite!(Vendor);
}

mod polygon {
    use quotestream_api::contract::env::POLYGON_API_KEY;
    use quotestream_testkit::stream::polygon::{Account, MALFORMED, PolygonServer};
    use quotestream_worker::sources::polygon::{CHANNELS, Polygon, PolygonConfig};

    use super::*;

    const KEY: &str = "test-key";

    struct Vendor;

    fn params(tickers: &[&str]) -> String {
        tickers
            .iter()
            .flat_map(|t| CHANNELS.map(|c| format!("{c}.{t}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    impl super::Vendor for Vendor {
        type Server = PolygonServer;
        type Protocol = Polygon;
        const SOURCE: &'static str = "polygon";
        const SENDS_BAD_PRICES: bool = true;

        /// A server that accepts only the test's key.
        async fn start(script: Script) -> PolygonServer {
            let account = Account {
                api_key: Some(KEY.into()),
                ..Account::default()
            };
            PolygonServer::start_with(script, account, 0).await.unwrap()
        }

        fn protocol(server: &PolygonServer) -> Polygon {
            Polygon::new(PolygonConfig {
                url: server.url(),
                api_key: KEY.into(),
                key_source:
                    "key \"apiKey\" of Secret \"massive\" (spec.source.polygon.apiKeySecretRef)"
                        .into(),
            })
        }

        fn journal(server: &PolygonServer) -> &Journal {
            server.journal()
        }

        fn connections(server: &PolygonServer) -> usize {
            server.connections()
        }

        fn first_frames(tickers: &[&str]) -> Vec<String> {
            let mut frames = vec![json!({"action": "auth", "params": KEY}).to_string()];
            frames.extend((!tickers.is_empty()).then(|| Self::subscribe(tickers)));
            frames
        }

        fn subscribe(tickers: &[&str]) -> String {
            json!({"action": "subscribe", "params": params(tickers)}).to_string()
        }

        fn unsubscribe(tickers: &[&str]) -> String {
            json!({"action": "unsubscribe", "params": params(tickers)}).to_string()
        }

        /// The minute aggregate's day open reaches the quotes.
        fn check_stream(quotes: &[RawQuote]) -> bool {
            quotes.iter().any(|q| q.open.is_some())
        }

        /// Every reason counted by the source, and a negative price delivered for validation.
        fn every_bad_kind_seen(quotes: &[RawQuote], metrics: &Metrics) -> bool {
            MALFORMED
                .iter()
                .filter(|r| **r != "price")
                .all(|reason| metrics.source_malformed.with_label_values(&[reason]).get() > 0)
                && quotes.iter().any(|q| q.price < 0.0)
        }

        fn worker_source(server: &PolygonServer) -> (Value, HashMap<String, String>) {
            let source = json!({"type": "polygon", "idleTimeout": "5s", "polygon": {
                "apiKeySecretRef": {"name": "massive", "key": "apiKey"}, "url": server.url()}});
            (
                source,
                HashMap::from([(POLYGON_API_KEY.to_owned(), KEY.to_owned())]),
            )
        }
    }

    suite!(Vendor);
}

mod yahoo_stream {
    use quotestream_testkit::stream::yahoo::{MALFORMED, YahooStreamServer};
    use quotestream_worker::sources::yahoo_stream::{YahooStream, YahooStreamConfig};

    use super::*;

    struct Vendor;

    /// Yahoo spells share classes with a dash.
    fn yahoo_spelling(tickers: &[&str]) -> Vec<String> {
        tickers.iter().map(|t| t.replace('.', "-")).collect()
    }

    impl super::Vendor for Vendor {
        type Server = YahooStreamServer;
        type Protocol = YahooStream;
        const SOURCE: &'static str = "yfinance";
        const SENDS_BAD_PRICES: bool = false;

        async fn start(script: Script) -> YahooStreamServer {
            YahooStreamServer::start(script, 0).await.unwrap()
        }

        fn protocol(server: &YahooStreamServer) -> YahooStream {
            YahooStream::new(YahooStreamConfig { url: server.url() })
        }

        fn journal(server: &YahooStreamServer) -> &Journal {
            server.journal()
        }

        fn connections(server: &YahooStreamServer) -> usize {
            server.connections()
        }

        /// No login: the subscription is the first frame.
        fn first_frames(tickers: &[&str]) -> Vec<String> {
            (!tickers.is_empty())
                .then(|| Self::subscribe(tickers))
                .into_iter()
                .collect()
        }

        fn subscribe(tickers: &[&str]) -> String {
            json!({"subscribe": yahoo_spelling(tickers)}).to_string()
        }

        fn unsubscribe(tickers: &[&str]) -> String {
            json!({"unsubscribe": yahoo_spelling(tickers)}).to_string()
        }

        /// Each tick carries all it has: nothing to add.
        fn check_stream(_: &[RawQuote]) -> bool {
            true
        }

        fn every_bad_kind_seen(_: &[RawQuote], metrics: &Metrics) -> bool {
            MALFORMED
                .iter()
                .all(|(reason, _)| metrics.source_malformed.with_label_values(&[reason]).get() > 0)
        }

        fn worker_source(server: &YahooStreamServer) -> (Value, HashMap<String, String>) {
            let source = json!({"type": "yahoo-stream", "yahooStream": {"url": server.url()}});
            (source, HashMap::new())
        }
    }

    suite!(Vendor);
}
