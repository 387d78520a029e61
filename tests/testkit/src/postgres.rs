use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Guarded, find_program};
use crate::tls::TestCerts;
use crate::{Result, TestkitError, free_port, io_err, wait_until};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A throwaway PostgreSQL server on a free loopback port with trust authentication for the
/// `postgres` superuser. The cluster is copied from a template made by `initdb` once per machine,
/// so starting one costs a copy and a server start, not an initdb.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    process: Guarded,
    bin: PathBuf,
    durability: Durability,
    tls: Option<TlsOnly>,
    // Dropped last: the server must be gone before its data directory is removed.
    dir: tempfile::TempDir,
}

/// Whether the server may lose committed data on a crash in exchange for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync off: for tests.
    Fast,
    /// PostgreSQL's defaults (fsync on): for benchmarks that compare against the machine.
    Default,
}

impl PostgresServer {
    pub fn start() -> Result<Self> {
        Self::start_with(Durability::Fast)
    }

    pub fn start_with(durability: Durability) -> Result<Self> {
        Self::start_inner(durability, None)
    }

    /// A server that accepts only TLS connections (`ssl=on`, every TCP line of `pg_hba.conf`
    /// `hostssl`), with the server certificate of `certs`: a client that does not ask for TLS
    /// is refused ("no encryption").
    pub fn start_tls_only(certs: &TestCerts) -> Result<Self> {
        Self::start_inner(Durability::Fast, Some(certs))
    }

    fn start_inner(durability: Durability, certs: Option<&TestCerts>) -> Result<Self> {
        let bin = bin_dir()?;
        let owner = ServerUser::detect()?;
        let template = template(&bin, &owner)?;
        let dir = tempfile::Builder::new()
            .prefix("qs-postgres-")
            .tempdir()
            .map_err(io_err("creating a temp dir for postgres"))?;
        let data = dir.path().join("data");
        let copy = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&data)
            .status()
            .map_err(io_err("copying the PostgreSQL template cluster"))?;
        if !copy.success() {
            return Err(TestkitError::Failed {
                what: "cp -a of the template cluster".into(),
                detail: format!("{copy}"),
            });
        }
        owner.own(dir.path())?;
        let tls = match certs {
            Some(certs) => Some(TlsOnly::install(certs, dir.path(), &owner)?),
            None => None,
        };
        let port = free_port().map_err(io_err("picking a free port"))?;
        let process = launch(&bin, &owner, dir.path(), port, durability, tls.as_ref())?;
        let mut server = Self {
            port,
            process,
            bin,
            durability,
            tls,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: clients are disconnected, as in an outage or a restart
    /// by the operator). The data directory is kept for [`PostgresServer::restart`].
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port and data directory after
    /// [`PostgresServer::stop`] (committed data survives).
    pub fn restart(&mut self) -> Result<()> {
        self.process.kill();
        let owner = ServerUser::detect()?;
        self.process = launch(
            &self.bin,
            &owner,
            self.dir.path(),
            self.port,
            self.durability,
            self.tls.as_ref(),
        )?;
        self.wait_ready()
    }

    /// Connection string for `database` as the superuser.
    pub fn dsn(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database (each test takes its own) and returns its connection string.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.dsn(name))
    }

