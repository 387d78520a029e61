//! Redis beyond one server, from the same Debian `redis-server` binary: a Sentinel set (a
//! master, a replica and three Sentinels) and a Cluster (three masters with a replica each).
//! Every process is on a free loopback port and is stopped when the launcher is dropped.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::process::{Guarded, find_program};
use crate::{RedisServer, Result, TestkitError, free_port, io_err, wait_until};

/// How long a set or a cluster may take to form (replication, Sentinels finding each other,
/// slots agreed).
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// What a test asks a node; `None` when it does not answer (yet).
fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    query_as(port, None, cmd)
}

/// What a test asks a node or a Sentinel, with AUTH when it has a password.
fn query_as<T: redis::FromRedisValue>(
    port: u16,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> Option<T> {
    let auth = password.map_or_else(String::new, |p| format!(":{p}@"));
    let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    cmd.query(&mut conn).ok()
}

fn not_formed(what: String, logs: String) -> TestkitError {
    TestkitError::NotReady {
        what,
        seconds: FORM_TIMEOUT.as_secs(),
        log: logs,
    }
}

/// A master with one replica, watched by three Sentinels (quorum 2) that declare the master
/// down after [`RedisSentinelSet::DOWN_AFTER`].
#[derive(Debug)]
pub struct RedisSentinelSet {
    /// `[master, replica]` as started; after a failover the replica is the master.
    pub nodes: Vec<RedisServer>,
    sentinels: Vec<(u16, Guarded)>,
    /// The Sentinels' own `requirepass`, if any.
    sentinel_password: Option<String>,
    _dir: tempfile::TempDir,
}

impl RedisSentinelSet {
    /// The name the Sentinels monitor the master under.
    pub const MASTER_NAME: &'static str = "quotes";
    /// `sentinel down-after-milliseconds`: how long the master may not answer before a
    /// Sentinel thinks it down (production sets are often 5-30 s; short here so tests are
    /// quick, the sink's behaviour is the same).
    pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

    /// Starts the set and waits until the Sentinels know the replica and each other (so a
    /// failover can be agreed).
    pub fn start() -> Result<Self> {
        Self::start_with_sentinel_password(None)
    }

    /// [`RedisSentinelSet::start`], with Sentinels that require `password` (`requirepass`,
    /// and `sentinel sentinel-pass` so that they can still talk to each other).
    pub fn start_with_sentinel_password(password: Option<&str>) -> Result<Self> {
        let master = RedisServer::start()?;
        let replica = RedisServer::start_with_args(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port().to_string(),
        ])?;
        let dir = tempfile::Builder::new()
            .prefix("qs-sentinel-")
            .tempdir()
            .map_err(io_err("creating a temp dir for the Sentinels"))?;
        let program = find_program("redis-server", &[])?;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port().map_err(io_err("picking a free port"))?;
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            // Sentinel rewrites its config file (what it learns), so each has its own.
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {name} {down}\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display(),
                name = Self::MASTER_NAME,
                master = master.port(),
                down = Self::DOWN_AFTER.as_millis(),
            );
            if let Some(p) = password {
                text.push_str(&format!("requirepass {p}\nsentinel sentinel-pass {p}\n"));
            }
            std::fs::write(&conf, text).map_err(io_err(format!("writing {}", conf.display())))?;
            let mut cmd = Command::new(&program);
            cmd.arg(&conf).arg("--sentinel");
            let log = dir.path().join(format!("sentinel-{i}.log"));
            sentinels.push((port, Guarded::spawn(cmd, &log)?));
        }
        let set = Self {
            nodes: vec![master, replica],
            sentinels,
            sentinel_password: password.map(str::to_owned),
            _dir: dir,
        };
        set.wait_formed()?;
        Ok(set)
    }

    /// The Sentinels' addresses, `127.0.0.1:<port>` each.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// The master's port as the first Sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(port, _)| {
            let addr: Option<(String, String)> = query_as(
                *port,
                self.sentinel_password.as_deref(),
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(Self::MASTER_NAME),
            );
            addr.and_then(|(_, p)| p.parse().ok())
        })
    }

    /// The node the Sentinels name master, if it is one of [`RedisSentinelSet::nodes`].
    pub fn master_index(&self) -> Option<usize> {
        let port = self.master_port()?;
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// Waits until every Sentinel names `port` the master and that node says it is one.
    pub fn wait_master(&self, port: u16, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let named = self.sentinels.iter().all(|(p, _)| {
                let addr: Option<(String, String)> = query_as(
                    *p,
                    self.sentinel_password.as_deref(),
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(Self::MASTER_NAME),
                );
                addr.is_some_and(|(_, mp)| mp == port.to_string())
            });
            named
                && query::<redis::Value>(port, &redis::cmd("ROLE")).is_some_and(|v| {
                    matches!(v, redis::Value::Array(items) if items.first().is_some_and(|r| matches!(r, redis::Value::BulkString(b) if b.as_slice() == b"master")))
                })
        })
    }

    fn wait_formed(&self) -> Result<()> {
        let ready = wait_until(FORM_TIMEOUT, || {
            self.sentinels.iter().all(|(port, _)| {
                let info: Option<HashMap<String, String>> = query_as(
                    *port,
                    self.sentinel_password.as_deref(),
                    redis::cmd("SENTINEL").arg("master").arg(Self::MASTER_NAME),
                );
                info.is_some_and(|m| {
                    m.get("num-slaves").map(String::as_str) == Some("1")
                        && m.get("num-other-sentinels").map(String::as_str) == Some("2")
                })
            }) && query::<String>(self.nodes[1].port(), redis::cmd("INFO").arg("replication"))
                .is_some_and(|i| i.contains("master_link_status:up"))
        });
        if ready {
            return Ok(());
        }
        Err(not_formed(
            "a Sentinel set (3 Sentinels knowing the replica and each other)".into(),
            self.logs(),
        ))
    }

    /// What the Sentinels logged (for a failure report).
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|(port, g)| format!("--- sentinel {port}\n{}", g.log_text()))
            .collect()
    }
}

