//! `quotestream-worker run` as a process, as the shard Deployment runs it: a worker.json, the
//! environment the Deployment fills from Secrets, the termination-message file; its log in a
//! file, its endpoints on a free port, stopped (SIGTERM, then SIGKILL) when dropped.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use quotestream_testkit::{Guarded, free_port};
use serde_json::Value;

pub struct WorkerProcess {
    process: Guarded,
    pub port: u16,
    termination_log: PathBuf,
    // Dropped last: holds worker.json, the log and the termination message.
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts `run` on `config` with `env` added to the environment.
    pub fn start(config: &Value, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(config, env, &[])
    }

    /// [`WorkerProcess::start`] with more `run` flags (`--schedule-clock …`).
    pub fn start_with_args(config: &Value, env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let termination_log = dir.path().join("termination-log");
        let port = free_port().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quotestream-worker"));
        cmd.args(["run", "--config"])
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--grace", "5s"])
            .arg("--termination-log")
            .arg(&termination_log)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let process =
            Guarded::spawn_with_stop(cmd, &dir.path().join("worker.log"), "TERM").unwrap();
        Self {
            process,
            port,
            termination_log,
            _dir: dir,
        }
    }

    /// The status and body of `GET path`, `None` while nothing answers.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        quotestream_worker::install_crypto_provider();
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    /// `/ready`'s status and JSON body.
    pub async fn ready(&self) -> Option<(u16, Value)> {
        let (status, body) = self.get("/ready").await?;
        Some((status, serde_json::from_str(&body).ok()?))
    }

    /// The sum of the `/metrics` samples of `name` that carry every label of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Some((_, text)) = self.get("/metrics").await else {
            return 0.0;
        };
        let prefix = format!("{name}{{");
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        text.lines()
            .filter(|l| l.starts_with(&prefix) && labels.iter().all(|kv| l.contains(kv.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The exit status once the process exits by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Everything the worker logged (stdout and stderr).
    pub fn log(&self) -> String {
        self.process.log_text()
    }

    /// What it wrote to its termination-message file (empty when nothing).
    pub fn termination_message(&self) -> String {
        std::fs::read_to_string(&self.termination_log).unwrap_or_default()
    }
}
