//! The worker's own host check (defence in depth behind the operator's, docs/security.md): the
//! `quotestream-worker run` process, with the host list the operator passes in
//! `QUOTESTREAM_SOURCE_HOSTS`, never sends a vendor key to a host outside it, never follows a
//! redirect out of it, and never copies the body of a reply into its log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use quotestream_testkit::RedisServer;
use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::alpaca::{AlpacaOptions, AlpacaServer};
use quotestream_testkit::stream::polygon::PolygonServer;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const POLYGON_KEY: &str = "PolygonKey-must-stay-home-1";
const ALPACA_SECRET: &str = "AlpacaSecret-must-stay-home-2";
/// What an internal service answers; it must never appear in the worker's output.
const INTERNAL_PAGE: &str = "INTERNAL-7f3a-service-page-with-tokens";

/// A `run` worker with its config in a temporary directory and its output in a file.
struct Worker {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn start(source: Value, redis: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("worker.json");
        let body = json!({
            "namespace": "markets", "stream": "hosts", "shard": 0, "shards": 1,
            "tickers": ["AAPL", "MSFT"], "interval": "200ms", "requestsPerHour": 100000.0,
            "source": source, "sinks": {"redis": {"url": redis}},
            "epoch": 1, "fingerprint": "test"
        });
        std::fs::write(&config, body.to_string()).unwrap();
        let log = dir.path().join("worker.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"));
        cmd.args(["run", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--grace", "1s"])
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .env_remove("QUOTESTREAM_SOURCE_HOSTS")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            log,
            _dir: dir,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, once the process ended within [`WAIT`]; fails with `context` if not.
    fn exit(&mut self, context: impl Fn() -> String) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker kept running for {WAIT:?}: {}\n{}",
                context(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until the log contains `needle`.
    fn logged(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the worker's log within {WAIT:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP server on a free loopback port that answers every request with `reply` and counts
/// them.
async fn http_server(
    reply: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let reply = reply.clone();
        async move { reply() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

fn assert_not_in(output: &str, secret: &str) {
    assert!(
        !output.contains(secret),
        "{secret:?} is in the worker's output:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_key_is_never_sent_to_a_host_outside_the_list() {
    let redis = RedisServer::start().unwrap();
    // The admin's lists name only the vendors' hosts (no loopback): the local servers stand for
    // an attacker's host that a stream's url points at.
    let polygon = PolygonServer::start(Script::default(), 0).await.unwrap();
    let mut worker = Worker::start(
        json!({"type": "polygon", "polygon": {
            "apiKeySecretRef": {"name": "massive", "key": "apiKey"}, "url": polygon.url()}}),
        &redis.url(),
        &[
            ("POLYGON_API_KEY", POLYGON_KEY),
            (
                "QUOTESTREAM_SOURCE_HOSTS",
                "socket.massive.com,delayed.massive.com",
            ),
        ],
    );
    let status = worker.exit(|| format!("polygon frames: {:?}", polygon.journal().frames()));
    assert!(!status.success(), "{}", worker.output());
    let output = worker.output();
    assert!(
        output.contains("spec.source.polygon.url") && output.contains("127.0.0.1"),
        "the error names the field and the host:\n{output}"
    );
    assert_eq!(polygon.connections(), 0, "{:?}", polygon.journal().frames());
    assert!(polygon.journal().frames().is_empty());
    assert_not_in(&output, POLYGON_KEY);

    let alpaca = AlpacaServer::start(AlpacaOptions::new(Script::default()), 0)
        .await
        .unwrap();
    let mut worker = Worker::start(
        json!({"type": "alpaca", "alpaca": {
            "credentialsSecretRef": {"name": "alpaca"}, "url": alpaca.url("iex")}}),
        &redis.url(),
        &[
            ("APCA_API_KEY_ID", "PKTEST"),
            ("APCA_API_SECRET_KEY", ALPACA_SECRET),
            ("QUOTESTREAM_SOURCE_HOSTS", "stream.data.alpaca.markets"),
        ],
    );
    let status = worker.exit(|| format!("alpaca frames: {:?}", alpaca.journal().frames()));
    assert!(!status.success(), "{}", worker.output());
    assert!(
        worker.output().contains("spec.source.alpaca.url"),
        "{}",
        worker.output()
    );
    assert_eq!(alpaca.connections(), 0, "{:?}", alpaca.journal().frames());
    assert_not_in(&worker.output(), ALPACA_SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yahoo_redirect_out_of_the_list_is_not_followed() {
    let redis = RedisServer::start().unwrap();
    let (internal, internal_hits) = http_server(|| INTERNAL_PAGE.into_response()).await;
    // The allowed server bounces every request to the internal one, under a name the list
    // does not allow (the list holds 127.0.0.1 only, not localhost).
    let target = format!("http://localhost:{internal}/latest/meta-data");
    let (bouncer, bounced) = http_server(move || {
        (StatusCode::FOUND, [(header::LOCATION, target.clone())]).into_response()
    })
    .await;
    let worker = Worker::start(
        json!({"type": "yahoo", "yahoo": {"baseUrl": format!("http://127.0.0.1:{bouncer}")}}),
        &redis.url(),
        &[("QUOTESTREAM_SOURCE_HOSTS", "127.0.0.1")],
    );
    // The cookie page, then getcrumb: the session fails and the chunk is given up.
    worker.logged("no quotes for this chunk");
    assert!(bounced.load(Ordering::SeqCst) >= 2);
    let output = worker.output();
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "the redirect was followed:\n{output}"
    );
    assert!(output.contains("redirect"), "{output}");
    assert_not_in(&output, INTERNAL_PAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_of_a_reply_never_reaches_the_log() {
    let redis = RedisServer::start().unwrap();
    // An allowed host (loopback, the default) that is not Yahoo: an internal service on the
    // pod's own address answers every path with its page.
    let (internal, hits) = http_server(|| INTERNAL_PAGE.into_response()).await;
    let worker = Worker::start(
        json!({"type": "yahoo", "yahoo": {"baseUrl": format!("http://127.0.0.1:{internal}")}}),
        &redis.url(),
        &[],
    );
    worker.logged("no quotes for this chunk");
    assert!(hits.load(Ordering::SeqCst) >= 2);
    let output = worker.output();
    assert!(output.contains("-byte body (not shown)"), "{output}");
    assert_not_in(&output, INTERNAL_PAGE);
}