/// A Redis Cluster of three masters with one replica each, formed by
/// `redis-cli --cluster create`; nodes declare a peer failed after
/// [`RedisClusterSet::NODE_TIMEOUT`].
#[derive(Debug)]
pub struct RedisClusterSet {
    pub nodes: Vec<RedisServer>,
}

impl RedisClusterSet {
    /// `cluster-node-timeout` (production often 5-15 s; short here so tests are quick).
    pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

    /// Starts six nodes, joins them (three masters, a replica each) and waits until every
    /// node reports `cluster_state:ok` and knows all six.
    pub fn start() -> Result<Self> {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            nodes.push(RedisServer::start_with_args(&[
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-node-timeout".into(),
                Self::NODE_TIMEOUT.as_millis().to_string(),
                // Each node has its own directory, so the default nodes.conf does not clash.
                "--cluster-config-file".into(),
                "nodes.conf".into(),
            ])?);
        }
        let cli = find_program("redis-cli", &[])?;
        let mut create = Command::new(cli);
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port()));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .output()
            .map_err(io_err("running redis-cli --cluster create"))?;
        if !out.status.success() {
            return Err(TestkitError::Failed {
                what: "redis-cli --cluster create".into(),
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        let cluster = Self { nodes };
        let formed = wait_until(FORM_TIMEOUT, || {
            cluster.nodes.iter().all(|n| {
                query::<String>(n.port(), redis::cmd("CLUSTER").arg("INFO")).is_some_and(|i| {
                    i.contains("cluster_state:ok") && i.contains("cluster_known_nodes:6")
                })
            }) && cluster.replicas_in_sync()
        });
        if !formed {
            return Err(not_formed(
                "a 3-master Redis Cluster".into(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
        Ok(cluster)
    }

    /// Every node lists three slot ranges, each with its master and a replica, and every
    /// replica's link to its master is up.
    fn replicas_in_sync(&self) -> bool {
        let listed = self.nodes.iter().all(|n| {
            query::<Vec<Vec<redis::Value>>>(n.port(), redis::cmd("CLUSTER").arg("SLOTS"))
                .is_some_and(|ranges| ranges.len() == 3 && ranges.iter().all(|r| r.len() >= 4))
        });
        listed
            && self.nodes.iter().all(|n| {
                query::<String>(n.port(), redis::cmd("INFO").arg("replication")).is_some_and(|i| {
                    i.contains("role:master") || i.contains("master_link_status:up")
                })
            })
    }

    /// Seed addresses, `127.0.0.1:<port>` each.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The shard serving `channel`'s slot as a live node sees it (`CLUSTER KEYSLOT`,
    /// `CLUSTER SLOTS`): the index in [`RedisClusterSet::nodes`] of its master, then of its
    /// replicas.
    pub fn shard_of(&mut self, channel: &str) -> Option<Vec<usize>> {
        let asked = (0..self.nodes.len()).find(|i| self.nodes[*i].running())?;
        let port = self.nodes[asked].port();
        let slot: i64 = query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(channel))?;
        // CLUSTER SLOTS: [[start, end, [ip, port, id], [replica ip, port, id]...], ...]
        let slots: Vec<Vec<redis::Value>> = query(port, redis::cmd("CLUSTER").arg("SLOTS"))?;
        let range = slots.iter().find(|range| {
            let bound = |i: usize| {
                range
                    .get(i)
                    .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
            };
            matches!((bound(0), bound(1)), (Some(a), Some(b)) if (a..=b).contains(&slot))
        })?;
        range
            .iter()
            .skip(2)
            .map(|node| {
                let node: Vec<redis::Value> = redis::from_redis_value(node.clone()).ok()?;
                let port = redis::from_redis_value::<u16>(node.get(1)?.clone()).ok()?;
                self.nodes.iter().position(|n| n.port() == port)
            })
            .collect()
    }

    /// Waits until every live node reports `cluster_state:ok` again (after a failover).
    pub fn wait_ok(&mut self, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.nodes.iter_mut().all(|n| {
                !n.running()
                    || query::<String>(n.port(), redis::cmd("CLUSTER").arg("INFO"))
                        .is_some_and(|i| i.contains("cluster_state:ok"))
            })
        })
    }
}
