#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The yahoo source against a local server that speaks Yahoo's HTTP protocol (cookie page,
//! getcrumb, v7 quote) and fails the way Yahoo does when told to.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use quotestream_api::TickerSet;
use quotestream_testkit::yahoo::{
    Fault, INVALID_CRUMB_BODY, JSON_CONTENT_TYPE, YahooServer, fake_quote,
};
use quotestream_worker::metrics::Metrics;
use quotestream_worker::quote::{RawQuote, validate};
use quotestream_worker::rate_limit::RateLimiter;
use quotestream_worker::sources::yahoo::{
    MISSING_QUOTE_ERROR, RetryPolicy, USER_AGENT, YahooConfig, YahooSource,
};
use quotestream_worker::sources::{Source, SourceContext, SourceError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything the source should do; failures say what did not happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// An interval long enough that only the immediate first tick runs during a test.
const ONE_CYCLE: Duration = Duration::from_secs(3600);

struct Running {
    server: YahooServer,
    tickers: watch::Sender<TickerSet>,
    quotes: mpsc::Receiver<Vec<RawQuote>>,
    metrics: Metrics,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), SourceError>>,
}

fn config(server: &YahooServer) -> YahooConfig {
    YahooConfig {
        base_url: server.base_url(),
        cookie_url: server.cookie_url(),
        timeout: Duration::from_secs(5),
        // Small pauses keep the tests fast; the backoff shape is backon's.
        retry: RetryPolicy {
            min_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            max_retries: 3,
        },
        ..YahooConfig::default()
    }
}

fn set<S: AsRef<str>>(symbols: impl IntoIterator<Item = S>) -> TickerSet {
    TickerSet::from_symbols(symbols).unwrap()
}

/// `n` distinct plain tickers: AAA, AAB, ...
fn many(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let letter = |k: usize| char::from(b'A' + (k % 26) as u8);
            [letter(i / 676), letter(i / 26), letter(i)]
                .iter()
                .collect()
        })
        .collect()
}

async fn start(server: YahooServer, tickers: TickerSet, interval: Duration) -> Running {
    let metrics = Metrics::new("test", 0).unwrap();
    let (tickers_tx, tickers_rx) = watch::channel(tickers);
    let (out, quotes) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let source = YahooSource::new(config(&server)).unwrap();
    let ctx = SourceContext {
        tickers: tickers_rx,
        interval,
        out,
        metrics: metrics.clone(),
        rate_limit: Arc::new(RateLimiter::unlimited()),
        shutdown: shutdown.clone(),
    };
    let task = tokio::spawn(source.run(ctx));
    Running {
        server,
        tickers: tickers_tx,
        quotes,
        metrics,
        shutdown,
        task,
    }
}

impl Running {
    async fn next_batch(&mut self) -> Vec<RawQuote> {
        tokio::time::timeout(PATIENCE, self.quotes.recv())
            .await
            .expect("the source delivered nothing within 10s")
            .expect("the source stopped")
    }

    /// Batches until `n` quotes arrived.
    async fn collect(&mut self, n: usize) -> Vec<RawQuote> {
        let mut all = Vec::new();
        while all.len() < n {
            all.extend(self.next_batch().await);
        }
        all
    }

