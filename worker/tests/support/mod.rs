//! Running a streaming source against a local vendor server, shared by the streaming-source
//! tests (`streaming_sources.rs`, the suite every vendor runs, and `yahoo_stream_source.rs`,
//! `alpaca_source.rs`, `polygon_source.rs`); [`process`]: the worker binary as a process
//! (`sink_failures.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use quotestream_api::TickerSet;
use quotestream_worker::metrics::Metrics;
use quotestream_worker::quote::RawQuote;
use quotestream_worker::rate_limit::RateLimiter;
use quotestream_worker::sources::websocket::{Protocol, WebsocketSettings, WebsocketSource};
use quotestream_worker::sources::{Source, SourceContext, SourceError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod process;
pub mod redis_sink;

/// The alpaca source as the worker builds it: `spec.source.alpaca` naming Secret `alpaca-keys`
/// and `url`, and the credentials in the environment (`secret_key` for the secret key).
pub fn alpaca(url: String, secret_key: &str) -> quotestream_worker::sources::alpaca::Alpaca {
    use quotestream_api::contract::env::{ALPACA_KEY_ID, ALPACA_SECRET_KEY};
    use quotestream_api::crd::{AlpacaCredentials, AlpacaSource};
    use quotestream_testkit::stream::alpaca::KEY_ID;
    use quotestream_worker::sources::Connector;
    use quotestream_worker::sources::alpaca::{Alpaca, AlpacaConfig};

    let spec = AlpacaSource {
        credentials_secret_ref: AlpacaCredentials {
            name: "alpaca-keys".into(),
            key_id_key: None,
            secret_key_key: None,
        },
        feed: None,
        url: Some(url),
        max_connections: None,
    };
    let env = std::collections::HashMap::from([
        (ALPACA_KEY_ID.to_owned(), KEY_ID.to_owned()),
        (ALPACA_SECRET_KEY.to_owned(), secret_key.to_owned()),
    ]);
    Alpaca::new(AlpacaConfig::from_spec(Some(&spec), &env).unwrap())
}

/// Longest wait for anything the source should do; failures say what did not happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn set<S: AsRef<str>>(symbols: impl IntoIterator<Item = S>) -> TickerSet {
    TickerSet::from_symbols(symbols).unwrap()
}

/// Settings that make reconnects and silence detection quick enough for tests.
pub fn quick_settings() -> WebsocketSettings {
    WebsocketSettings {
        idle_timeout: Duration::from_secs(1),
        ping_every: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(5),
        login_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        ..WebsocketSettings::default()
    }
}

/// A streaming source running in the test's runtime.
pub struct StreamRun {
    pub tickers: watch::Sender<TickerSet>,
    pub quotes: mpsc::Receiver<Vec<RawQuote>>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), SourceError>>,
}

impl StreamRun {
    pub fn start<P: Protocol + std::fmt::Debug>(
        protocol: P,
        settings: WebsocketSettings,
        tickers: TickerSet,
    ) -> Self {
        let metrics = Metrics::new("test", 0).unwrap();
        let (tickers_tx, tickers_rx) = watch::channel(tickers);
        let (out, quotes) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let ctx = SourceContext {
            tickers: tickers_rx,
            interval: Duration::from_secs(1),
            out,
            metrics: metrics.clone(),
            rate_limit: Arc::new(RateLimiter::unlimited()),
            shutdown: shutdown.clone(),
        };
        let task = tokio::spawn(WebsocketSource::new(protocol, settings).run(ctx));
        Self {
            tickers: tickers_tx,
            quotes,
            metrics,
            shutdown,
            task,
        }
    }

    /// The next delivered batch; panics after PATIENCE.
    pub async fn next_batch(&mut self) -> Vec<RawQuote> {
        tokio::time::timeout(PATIENCE, self.quotes.recv())
            .await
            .expect("the source delivered nothing within 10s")
            .expect("the source stopped")
    }

