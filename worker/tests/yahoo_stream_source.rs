#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The yahoo-stream source against a local server speaking Yahoo's live-stream protocol
//! (JSON subscribe frames, base64 protobuf PricingData), including its failure scripts.

mod support;

use std::collections::BTreeSet;

use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::yahoo::{MALFORMED, YahooStreamServer};
use quotestream_worker::sources::yahoo_stream::{YahooStream, YahooStreamConfig};

use support::{StreamRun, eventually, quick_settings, set};

fn protocol(server: &YahooStreamServer) -> YahooStream {
    YahooStream::new(YahooStreamConfig { url: server.url() })
}

fn tickers_in(quotes: &[quotestream_worker::quote::RawQuote]) -> BTreeSet<String> {
    quotes.iter().map(|q| q.ticker.clone()).collect()
}

#[tokio::test]
async fn streams_every_subscribed_ticker_in_canonical_spelling() {
    let server = YahooStreamServer::start(Script::at_rate(2000.0), 0)
        .await
        .unwrap();
    let mut run = StreamRun::start(
        protocol(&server),
        quick_settings(),
        set(["AAPL", "BRK.B", "MSFT"]),
    );
    let quotes = run
        .until("quotes for all three tickers", |q, _| {
            tickers_in(q).len() == 3
        })
        .await;
    assert_eq!(
        tickers_in(&quotes),
        ["AAPL", "BRK.B", "MSFT"].map(String::from).into()
    );
    let first = server.journal().frames()[0].clone();
    assert_eq!(
        first.text, r#"{"subscribe":["AAPL","BRK-B","MSFT"]}"#,
        "Yahoo spelling on the wire"
    );
    let q = &quotes[0];
    assert!(q.price > 0.0 && q.bid.is_some() && q.volume > 0.0 && q.source == "yfinance");
    assert_eq!(run.metrics.source_connected.get(), 1);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_new_assignment_changes_the_subscription_on_the_same_connection() {
    let server = YahooStreamServer::start(Script::at_rate(2000.0), 0)
        .await
        .unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL", "MSFT"]));
    run.until("first quotes", |q, _| tickers_in(q).len() == 2)
        .await;
    run.tickers.send(set(["MSFT", "NVDA"])).unwrap();
    let journal = server.journal().clone();
    eventually("the unsubscribe and subscribe frames", || {
        let texts: Vec<String> = journal.frames().into_iter().map(|f| f.text).collect();
        texts.contains(&r#"{"unsubscribe":["AAPL"]}"#.to_owned())
            && texts.contains(&r#"{"subscribe":["NVDA"]}"#.to_owned())
    })
    .await;
    // After the change only the new set arrives (AAPL ticks still in flight are dropped by
    // the source itself, not published).
    let after = run
        .until("NVDA quotes", |q, _| tickers_in(q).contains("NVDA"))
        .await;
    let later = run.until("more quotes", |q, _| q.len() >= 50).await;
    assert!(
        !tickers_in(&later).contains("AAPL"),
        "a removed ticker was delivered: {:?}",
        tickers_in(&after)
    );
    assert_eq!(server.connections(), 1, "the change must not reconnect");
    assert_eq!(run.metrics.source_subscribed.get(), 2);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_that_closes_mid_stream_is_reconnected_and_resubscribed() {
    let script = Script {
        close_after: Some(20),
        ..Script::at_rate(2000.0)
    };
    let server = YahooStreamServer::start(script, 0).await.unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL", "MSFT"]));
    run.until("quotes after the reconnect", |q, m| {
        q.len() > 40 && m.source_reconnects.with_label_values(&["closed"]).get() == 1
    })
    .await;
    assert_eq!(server.connections(), 2);
    let resubscribed = server
        .journal()
        .frames()
        .into_iter()
        .find(|f| f.connection == 1)
        .unwrap();
    assert_eq!(resubscribed.text, r#"{"subscribe":["AAPL","MSFT"]}"#);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_server_is_detected_and_replaced() {
    let script = Script {
        silent_after: Some(10),
        ..Script::at_rate(1000.0)
    };
    let server = YahooStreamServer::start(script, 0).await.unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL"]));
    run.until("quotes from a second connection", |q, m| {
        q.len() > 20 && m.source_reconnects.with_label_values(&["silent"]).get() == 1
    })
    .await;
    assert_eq!(server.connections(), 2);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_frames_are_counted_by_reason_and_never_delivered() {
    let script = Script {
        malformed_every: Some(3),
        ..Script::at_rate(2000.0)
    };
    let server = YahooStreamServer::start(script, 0).await.unwrap();
    let mut run = StreamRun::start(protocol(&server), quick_settings(), set(["AAPL", "MSFT"]));
    let quotes = run
        .until("every kind of bad frame", |_, m| {
            MALFORMED
                .iter()
                .all(|(reason, _)| m.source_malformed.with_label_values(&[reason]).get() > 0)
        })
        .await;
    assert!(
        quotes
            .iter()
            .all(|q| q.price > 0.0 && ["AAPL", "MSFT"].contains(&q.ticker.as_str()))
    );
    assert_eq!(
        server.connections(),
        1,
        "bad frames never cost the connection"
    );
    run.stop().await.unwrap();
}

#[tokio::test]
async fn coalescing_delivers_one_quote_per_ticker_per_window() {
    let server = YahooStreamServer::start(Script::at_rate(5000.0), 0)
        .await
        .unwrap();
    let settings = quotestream_worker::sources::websocket::WebsocketSettings {
        coalesce: Some(std::time::Duration::from_millis(100)),
        ..quick_settings()
    };
    let mut run = StreamRun::start(protocol(&server), settings, set(["AAPL", "MSFT"]));
    for _ in 0..5 {
        let batch = run.next_batch().await;
        let names: Vec<&str> = batch.iter().map(|q| q.ticker.as_str()).collect();
        let distinct: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(
            names.len(),
            distinct.len(),
            "one quote per ticker per window: {names:?}"
        );
    }
    run.until("folded ticks counted", |_, m| {
        m.source_coalesced.get() > 100
    })
    .await;
    run.stop().await.unwrap();
}

mod fuzz {
    use proptest::prelude::*;
    use quotestream_worker::sources::websocket::{Decoded, Frame};
    use quotestream_worker::sources::yahoo_stream::decode;

    use super::support::fuzz::{cases, corpus, mutated};

    fn accounted(bytes: &[u8]) -> usize {
        let mut out = Decoded::default();
        match std::str::from_utf8(bytes) {
            Ok(text) => decode(Frame::Text(text), &mut out),
            Err(_) => decode(Frame::Binary(bytes), &mut out),
        }
        out.quotes.len() + out.malformed.len() + out.events.len()
    }

    #[test]
    fn every_corpus_frame_decodes_to_something_accounted_for() {
        for (name, frame) in corpus("yahoo-stream") {
            assert_eq!(accounted(&frame), 1, "{name}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]
        #[test]
        fn mutated_frames_never_panic_and_are_accounted_for(frame in mutated("yahoo-stream")) {
            prop_assert_eq!(accounted(&frame), 1);
        }
    }
}
