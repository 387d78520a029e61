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

/// A 60 MB message — one frame, or 1 MiB fragments that each pass a frame limit — is refused
/// as it arrives, never buffered whole: the connection is replaced and the refusal counted as
/// `streamer_source_reconnects_total{reason="oversized"}`, and nothing of it reaches the decoder.
#[tokio::test]
async fn a_60_mb_message_is_refused_not_buffered() {
    use futures_util::{SinkExt, StreamExt};
    use quotestream_testkit::stream::{Peer, WsServer};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::{Bytes, Message};

    const HUGE: usize = 60 << 20;
    const PIECE: usize = 1 << 20;
    // Connection 0 sends the message in fragments, connection 1 in one frame; both after the
    // subscribe frame, as Yahoo would send ticks.
    let hostile = WsServer::start(0, move |mut peer: Peer| async move {
        let _subscribe = peer.socket.next().await;
        let piece = Bytes::from(vec![b'A'; PIECE]);
        let result = if peer.index == 0 {
            let mut r = Ok(());
            for i in 0..HUGE / PIECE {
                let opcode = if i == 0 {
                    OpCode::Data(Data::Text)
                } else {
                    OpCode::Data(Data::Continue)
                };
                let last = i + 1 == HUGE / PIECE;
                r = peer
                    .socket
                    .feed(Message::Frame(Frame::message(piece.clone(), opcode, last)))
                    .await;
                if r.is_err() {
                    break;
                }
            }
            r.and(peer.socket.flush().await)
        } else {
            peer.socket.send(Message::text("A".repeat(HUGE))).await
        };
        // The client hangs up on us; keep the socket until then.
        let _ = result;
        while let Some(Ok(_)) = peer.socket.next().await {}
    })
    .await
    .unwrap();
    let protocol = YahooStream::new(YahooStreamConfig {
        url: hostile.url("/"),
    });
    let mut run = StreamRun::start(protocol, quick_settings(), set(["AAPL"]));
    let oversized = |m: &quotestream_worker::metrics::Metrics| {
        m.source_reconnects.with_label_values(&["oversized"]).get()
    };
    run.until("both 60 MB messages refused", |_, m| oversized(m) >= 2)
        .await;
    for reason in ["bad_json", "bad_base64", "bad_protobuf"] {
        assert_eq!(
            run.metrics
                .source_malformed
                .with_label_values(&[reason])
                .get(),
            0,
            "the message reached the decoder ({reason}): it was buffered whole"
        );
    }
    run.stop().await.unwrap();
}
