//! How fast the alpaca source takes in Alpaca's frames: the decoder alone (batched and single
//! frames), then the whole source (WebSocket, decoding, delivery) against the local Alpaca
//! server at increasing rates. Prints tables; asserts nothing.
//!
//! `cargo run --release -p quotestream-worker --example bench_alpaca`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::sync::Arc;
use std::time::{Duration, Instant};

use quotestream_api::TickerSet;
use quotestream_api::crd::AlpacaFeed;
use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::alpaca::{AlpacaOptions, AlpacaServer, KEY_ID, SECRET_KEY};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::rate_limit::RateLimiter;
use quotestream_worker::sources::alpaca::{
    Alpaca, AlpacaConfig, Decoder, ErrorContext, SecretNames,
};
use quotestream_worker::sources::websocket::{Decoded, Frame, WebsocketSettings, WebsocketSource};
use quotestream_worker::sources::{Source, SourceContext};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn symbols(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let i = i as u32;
            [i / 676, (i / 26) % 26, i % 26]
                .iter()
                .map(|d| char::from(b'A' + *d as u8))
                .collect()
        })
        .collect()
}

fn secret() -> SecretNames {
    SecretNames {
        name: "alpaca".into(),
        key_id_key: "APCA_API_KEY_ID".into(),
        secret_key_key: "APCA_API_SECRET_KEY".into(),
    }
}

/// Frames of `per_frame` trades (and every third a quote) over 100 symbols, `total` messages.
fn frames(total: usize, per_frame: usize) -> Vec<String> {
    let names = symbols(100);
    let mut frames = Vec::new();
    let mut items = Vec::new();
    for n in 0..total {
        let s = &names[n % names.len()];
        let t = format!(
            "2026-01-20T15:{:02}:{:02}.{:09}Z",
            (n / 60_000_000) % 60,
            (n / 1_000_000) % 60,
            n % 1_000_000 * 1000
        );
        items.push(if n % 3 == 2 {
            format!(r#"{{"T":"q","S":"{s}","bx":"V","bp":189.41,"bs":2,"ax":"V","ap":189.44,"as":3,"c":["R"],"z":"C","t":"{t}"}}"#)
        } else {
            format!(r#"{{"T":"t","S":"{s}","i":{n},"x":"V","p":189.42,"s":100,"t":"{t}","c":["@"],"z":"C"}}"#)
        });
        if items.len() == per_frame {
            frames.push(format!("[{}]", items.join(",")));
            items.clear();
        }
    }
    frames
}

fn decode_rate(frames: &[String], total: usize) -> f64 {
    let mut decoder = Decoder::new(ErrorContext {
        feed: AlpacaFeed::Iex,
        secret: secret(),
    });
    let mut out = Decoded::default();
    let started = Instant::now();
    let mut quotes = 0;
    for frame in frames {
        out.clear();
        decoder.decode(Frame::Text(frame), &mut out);
        quotes += out.quotes.len();
    }
    assert!(quotes > 0);
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(mut runs: Vec<f64>) -> (f64, Vec<f64>) {
    let shown = runs.clone();
    runs.sort_by(f64::total_cmp);
    (runs[runs.len() / 2], shown)
}

fn fmt(rate: f64) -> String {
    let s = format!("{:.0}", rate);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Runs the source against the fake at `rate` messages/s for `window`; returns (quotes/s
/// delivered, frames the fake batched per second is not visible here).
async fn source_rate(rate: f64, tickers: usize, window: Duration) -> f64 {
    let server = AlpacaServer::start(AlpacaOptions::new(Script::at_rate(rate)), 0)
        .await
        .unwrap();
    let config = AlpacaConfig {
        url: server.url("sip"),
        feed: AlpacaFeed::Sip,
        key_id: KEY_ID.into(),
        secret_key: SECRET_KEY.into(),
        secret: secret(),
    };
    let metrics = Metrics::new("bench", 0).unwrap();
    let (_tickers_tx, tickers_rx) =
        watch::channel(TickerSet::from_symbols(symbols(tickers)).unwrap());
    let (out, mut quotes) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let ctx = SourceContext {
        tickers: tickers_rx,
        interval: Duration::from_secs(1),
        out,
        metrics,
        rate_limit: Arc::new(RateLimiter::unlimited()),
        shutdown: shutdown.clone(),
    };
    let source = WebsocketSource::new(Alpaca::new(config), WebsocketSettings::default());
    let task = tokio::spawn(source.run(ctx));
    // Warm-up: the login, the subscription and the first second.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(1000) {
        quotes.recv().await.unwrap();
    }
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < window {
        n += quotes.recv().await.unwrap().len();
    }
    let achieved = n as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    drop(quotes);
    let _ = task.await;
    achieved
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("### Decoder alone\n");
    println!(
        "One thread; 300 000 messages (2 trades : 1 quote update) over 100 symbols, already in memory; median of 3.\n"
    );
    println!("| messages per frame | messages/s (median) | runs | ns/message |");
    println!("|---:|---:|---|---:|");
    let total = 300_000;
    for per_frame in [1, 10, 100] {
        let input = frames(total, per_frame);
        let (m, runs) = median((0..3).map(|_| decode_rate(&input, total)).collect());
        println!(
            "| {per_frame} | {} | {} | {:.0} |",
            fmt(m),
            runs.iter().map(|r| fmt(*r)).collect::<Vec<_>>().join(" / "),
            1e9 / m
        );
    }
    println!("\n### Whole source against the local Alpaca server\n");
    println!(
        "`fake-market alpaca` in-process (batches up to 100 messages per frame), 100 tickers, 3 s after a 1 s warm-up; quotes delivered to the pipeline channel (a quote update before a ticker's first trade yields none, so a little under the sent rate is the ceiling).\n"
    );
    println!("| sent messages/s | delivered quotes/s |");
    println!("|---:|---:|");
    for rate in [50_000.0, 100_000.0, 200_000.0] {
        let achieved = source_rate(rate, 100, Duration::from_secs(3)).await;
        println!("| {} | {} |", fmt(rate), fmt(achieved));
    }
}