    /// Waits until `check` holds, taking delivered batches meanwhile (so the source is never
    /// held back by a full channel); returns them. Panics naming `what` after PATIENCE.
    async fn until(&mut self, what: &str, check: impl Fn(&Self) -> bool) -> Vec<RawQuote> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while !check(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            while let Ok(batch) = self.quotes.try_recv() {
                seen.extend(batch);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // What was delivered while the condition became true: a source counts a cycle's
        // errors before it delivers, so under load two cycles can pass within one pause and
        // the first cycle's quotes would otherwise be left unread.
        while let Ok(batch) = self.quotes.try_recv() {
            seen.extend(batch);
        }
        seen
    }

    fn errors(&self, kind: &str) -> u64 {
        self.metrics.errors.with_label_values(&[kind]).get()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the source did not stop within 10s of shutdown")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        self.server.stop();
    }
}

fn tickers_of(quotes: &[RawQuote]) -> BTreeSet<String> {
    quotes.iter().map(|q| q.ticker.clone()).collect()
}

#[tokio::test]
async fn one_cycle_of_300_tickers_is_six_batched_requests_of_valid_quotes() {
    let server = YahooServer::start().await.unwrap();
    let symbols = many(300);
    let mut run = start(server, set(&symbols), ONE_CYCLE).await;
    let quotes = run.collect(300).await;

    assert_eq!(quotes.len(), 300);
    assert_eq!(tickers_of(&quotes), symbols.iter().cloned().collect());
    let requests = run.server.requests();
    assert_eq!(requests.len(), 300_usize.div_ceil(50), "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.status == 200 && r.symbols.len() == 50)
    );
    assert_eq!(
        (run.server.cookie_requests(), run.server.crumb_requests()),
        (1, 1)
    );
    let now = Timestamp::now();
    for raw in &quotes {
        let expected = fake_quote(&raw.ticker, raw.timestamp.as_second());
        assert_eq!(raw.price, expected.price, "{}", raw.ticker);
        assert_eq!(raw.volume, expected.volume as f64);
        let book = (expected.bid != 0.0).then_some((expected.bid, expected.ask));
        assert_eq!(
            raw.bid.zip(raw.ask),
            book,
            "{}: a 0 bid/ask is no book",
            raw.ticker
        );
        assert_eq!(raw.source, "yfinance");
        validate(raw.clone(), now).unwrap();
    }
    assert!(
        quotes.iter().any(|q| q.bid.is_none()),
        "no zero-book symbol exercised"
    );
    run.until("one fetch_duration sample", |run| {
        run.metrics.fetch_duration.get_sample_count() == 1
    })
    .await;
    assert_eq!(run.metrics.quotes_fetched.get(), 300);
    assert_eq!(run.errors("fetch"), 0);
    run.stop().await;
}

#[tokio::test]
async fn share_classes_are_asked_with_a_dash_and_come_back_dotted() {
    let server = YahooServer::start().await.unwrap();
    let mut run = start(server, set(["AAPL", "BRK.B", "BF.B"]), ONE_CYCLE).await;
    let quotes = run.collect(3).await;

    assert_eq!(
        tickers_of(&quotes),
        ["AAPL", "BF.B", "BRK.B"].map(String::from).into()
    );
    let brk = quotes.iter().find(|q| q.ticker == "BRK.B").unwrap();
    assert_eq!(
        brk.price,
        fake_quote("BRK-B", brk.timestamp.as_second()).price
    );
    let asked: BTreeSet<String> = run.server.requests()[0].symbols.iter().cloned().collect();
    assert_eq!(asked, ["AAPL", "BF-B", "BRK-B"].map(String::from).into());
    for raw in quotes {
        validate(raw, Timestamp::now()).unwrap();
    }
    assert_eq!(run.errors(MISSING_QUOTE_ERROR), 0);
    run.stop().await;
}

/// Indices and crypto pairs in spec.tickers are asked and come back under their canonical
/// ids, which are Yahoo's own spellings (`^GSPC`, `BTC-USD`).
#[tokio::test]
async fn indices_and_crypto_pairs_are_polled_under_their_ids() {
    let server = YahooServer::start().await.unwrap();
    let mut run = start(server, set(["AAPL", "^GSPC", "BTC-USD"]), ONE_CYCLE).await;
    let quotes = run.collect(3).await;
    let ids = ["AAPL", "BTC-USD", "^GSPC"].map(String::from);
    assert_eq!(tickers_of(&quotes), ids.clone().into());
    let asked: BTreeSet<String> = run.server.requests()[0].symbols.iter().cloned().collect();
    assert_eq!(asked, ids.into());
    let index = quotes.iter().find(|q| q.ticker == "^GSPC").unwrap();
    assert_eq!(
        index.price,
        fake_quote("^GSPC", index.timestamp.as_second()).price
    );
    for raw in quotes {
        validate(raw, Timestamp::now()).unwrap();
    }
    assert_eq!(run.errors(MISSING_QUOTE_ERROR), 0);
    run.stop().await;
}

#[tokio::test]
async fn an_expired_crumb_is_renewed_and_polling_goes_on() {
    let server = YahooServer::start().await.unwrap();
    // Two requests per cycle; the session lives for two requests: every cycle after the
    // first meets 401 Invalid Crumb.
    server.expire_crumb_after(Some(2));
    let mut run = start(server, set(many(100)), Duration::from_millis(20)).await;
    for cycle in 0..3 {
        let quotes = run.collect(100).await;
        assert_eq!(quotes.len(), 100, "cycle {cycle}");
    }

    let statuses: Vec<u16> = run.server.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(
        run.server.cookie_requests() >= 3,
        "a new session per expiry"
    );
    assert_eq!(run.errors("fetch"), 0);
    run.stop().await;
}

#[tokio::test]
async fn a_429_burst_backs_off_counts_hits_and_recovers() {
    let server = YahooServer::start().await.unwrap();
    server.inject(Fault::TooManyRequests, 2);
    server.inject(Fault::WillBeRightBack, 1);
    let mut run = start(server, set(many(50)), Duration::from_millis(20)).await;

    // Three retries cover the burst: the first cycle still delivers everything.
    assert_eq!(run.collect(50).await.len(), 50);
    assert_eq!(run.metrics.rate_limit_hits.get(), 2);
    assert_eq!(run.errors("fetch"), 0);

    // A burst longer than the retries costs one cycle, counted; later cycles deliver.
    run.server.inject(Fault::TooManyRequests, 4);
    run.until("the long burst counted as one fetch error", |run| {
        run.errors("fetch") == 1
    })
    .await;
    assert_eq!(run.metrics.rate_limit_hits.get(), 6);
    let recovered = run
        .until("a successful request after the burst", |run| {
            let statuses: Vec<u16> = run.server.requests().iter().map(|r| r.status).collect();
            statuses.iter().rposition(|s| *s == 429) < statuses.iter().rposition(|s| *s == 200)
        })
        .await;
    let statuses: Vec<u16> = run.server.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        1,
        "{statuses:?}"
    );
    assert!(recovered.len() + run.collect(50).await.len() >= 50);
    assert_eq!(run.errors("fetch"), 1);
    run.stop().await;
}

