use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::process::{Guarded, find_program};
use crate::tls::TestCerts;
use crate::{Result, TestkitError, free_port, io_err, wait_until};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A throwaway `redis-server` on a free loopback port, without persistence.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Guarded,
    password: Option<String>,
    /// Certificate and key of a TLS-only server (`--port 0 --tls-port`).
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// More `redis-server` arguments (a replica's `--replicaof`, a cluster node's settings).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// Starts a server that requires AUTH with `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Result<Self> {
        Self::start_with(Some(password.to_owned()))
    }

    /// Starts a server that speaks only TLS (no plain port), with the server certificate of
    /// `certs` and no client certificates asked for: clients connect with `rediss://` and
    /// must trust [`TestCerts::ca`].
    pub fn start_tls_only(certs: &TestCerts) -> Result<Self> {
        Self::start_inner(None, Some(certs))
    }

    fn start_with(password: Option<String>) -> Result<Self> {
        Self::start_inner(password, None)
    }

    /// Starts a server with more `redis-server` arguments (e.g. `--replicaof`, or a cluster
    /// node's `--cluster-enabled yes`), in a directory of its own.
    pub fn start_with_args(extra: &[String]) -> Result<Self> {
        Self::start_full(None, None, extra.to_vec())
    }

    fn start_inner(password: Option<String>, certs: Option<&TestCerts>) -> Result<Self> {
        Self::start_full(password, certs, Vec::new())
    }

    fn start_full(
        password: Option<String>,
        certs: Option<&TestCerts>,
        extra: Vec<String>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("qs-redis-")
            .tempdir()
            .map_err(io_err("creating a temp dir for redis"))?;
        let tls = match certs {
            Some(c) => Some(c.install_server_files(dir.path())?),
            None => None,
        };
        let port = free_port().map_err(io_err("picking a free port"))?;
        let process = launch(port, dir.path(), password.as_deref(), tls.as_ref(), &extra)?;
        let mut server = Self {
            port,
            dir,
            process,
            password,
            tls,
            extra,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// The server's directory (a cluster node keeps its nodes.conf there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        !self.process.exited()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0` (with the password when the server has one), or
    /// `rediss://127.0.0.1:<port>/0` for a TLS-only server.
    pub fn url(&self) -> String {
        if self.tls.is_some() {
            return format!("rediss://127.0.0.1:{}/0", self.port);
        }
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Kills the server (an outage, as a crash would cause).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Freezes the server with SIGSTOP: connections stay open and nothing is answered (a hung
    /// server, not a closed one). [`RedisServer::resume`] thaws it; dropping a paused server
    /// kills it (SIGKILL works on a stopped process).
    pub fn pause(&self) -> Result<()> {
        self.signal("STOP")
    }

    /// Thaws a server [`RedisServer::pause`] froze (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        if self.process.signal(signal) {
            return Ok(());
        }
        Err(TestkitError::Failed {
            what: format!("kill -s {signal} redis-server"),
            detail: "the server is not running".into(),
        })
    }

    /// Starts the server again on the same port after [`RedisServer::stop`].
    pub fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = launch(
            self.port,
            self.dir.path(),
            self.password.as_deref(),
            self.tls.as_ref(),
            &self.extra,
        )?;
        self.wait_ready()
    }

    /// Sends one command in RESP and returns the raw reply (for assertions in tests).
    pub fn command(&self, args: &[&str]) -> Result<String> {
        let mut conn =
            TcpStream::connect(("127.0.0.1", self.port)).map_err(io_err("connecting to redis"))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io_err("setting a timeout"))?;
        let mut req = Vec::new();
        if let Some(p) = &self.password {
            req.extend(encode(&["AUTH", p]));
        }
        req.extend(encode(args));
        conn.write_all(&req).map_err(io_err("writing to redis"))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut reply = String::new();
        let expected_lines = if self.password.is_some() { 2 } else { 1 };
        while reply.matches("\r\n").count() < expected_lines {
            let n = conn.read(&mut buf).map_err(io_err("reading from redis"))?;
            if n == 0 {
                break;
            }
            reply.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if self.password.is_some() {
            reply = reply
                .split_once("\r\n")
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or_default();
        }
        Ok(reply)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let tls = self.tls.is_some();
        let ready = wait_until(READY_TIMEOUT, || {
            // A TLS-only server cannot be PINGed in plain text: it listens once it is ready.
            self.process.exited()
                || if tls {
                    TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                } else {
                    self.command(&["PING"])
                        .is_ok_and(|r| r.starts_with("+PONG"))
                }
        });
        if ready && !self.process.exited() {
            return Ok(());
        }
        Err(TestkitError::NotReady {
            what: format!("redis-server on port {}", self.port),
            seconds: READY_TIMEOUT.as_secs(),
            log: self.process.log_text(),
        })
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    out
}

fn launch(
    port: u16,
    dir: &std::path::Path,
    password: Option<&str>,
    tls: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    extra: &[String],
) -> Result<Guarded> {
    let program = find_program("redis-server", &[])?;
    let mut cmd = Command::new(program);
    match tls {
        None => cmd.args(["--port", &port.to_string()]),
        Some((cert, key)) => cmd
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .args(["--tls-auth-clients", "no"]),
    };
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args([
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ])
        .arg("--dir")
        .arg(dir);
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    cmd.args(extra);
    Guarded::spawn(cmd, &dir.join(format!("redis-{port}.log")))
}
