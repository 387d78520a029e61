#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The yahoo-stream source against a local server speaking Yahoo's live-stream protocol
//! (JSON subscribe frames, base64 protobuf PricingData). What every streaming source does is
//! checked for Yahoo too by the shared suite, `streaming_sources.rs`; this file holds
//! coalescing and the decoder's fuzzing.

mod support;

use std::collections::BTreeSet;

use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::yahoo::YahooStreamServer;
use quotestream_worker::sources::yahoo_stream::{YahooStream, YahooStreamConfig};

use support::{StreamRun, quick_settings, set};

fn protocol(server: &YahooStreamServer) -> YahooStream {
    YahooStream::new(YahooStreamConfig { url: server.url() })
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