#[tokio::test]
async fn malformed_json_and_missing_fields_are_counted_and_later_cycles_are_fine() {
    let server = YahooServer::start().await.unwrap();
    server.inject(Fault::MalformedJson, 1);
    server.inject(Fault::MissingFields, 1);
    let mut run = start(server, set(many(10)), Duration::from_millis(20)).await;

    // Cycle 1 got the malformed body: nothing delivered, one fetch error, no retry.
    // Cycle 2: even results lack price and time, odd ones lack book, volume and day range.
    let partial = run.next_batch().await;
    assert_eq!(run.errors("fetch"), 1);
    assert_eq!(partial.len(), 5);
    assert_eq!(run.errors(MISSING_QUOTE_ERROR), 5);
    for raw in &partial {
        assert_eq!((raw.bid, raw.ask, raw.open), (None, None, None));
        assert_eq!(raw.volume, 0.0);
        validate(raw.clone(), Timestamp::now()).unwrap();
    }
    // Cycle 3 is whole again.
    let whole = run.next_batch().await;
    assert_eq!(whole.len(), 10);
    assert_eq!(run.errors(MISSING_QUOTE_ERROR), 5);
    assert_eq!(run.errors("fetch"), 1);
    run.stop().await;
}

#[tokio::test]
async fn unknown_and_delisted_symbols_are_counted_each_cycle_not_fatal() {
    let server = YahooServer::start().await.unwrap();
    server.set_unknown(["ZZZZ"]);
    server.set_delisted(["SIVB"]);
    let mut run = start(
        server,
        set(["AAPL", "MSFT", "ZZZZ", "SIVB"]),
        Duration::from_millis(20),
    )
    .await;
    let quotes = run
        .until("two cycles with two missing symbols each", |run| {
            run.errors(MISSING_QUOTE_ERROR) >= 4
        })
        .await;
    assert!(!quotes.is_empty());
    assert_eq!(
        tickers_of(&quotes),
        ["AAPL", "MSFT"].map(String::from).into()
    );
    assert_eq!(run.errors(MISSING_QUOTE_ERROR) % 2, 0);
    assert_eq!(run.errors("fetch"), 0);
    assert_eq!(run.errors("validation"), 0);
    run.stop().await;
}

#[tokio::test]
async fn a_new_ticker_set_is_polled_from_the_next_cycle() {
    let server = YahooServer::start().await.unwrap();
    let mut run = start(server, set(["AAPL", "MSFT"]), Duration::from_millis(20)).await;
    let first = run.next_batch().await;
    assert_eq!(
        tickers_of(&first),
        ["AAPL", "MSFT"].map(String::from).into()
    );

    let before = run.server.request_count();
    run.tickers.send(set(["GOOG", "BRK.B"])).unwrap();
    let wanted: BTreeSet<String> = ["BRK.B", "GOOG"].map(String::from).into();
    let seen = run
        .until("a batch of the new set", |run| {
            run.server.request_count() >= before + 2
        })
        .await;
    let quotes = [seen, run.next_batch().await].concat();
    assert!(tickers_of(&quotes).is_superset(&wanted));
    // One cycle may have been under way when the set changed; every later one asks for the
    // new set only.
    let new: BTreeSet<String> = ["BRK-B", "GOOG"].map(String::from).into();
    for request in &run.server.requests()[before + 1..] {
        let asked: BTreeSet<String> = request.symbols.iter().cloned().collect();
        assert_eq!(asked, new);
    }
    run.stop().await;
}

