//! The real `quotestream-store` (and `quotestream-worker`) processes for the store's tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test code

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use quotestream_testkit::{PostgresServer, free_port, http_get, spawn_logged, wait_until};
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(60);

/// A running store on a free port.
pub struct Store {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Store {
    /// Starts the store against `dsn` and waits until /ready answers 200.
    pub fn start(dsn: &str, extra: &[&str]) -> Self {
        Self::start_with_env(dsn, extra, &[])
    }

    /// [`Store::start`] with more environment variables ([`Store::spawn_with_env`]).
    pub fn start_with_env(dsn: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let store = Self::spawn_with_env(dsn, extra, env);
        let ready = wait_until(WAIT, || {
            store.exited() || http_get(store.port, "/ready").is_some_and(|(code, _)| code == 200)
        });
        assert!(
            ready && !store.exited(),
            "the store did not become ready; its log:\n{}",
            store.log_text()
        );
        store
    }

    /// Spawns the store without waiting.
    pub fn spawn(dsn: &str, extra: &[&str]) -> Self {
        Self::spawn_with_env(dsn, extra, &[])
    }

    /// [`Store::spawn`] with more environment variables (they win over the defaults, e.g.
    /// `RUST_LOG`).
    pub fn spawn_with_env(dsn: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("store.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quotestream-store"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("DATABASE_URL", dsn)
            .env("RUST_LOG", "info")
            .env("QUOTESTREAM_STORE_THREADS", "2")
            .envs(env.iter().copied());
        let child = spawn_logged(&mut cmd, &log).unwrap();
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn exited(&self) -> bool {
        // try_wait needs &mut; ask the kernel instead.
        !std::path::Path::new(&format!("/proc/{}", self.child.id())).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_exit(&mut self.child, WAIT)
    }

    /// A metric's value from /metrics (0 when absent).
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        metric(self.port, name_and_labels)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A value from a Prometheus text exposition on `port`: the sum over the series of that name
/// carrying every given label (`name{a="b"}`), 0 when there is none.
pub fn metric(port: u16, name_and_labels: &str) -> f64 {
    let Some((_, text)) = http_get(port, "/metrics") else {
        return 0.0;
    };
    let (name, labels) = match name_and_labels.split_once('{') {
        Some((n, l)) => (n, l.trim_end_matches('}')),
        None => (name_and_labels, ""),
    };
    let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let (n, rest) = match k.split_once('{') {
                Some((n, r)) => (n, r.trim_end_matches('}')),
                None => (k, ""),
            };
            let have: Vec<&str> = rest.split(',').collect();
            (n == name && wanted.iter().all(|w| have.contains(w)))
                .then(|| v.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A client (the process-wide crypto provider is needed by reqwest's rustls setup).
pub fn client() -> reqwest::Client {
    quotestream_runtime::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs `body` as JSON; returns (status, Retry-After, body as JSON or Null).
pub async fn post(
    client: &reqwest::Client,
    store: &Store,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = client
        .post(format!("{}/quotes/batch", store.url()))
        .header("Content-Type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.text().await.unwrap();
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// A database of its own on `pg`.
pub fn database(pg: &PostgresServer, name: &str) -> String {
    pg.create_database(name).unwrap()
}

pub fn count(pg: &PostgresServer, db: &str, sql: &str) -> u64 {
    pg.psql(db, sql).unwrap().parse().unwrap()
}

/// One contract quote.
pub fn quote(ticker: &str, ms: i64, close: f64, volume: u64) -> Value {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
    serde_json::json!({
        "ticker": ticker,
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "close": close,
        "volume": volume,
        "source": "synthetic",
    })
}

pub fn batch(quotes: Vec<Value>) -> String {
    serde_json::json!({ "quotes": quotes }).to_string()
}

/// The path of another binary of the workspace, built if missing (integration tests only get
/// `CARGO_BIN_EXE_` for their own package's binaries).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_owned();
    let path = profile_dir.join(name);
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", name, "--bin", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let ok = cmd.status().unwrap();
        assert!(ok.success(), "building {name}");
    }
    path
}
