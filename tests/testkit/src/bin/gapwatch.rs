//! A Redis Pub/Sub subscriber that measures, per ticker, the longest time between two quotes:
//! the "no ticker goes quiet during a reshard" check of the real-node end-to-end test, run as a
//! pod beside the workers (tests/node/e2e.sh).
//!
//! `GET /report` answers JSON: how many messages and distinct tickers it has seen since the last
//! `POST /reset`, and the longest gaps (a ticker silent right now counts with its current
//! silence, so one that stopped for good cannot hide). `GET /ready` is 200 once subscribed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Subscribe to a Redis channel of quotes and report the longest per-ticker gap",
    after_help = "Examples:\n  gapwatch --redis-url redis://10.244.0.5:6379 --listen 0.0.0.0:8080\n  curl -X POST localhost:8080/reset; curl localhost:8080/report"
)]
struct Cli {
    /// The Redis server the workers publish to.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The Pub/Sub channel (the stream's spec.sinks.redis.channel).
    #[arg(long, default_value = "quotes.realtime")]
    channel: String,
    /// Where the report is served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// How many of the longest gaps the report lists.
    #[arg(long, default_value_t = 10)]
    worst: usize,
}

#[derive(Debug, Default)]
struct Ticker {
    last: Option<Instant>,
    max_gap_ms: f64,
    count: u64,
}

#[derive(Debug)]
struct Watch {
    since: Instant,
    subscribed: bool,
    messages: u64,
    unparsed: u64,
    tickers: HashMap<String, Ticker>,
}

#[derive(Debug, Serialize)]
struct Report {
    seconds: f64,
    messages: u64,
    unparsed: u64,
    /// Tickers seen since the last reset.
    tickers: usize,
    /// Tickers seen since the start (a reset keeps them, with their clocks restarted).
    known: usize,
    max_gap_ms: f64,
    worst: Vec<Gap>,
}

#[derive(Debug, Serialize)]
struct Gap {
    ticker: String,
    gap_ms: f64,
    quotes: u64,
}

/// The one field of a plain quote this needs (contracts.md: `{"ticker": ..., ...}`).
#[derive(Debug, Deserialize)]
struct Quote {
    ticker: String,
}

type Shared = Arc<Mutex<Watch>>;

fn lock(w: &Shared) -> std::sync::MutexGuard<'_, Watch> {
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let watch: Shared = Arc::new(Mutex::new(Watch {
        since: Instant::now(),
        subscribed: false,
        messages: 0,
        unparsed: 0,
        tickers: HashMap::new(),
    }));
    let worst = cli.worst;
    let app = Router::new()
        .route("/ready", get(ready))
        .route("/report", get(move |s| report(s, worst)))
        .route("/reset", post(reset))
        .with_state(watch.clone());
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    eprintln!("gapwatch: serving the report on {}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = redis::Client::open(cli.redis_url.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&cli.channel).await?;
    eprintln!(
        "gapwatch: subscribed to {} on {}",
        cli.channel, cli.redis_url
    );
    lock(&watch).subscribed = true;
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let now = Instant::now();
        let parsed = serde_json::from_slice::<Quote>(msg.get_payload_bytes());
        let mut w = lock(&watch);
        w.messages += 1;
        match parsed {
            Ok(q) => {
                let t = w.tickers.entry(q.ticker).or_default();
                if let Some(last) = t.last {
                    t.max_gap_ms = t.max_gap_ms.max(ms(now - last));
                }
                t.last = Some(now);
                t.count += 1;
            }
            Err(_) => w.unparsed += 1,
        }
    }
    Err("the Redis subscription ended".into())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn ready(State(w): State<Shared>) -> StatusCode {
    if lock(&w).subscribed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn report(State(w): State<Shared>, worst: usize) -> Json<Report> {
    let now = Instant::now();
    let w = lock(&w);
    let mut gaps: Vec<Gap> = w
        .tickers
        .iter()
        .map(|(ticker, t)| {
            let silent = t.last.map_or(0.0, |last| ms(now - last));
            Gap {
                ticker: ticker.clone(),
                gap_ms: t.max_gap_ms.max(silent),
                quotes: t.count,
            }
        })
        .collect();
    gaps.sort_by(|a, b| {
        b.gap_ms
            .total_cmp(&a.gap_ms)
            .then_with(|| a.ticker.cmp(&b.ticker))
    });
    let max_gap_ms = gaps.first().map_or(0.0, |g| g.gap_ms);
    gaps.truncate(worst);
    Json(Report {
        seconds: (now - w.since).as_secs_f64(),
        messages: w.messages,
        unparsed: w.unparsed,
        tickers: w.tickers.values().filter(|t| t.count > 0).count(),
        known: w.tickers.len(),
        max_gap_ms,
        worst: gaps,
    })
}

/// Starts a new measuring window: counts and gaps from zero, every known ticker's clock from now.
async fn reset(State(w): State<Shared>) -> StatusCode {
    let now = Instant::now();
    let mut w = lock(&w);
    w.since = now;
    w.messages = 0;
    w.unparsed = 0;
    for t in w.tickers.values_mut() {
        *t = Ticker {
            last: Some(now),
            max_gap_ms: 0.0,
            count: 0,
        };
    }
    StatusCode::NO_CONTENT
}
