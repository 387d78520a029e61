//! The `quotestream-worker run` process as the shard Deployment runs it: configuration file,
//! HTTP endpoints, a ticker change picked up without a restart, SIGTERM drain.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use quotestream_testkit::{RedisServer, free_port};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn worker_config(tickers: &[&str], redis_url: &str) -> Value {
    json!({
        "namespace": "markets", "stream": "demo", "shard": 1, "shards": 2,
        "tickers": tickers, "interval": "100ms", "requestsPerHour": 1000.0,
        "source": {"type": "synthetic", "synthetic": {"seed": 7}},
        // The extended ticker pattern on Redis: BRK.B is among the tickers of some tests.
        "sinks": {"redis": {"url": redis_url, "allowShareClasses": true}},
        "epoch": 1, "fingerprint": "test"
    })
}

fn write(path: &Path, v: &Value) {
    // Write then rename, as kubelet swaps a mounted ConfigMap atomically.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Worker {
    child: Child,
    port: u16,
}

impl Worker {
    fn start(config: &Path) -> Self {
        let port = free_port().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"))
            .args(["run", "--config"])
            .arg(config)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--reload-every",
                "100ms",
                "--grace",
                "5s",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child, port }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        quotestream_worker::install_crypto_provider();
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "worker did not exit within {WAIT:?} of SIGTERM"
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

async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Tickers seen on quotes.realtime until `want` shows up (or the wait ends).
async fn tickers_until(
    messages: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin),
    want: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.iter().any(|t| t == want) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(msg)) = tokio::time::timeout(left, messages.next()).await else {
            break;
        };
        let v: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
        seen.push(v["ticker"].as_str().unwrap().to_owned());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_serves_health_reloads_tickers_and_drains_on_sigterm() {
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.json");
    write(
        &path,
        &worker_config(&["AAPL", "MSFT", "BRK.B"], &redis.url()),
    );

    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("quotes.realtime").await.unwrap();
    let mut messages = pubsub.on_message();

    let mut worker = Worker::start(&path);
    let pid = worker.child.id();
    assert!(
        eventually(|| async { worker.get("/ready").await.is_some_and(|(s, _)| s == 200) }).await,
        "/ready never answered 200"
    );

    let seen = tickers_until(&mut messages, "BRK.B").await;
    assert!(
        seen.iter().any(|t| t == "BRK.B"),
        "quotes for the shard's tickers arrive: {seen:?}"
    );

    let (_, health) = worker.get("/health").await.unwrap();
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["shard"], 1);
    assert_eq!(health["active_tickers"], 3);
    assert!(health["last_fetch"].as_str().unwrap().ends_with('Z'));
    assert!(health["version"].is_string() && health["uptime_seconds"].is_u64());

    // A reshard hands this shard a new list: picked up by the same process.
    write(&path, &worker_config(&["AAPL", "NVDA"], &redis.url()));
    let seen = tickers_until(&mut messages, "NVDA").await;
    assert!(
        seen.iter().any(|t| t == "NVDA"),
        "the new ticker streams without a restart: {seen:?}"
    );
    assert_eq!(worker.child.id(), pid);
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "still the same process"
    );
    let (_, metrics) = worker.get("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("streamer_active_tickers{") && l.ends_with(" 2")),
        "{metrics}"
    );
    for name in [
        "streamer_quotes_fetched_total",
        "streamer_quotes_published_total",
        "redis_publishes_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }

    let status = worker.terminate();
    assert!(status.success(), "SIGTERM drains and exits 0, got {status}");
}

#[tokio::test]
async fn a_broken_configuration_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.json");
    let mut config = worker_config(&["AAPL"], "redis://127.0.0.1:1/0");
    config["interval"] = json!("soon");
    write(&path, &config);
    let out = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"))
        .args(["run", "--config"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interval") && stderr.contains("e.g. 500ms"),
        "{stderr}"
    );
}

/// Zero and overflowing durations, and out-of-range sizes, from the command line and from
/// worker.json: each exits 1 with a message naming the setting. A zero interval used to reach
/// `tokio::time::interval` and panic (exit 101 here, an abort with 134 in a release build).
#[tokio::test]
async fn bad_values_exit_1_naming_the_setting_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    write(&good, &worker_config(&["AAPL"], "redis://127.0.0.1:1/0"));
    let good = good.to_str().unwrap().to_owned();
    let mut cases: Vec<(Vec<String>, &str)> = [
        (
            vec!["local", "--interval", "0s", "--duration", "2s"],
            "--interval",
        ),
        (
            vec!["local", "--interval", "5000000h", "--duration", "2s"],
            "--interval",
        ),
        (vec!["local", "--duration", "0s"], "--duration"),
        (
            vec!["local", "--shards", "0", "--duration", "2s"],
            "--shards",
        ),
        (
            vec!["run", "--config", &good, "--reload-every", "0s"],
            "--reload-every",
        ),
        (vec!["run", "--config", &good, "--grace", "0s"], "--grace"),
        (vec!["run", "--config", &good, "--grace=-5s"], "--grace"),
    ]
    .into_iter()
    .map(|(args, field)| (args.into_iter().map(str::to_owned).collect(), field))
    .collect();
    for (i, (pointer, value, named)) in [
        ("/interval", json!("0s"), "interval"),
        ("/interval", json!("0ms"), "interval"),
        ("/interval", json!("5000000h"), "interval"),
        ("/requestsPerHour", json!(-1.0), "requestsPerHour"),
        ("/sinks", json!({"storage": {"url": "http://127.0.0.1:1", "batchSize": 0}}), "batchSize"),
        ("/sinks", json!({"storage": {"url": "http://127.0.0.1:1", "batchSize": -3}}), "batchSize"),
        ("/sinks", json!({"storage": {"url": "http://127.0.0.1:1", "batchSize": 99999999999i64}}), "batchSize"),
        ("/source", json!({"type": "yahoo", "yahoo": {"timeout": "0s"}}), "timeout"),
        ("/source", json!({"type": "polygon", "idleTimeout": "0s", "polygon": {"apiKeySecretRef": {"name": "k", "key": "k"}}}), "idleTimeout"),
        ("/source", json!({"type": "replay", "replay": {"configMapKeyRef": {"name": "r", "key": "k"}, "speedPercent": -100}}), "speedPercent"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = worker_config(&["AAPL"], "redis://127.0.0.1:1/0");
        *config.pointer_mut(pointer).unwrap() = value;
        let path = dir.path().join(format!("bad-{i}.json"));
        write(&path, &config);
        cases.push((
            vec!["run".into(), "--config".into(), path.to_str().unwrap().into()],
            named,
        ));
    }
    for (args, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"))
            .args(&args)
            .args(
                ["--listen", "127.0.0.1:0"]
                    .iter()
                    .filter(|_| args[0] == "run"),
            )
            .env("POLYGON_API_KEY", "test-key")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} must exit 1, got {:?}: {stderr}",
            out.status
        );
        assert!(
            stderr.contains(named),
            "{args:?}: {named} not named in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