    /// Makes TCP logins of `role` check its password (SCRAM) instead of trusting them, as a
    /// production server does: a wrong password is then refused with 28P01. Other roles stay
    /// trusted.
    pub fn require_password(&self, role: &str) -> Result<()> {
        let hba = PathBuf::from(self.psql("postgres", "SHOW hba_file")?);
        let rules = std::fs::read_to_string(&hba).map_err(io_err("reading pg_hba.conf"))?;
        // The first matching line wins: this one goes before the trust lines.
        let rules = format!(
            "host all {role} 127.0.0.1/32 scram-sha-256\nhost all {role} ::1/128 scram-sha-256\n{rules}"
        );
        std::fs::write(&hba, rules).map_err(io_err("writing pg_hba.conf"))?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        // The postmaster rereads the file when it gets to the signal: wait until a login with
        // a wrong password is refused.
        let psql = find_program("psql", std::slice::from_ref(&self.bin))?;
        let refused = || {
            Command::new(&psql)
                .args(["-X", "-w", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", role, "-d", "postgres", "-c", "SELECT 1"])
                .env("PGPASSWORD", "not-the-password")
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stderr).contains("password authentication failed")
                })
        };
        if wait_until(READY_TIMEOUT, refused) {
            return Ok(());
        }
        Err(TestkitError::Failed {
            what: format!("requiring a password of {role}"),
            detail: "logins with a wrong password are still accepted after pg_reload_conf()".into(),
        })
    }

    /// Runs SQL with psql (unaligned, tuples only) and returns its output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let psql = find_program("psql", std::slice::from_ref(&self.bin))?;
        let out = Command::new(psql)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .map_err(io_err("running psql"))?;
        if !out.status.success() {
            return Err(TestkitError::Failed {
                what: format!("psql -c {sql:?}"),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let ready = wait_until(READY_TIMEOUT, || {
            self.process.exited() || self.psql("postgres", "SELECT 1").is_ok()
        });
        if ready && !self.process.exited() {
            return Ok(());
        }
        Err(TestkitError::NotReady {
            what: format!("postgres on port {}", self.port),
            seconds: READY_TIMEOUT.as_secs(),
            log: self.process.log_text(),
        })
    }
}

/// The files of a TLS-only server, in its own directory and owned by the server's user
/// (PostgreSQL refuses a key others can read).
#[derive(Debug)]
struct TlsOnly {
    cert: PathBuf,
    key: PathBuf,
    hba: PathBuf,
}

impl TlsOnly {
    fn install(certs: &TestCerts, dir: &Path, owner: &ServerUser) -> Result<Self> {
        let (cert, key) = certs.install_server_files(dir)?;
        let hba = dir.join("pg_hba.conf");
        // The Unix socket stays open for nobody but tests; every TCP client must use TLS.
        std::fs::write(
            &hba,
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .map_err(io_err("writing pg_hba.conf"))?;
        for f in [&cert, &key, &hba] {
            owner.own(f)?;
        }
        Ok(Self { cert, key, hba })
    }
}

/// Starts `postgres` on the cluster in `dir/data`.
fn launch(
    bin: &Path,
    owner: &ServerUser,
    dir: &Path,
    port: u16,
    durability: Durability,
    tls: Option<&TlsOnly>,
) -> Result<Guarded> {
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string()]);
    cmd.args([
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "max_connections=200",
    ]);
    cmd.arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()));
    if durability == Durability::Fast {
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    if let Some(tls) = tls {
        cmd.args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", tls.cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", tls.key.display()))
            .arg("-c")
            .arg(format!("hba_file={}", tls.hba.display()));
    }
    owner.apply(&mut cmd);
    // SIGINT is PostgreSQL's fast shutdown: it stops its backends and reaps them.
    Guarded::spawn_with_stop(cmd, &dir.join("postgres.log"), "INT")
}

/// The newest PostgreSQL server binaries Debian installed.
fn bin_dir() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").is_file());
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().ok_or_else(|| TestkitError::Missing {
        program: "postgresql (initdb)".into(),
    })
}

/// PostgreSQL refuses to run as root; as root the servers run as the `postgres` user.
#[derive(Debug)]
struct ServerUser(Option<(u32, u32)>);

impl ServerUser {
    fn detect() -> Result<Self> {
        let me = id(&["-u"])?;
        if me != 0 {
            return Ok(Self(None));
        }
        let uid = id(&["-u", "postgres"])?;
        let gid = id(&["-g", "postgres"])?;
        Ok(Self(Some((uid, gid))))
    }

    fn apply(&self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.0 {
            cmd.uid(uid).gid(gid);
        }
    }

    fn own(&self, path: &Path) -> Result<()> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        chown(path, Some(uid), Some(gid)).map_err(io_err(format!("chown {}", path.display())))
    }

    fn key(&self) -> String {
        match self.0 {
            Some((uid, _)) => uid.to_string(),
            None => id(&["-u"]).map(|u| u.to_string()).unwrap_or_default(),
        }
    }
}

fn id(args: &[&str]) -> Result<u32> {
    let out = Command::new("id")
        .args(args)
        .output()
        .map_err(io_err("running id"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| TestkitError::Failed {
            what: format!("id {}", args.join(" ")),
            detail: "no such user: install PostgreSQL with `make deps`".into(),
        })
}

/// An initdb'd cluster kept in the temp dir and copied for each server. Made atomically (a
/// rename), so test binaries running in parallel never see a half-made template.
fn template(bin: &Path, owner: &ServerUser) -> Result<PathBuf> {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|v| v.to_str())
        .unwrap_or("pg");
    let root = std::env::temp_dir();
    let path = root.join(format!("quotestream-pg-template-{version}-{}", owner.key()));
    if path.join("PG_VERSION").is_file() {
        return Ok(path);
    }
    let staging = tempfile::Builder::new()
        .prefix("quotestream-pg-staging-")
        .tempdir_in(&root)
        .map_err(io_err("creating a staging dir for initdb"))?;
    owner.own(staging.path())?;
    let data = staging.path().join("data");
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--locale=C",
    ]);
    owner.apply(&mut cmd);
    let out = cmd.output().map_err(io_err("running initdb"))?;
    if !out.status.success() {
        return Err(TestkitError::Failed {
            what: "initdb".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    // Another process may have won the race; its template is as good as ours.
    if std::fs::rename(&data, &path).is_err() && !path.join("PG_VERSION").is_file() {
        return Err(TestkitError::Failed {
            what: format!("moving the template cluster to {}", path.display()),
            detail: "rename failed".into(),
        });
    }
    Ok(path)
}