    /// Takes delivered quotes until `check` holds for what arrived so far (and the metrics);
    /// returns them. Panics naming `what` after PATIENCE.
    pub async fn until(
        &mut self,
        what: &str,
        mut check: impl FnMut(&[RawQuote], &Metrics) -> bool,
    ) -> Vec<RawQuote> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while !check(&seen, &self.metrics) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left.min(Duration::from_millis(50)), self.quotes.recv())
                .await
            {
                Ok(Some(batch)) => seen.extend(batch),
                Ok(None) => panic!("the source stopped while waiting for: {what}"),
                Err(_) => assert!(
                    !left.is_zero(),
                    "timed out after {PATIENCE:?} waiting for: {what}"
                ),
            }
        }
        seen
    }

    /// Stops the source and returns how it ended.
    pub async fn stop(self) -> Result<(), SourceError> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the source did not stop within 10s of shutdown")
            .expect("the source task panicked")
    }

    /// Waits for the source to end by itself (a fatal error) and returns how.
    pub async fn ended(self) -> Result<(), SourceError> {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the source did not stop within 10s")
            .expect("the source task panicked")
    }
}

/// Polls `check` (async-friendly: yields between tries) until it holds; panics naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fuzzing a decoder: the corpus of real frames kept in `worker/tests/corpus/<vendor>/` (one
/// frame per file), and mutations of it. Decoders must never panic and must account for
/// every frame (a quote, a control event or a named reason).
pub mod fuzz {
    use std::path::PathBuf;

    use proptest::prelude::*;

    /// Every frame of a vendor's corpus, by file name.
    pub fn corpus(vendor: &str) -> Vec<(String, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(vendor);
        let mut frames: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        frames.sort();
        assert!(!frames.is_empty(), "the corpus {} is empty", dir.display());
        frames
    }

    /// One mutation of a byte string.
    #[derive(Debug, Clone)]
    pub enum Mutation {
        Truncate(usize),
        Flip(usize, u8),
        Insert(usize, u8),
        Remove(usize),
        Splice(usize, Vec<u8>),
    }

    impl Mutation {
        pub fn apply(&self, bytes: &mut Vec<u8>) {
            let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
            match self {
                Self::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
                Self::Flip(i, mask) => {
                    if !bytes.is_empty() {
                        let i = i % bytes.len();
                        bytes[i] ^= mask;
                    }
                }
                Self::Insert(i, b) => bytes.insert(at(*i, bytes.len()), *b),
                Self::Remove(i) => {
                    if !bytes.is_empty() {
                        bytes.remove(i % bytes.len());
                    }
                }
                Self::Splice(i, junk) => {
                    let i = at(*i, bytes.len());
                    bytes.splice(i..i, junk.iter().copied());
                }
            }
        }
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        // Structural characters make the JSON-level mutations interesting.
        let junk = prop_oneof![
            Just(b"\"".to_vec()),
            Just(b"{".to_vec()),
            Just(b"]".to_vec()),
            Just(b",null".to_vec()),
            Just(b"-1e309".to_vec()),
            Just(b"NaN".to_vec()),
            proptest::collection::vec(any::<u8>(), 1..8),
        ];
        prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Remove),
            (any::<usize>(), junk).prop_map(|(i, j)| Mutation::Splice(i, j)),
        ]
    }

    /// A corpus frame with up to eight mutations applied.
    pub fn mutated(vendor: &str) -> impl Strategy<Value = Vec<u8>> {
        let frames: Vec<Vec<u8>> = corpus(vendor).into_iter().map(|(_, f)| f).collect();
        (
            proptest::sample::select(frames),
            proptest::collection::vec(mutation(), 0..8),
        )
            .prop_map(|(mut frame, mutations)| {
                for m in &mutations {
                    m.apply(&mut frame);
                }
                frame
            })
    }

    /// Cases per fuzz property: `QUOTESTREAM_FUZZ_CASES` (CI keeps the default bounded).
    pub fn cases() -> u32 {
        std::env::var("QUOTESTREAM_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
    }
}