#[tokio::test]
async fn shutdown_stops_a_cycle_in_flight() {
    let server = YahooServer::start().await.unwrap();
    // Requests hang far longer than the test waits: only cancellation can end the cycle.
    server.set_latency(Duration::from_secs(60));
    let mut run = start(server, set(many(120)), Duration::from_millis(20)).await;
    run.until("the session started", |run| {
        run.server.crumb_requests() == 1
    })
    .await;

    run.stop().await;
}

#[tokio::test]
async fn an_uneven_shard_is_full_chunks_and_a_remainder() {
    // The seeds asked one request per ticker; a shard of 120 with 50 per request needs 3.
    let server = YahooServer::start().await.unwrap();
    let mut run = start(server, set(many(120)), ONE_CYCLE).await;
    run.collect(120).await;
    let sizes: HashMap<usize, usize> =
        run.server
            .requests()
            .iter()
            .fold(HashMap::new(), |mut sizes, r| {
                *sizes.entry(r.symbols.len()).or_default() += 1;
                sizes
            });
    assert_eq!(sizes, HashMap::from([(50, 2), (20, 1)]));
    run.stop().await;
}

/// The test server itself: the flow, statuses, headers and bodies of the recorded exchanges.
#[tokio::test]
async fn the_local_server_speaks_yahoos_protocol() {
    let server = YahooServer::start().await.unwrap();
    let quote_url = |crumb: &str| {
        format!(
            "{}/v7/finance/quote?symbols=AAPL,BRK-B,BRK.B&crumb={crumb}&formatted=false",
            server.base_url()
        )
    };
    let content_type = |r: &reqwest::Response| {
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned()
    };

    // Without a browser User-Agent, getcrumb answers 429; without a session, quotes are 401.
    let bare = reqwest::Client::new();
    let r = bare
        .get(format!("{}/v1/test/getcrumb", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.text().await.unwrap(), "Too Many Requests");
    let browser = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .cookie_store(true)
        .build()
        .unwrap();
    let r = browser.get(quote_url("x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(content_type(&r), JSON_CONTENT_TYPE);
    assert_eq!(r.text().await.unwrap(), INVALID_CRUMB_BODY);

    // The cookie page: 404 with the A3 cookie; then the crumb; then quotes.
    let r = browser.get(server.cookie_url()).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("A3=d="), "{cookie}");
    assert!(cookie.contains("Domain=127.0.0.1"), "{cookie}");
    let r = browser
        .get(format!("{}/v1/test/getcrumb", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("text/plain"));
    let crumb = r.text().await.unwrap();
    assert_eq!(crumb.len(), 11, "{crumb}");
    let r = browser.get(quote_url(&crumb)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), JSON_CONTENT_TYPE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["quoteResponse"]["error"].is_null());
    let result = body["quoteResponse"]["result"].as_array().unwrap();
    let symbols: Vec<&str> = result
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(
        symbols,
        ["AAPL", "BRK-B"],
        "a dotted class is unknown to Yahoo"
    );

    // Every field the server writes is one the recorded AAPL answer has, with the same type.
    let capture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/yahoo/quote-AAPL-BABA.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let recorded = &capture["response"]["bodyJson"]["quoteResponse"]["result"][0];
    let kind = |v: &serde_json::Value| match v {
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Array(_) => "array",
        _ => "other",
    };
    for (key, value) in result[0].as_object().unwrap() {
        let Some(expected) = recorded.get(key) else {
            panic!("{key} is not in the recorded answer");
        };
        assert_eq!(kind(value), kind(expected), "{key}");
    }
    server.stop();
}

/// A 60 MB answer (streamed without a Content-Length) is refused once 8 MiB are read, not
/// buffered: the chunk is given up for the cycle and counted as
/// `streamer_errors_total{type="oversized"}`; the next cycle is whole.
#[tokio::test]
async fn a_60_mb_body_is_refused_and_counted() {
    let server = YahooServer::start().await.unwrap();
    server.inject(Fault::HugeBody, 1);
    let mut run = start(server, set(many(10)), Duration::from_millis(20)).await;
    let whole = run.next_batch().await;
    assert_eq!(whole.len(), 10, "the cycle after the refused body is whole");
    assert_eq!(run.errors("oversized"), 1);
    assert_eq!(run.errors("fetch"), 0);
    run.stop().await;
}
