//! The connection the sink publishes through, for each [`Target`]:
//!
//! - one server: the redis crate's `ConnectionManager` (reconnects to the same address);
//! - Sentinel: a multiplexed connection to the master the Sentinels name, found again through
//!   them whenever the connection fails, so the sink follows a failover;
//! - Cluster: the redis crate's async cluster connection, which follows the slot map (MOVED,
//!   failover) itself.
//!
//! None of them retries a publish that failed: the sink counts it as lost (Pub/Sub is best
//! effort) and the next pipeline goes to whatever the connection has found by then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ConnectionAddr, RedisError, RedisFuture, Value};

use super::config::{RedisConfig, Target};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Redis may take to answer (a hung server is given up after this).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait before asking the Sentinels again after a failed attempt; doubles up to
/// [`MAX_REDISCOVER_DELAY`]. Short: after a failover the sink should find the new master
/// within about a second.
const MIN_REDISCOVER_DELAY: Duration = Duration::from_millis(100);
const MAX_REDISCOVER_DELAY: Duration = Duration::from_secs(1);
/// How long asking the Sentinels and connecting to the master they name may take together.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(4);

/// One of the three ways to reach Redis; cheap to clone (all share the connection).
#[derive(Clone)]
pub enum Connection {
    Server(ConnectionManager),
    Sentinel(SentinelConnection),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Sets up the connection for `config` without connecting: the first command connects,
    /// so a Redis that is down at start is a counted loss, not a failed sink.
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        match &config.target {
            Target::Server { url } => {
                let client = config.client(url)?;
                let manager = ConnectionManagerConfig::new()
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(5))
                    .set_number_of_retries(3)
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                ConnectionManager::new_lazy_with_config(client, manager)
                    .map(Self::Server)
                    .map_err(|e| format!("Redis connection to {}: {e}", config.target.describe()))
            }
            Target::Sentinel {
                master_name,
                sentinels,
                tls,
                password,
                sentinel_password,
            } => {
                let addrs = sentinels.iter().map(|a| tcp_addr(a)).collect::<Vec<_>>();
                let mut builder =
                    SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)
                        .map_err(|e| format!("Sentinel {}: {e}", config.target.describe()))?;
                if *tls {
                    builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
                    if let Some(pem) = config.ca_pem()? {
                        builder =
                            builder.set_client_to_redis_certificates(redis::TlsCertificates {
                                client_tls: None,
                                root_cert: Some(pem),
                            });
                    }
                }
                if let Some(p) = password {
                    builder = builder.set_client_to_redis_password(p);
                }
                if let Some(p) = sentinel_password {
                    builder = builder.set_client_to_sentinel_password(p);
                }
                let client = builder
                    .build()
                    .map_err(|e| format!("Sentinel {}: {e}", config.target.describe()))?;
                Ok(Self::Sentinel(SentinelConnection::new(client)))
            }
            Target::Cluster {
                nodes,
                tls,
                password,
                ..
            } => {
                let scheme = if *tls { "rediss" } else { "redis" };
                let urls = nodes.iter().map(|n| format!("{scheme}://{n}"));
                let mut builder = ClusterClientBuilder::new(urls)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    // A few quick retries ride out a MOVED after failover; a pipeline that
                    // still fails is counted lost rather than held back.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500);
                if let Some(p) = password {
                    builder = builder.password(p);
                }
                if let Some(pem) = config.ca_pem()? {
                    builder = builder.certs(redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    });
                }
                let client = builder
                    .build()
                    .map_err(|e| format!("Redis {}: {e}", config.target.describe()))?;
                Ok(Self::Cluster(
                    client.get_pending_async_connection_with_config(
                        redis::cluster::ClusterConfig::new(),
                    ),
                ))
            }
        }
    }
}

/// `host:port` as a TCP address (validated by the config: the port parses).
fn tcp_addr(address: &str) -> ConnectionAddr {
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "26379"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ConnectionAddr::Tcp(host.to_owned(), port.parse().unwrap_or(26379))
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(c) => c.req_packed_commands(cmd, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection to the master the Sentinels name. A failed connection is dropped and the
/// Sentinels are asked again before the next command (at most every
/// [`MAX_REDISCOVER_DELAY`] while they name a master that cannot be reached), so after a
/// failover the sink publishes to the promoted replica.
///
/// Asking the Sentinels runs in a task of its own, and no lock is held across an `.await`: a
/// command future the sink has submitted but is not polling (it awaits a heartbeat meanwhile)
/// must not hold up the heartbeat's own command. An earlier version held an async mutex across
/// the discovery, and the sink deadlocked on its first heartbeat.
#[derive(Clone)]
pub struct SentinelConnection {
    state: Arc<std::sync::Mutex<Discovery>>,
    /// Only the discovery task uses it (one at a time), so this lock never waits on a command.
    sentinels: Arc<tokio::sync::Mutex<SentinelClient>>,
}

/// A connection to the master, with its generation.
type Found = Result<(u64, MultiplexedConnection), RedisError>;

struct Discovery {
    /// The connection to the current master and its generation (to drop only the one that
    /// failed, not a newer one another command found meanwhile).
    current: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    /// After a failed attempt: not before this instant, and the error to answer until then.
    retry: Option<(Instant, RedisError)>,
    delay: Duration,
    /// The discovery under way, which every command without a connection awaits.
    discovering: Option<Shared<BoxFuture<'static, Found>>>,
}

impl SentinelConnection {
    fn new(sentinels: SentinelClient) -> Self {
        Self {
            state: Arc::new(std::sync::Mutex::new(Discovery {
                current: None,
                generation: 0,
                retry: None,
                delay: MIN_REDISCOVER_DELAY,
                discovering: None,
            })),
            sentinels: Arc::new(tokio::sync::Mutex::new(sentinels)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Discovery> {
        // A panic elsewhere while holding it leaves plain data behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection to the master, found through the Sentinels when there is none.
    async fn master(&self) -> Found {
        let discovering = {
            let mut d = self.state();
            if let Some((generation, conn)) = &d.current {
                return Ok((*generation, conn.clone()));
            }
            if let Some((at, error)) = &d.retry
                && Instant::now() < *at
            {
                return Err(error.clone());
            }
            match &d.discovering {
                Some(under_way) => under_way.clone(),
                None => {
                    let started = self.discover().shared();
                    d.discovering = Some(started.clone());
                    started
                }
            }
        };
        discovering.await
    }

    /// Starts asking the Sentinels in a task of its own; its outcome is recorded in the state
    /// (the new connection, or when to try again) and handed to every command awaiting it.
    fn discover(&self) -> BoxFuture<'static, Found> {
        let state = self.clone();
        let task = tokio::spawn(async move {
            let connected = tokio::time::timeout(DISCOVERY_TIMEOUT, state.connect_to_master())
                .await
                .unwrap_or_else(|_| {
                    Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the Sentinels did not name a reachable master in time",
                    )))
                });
            let mut d = state.state();
            d.discovering = None;
            match connected {
                Ok(conn) => {
                    d.generation += 1;
                    let generation = d.generation;
                    d.current = Some((generation, conn.clone()));
                    d.retry = None;
                    d.delay = MIN_REDISCOVER_DELAY;
                    tracing::info!(
                        generation,
                        "connected to the Redis master the Sentinels name"
                    );
                    Ok((generation, conn))
                }
                Err(e) => {
                    d.retry = Some((Instant::now() + d.delay, e.clone()));
                    d.delay = (d.delay * 2).min(MAX_REDISCOVER_DELAY);
                    tracing::debug!(error = %e, "the Sentinels named no reachable master");
                    Err(e)
                }
            }
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(RedisError::from(std::io::Error::other(format!(
                    "asking the Sentinels failed: {e}"
                ))))
            })
        }
        .boxed()
    }

    /// Asks the Sentinels for the master and connects to it.
    async fn connect_to_master(&self) -> Result<MultiplexedConnection, RedisError> {
        let client = self.sentinels.lock().await.async_get_client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Drops the connection of `generation` when `error` says it is no use any more: gone,
    /// timed out, or talking to a node that is no longer the master.
    fn failed(&self, generation: u64, error: &RedisError) {
        let demoted = matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
        if !(demoted
            || error.is_unrecoverable_error()
            || error.is_connection_dropped()
            || error.is_io_error()
            || error.is_timeout())
        {
            return;
        }
        let mut d = self.state();
        if d.current.as_ref().is_some_and(|(g, _)| *g == generation) {
            d.current = None;
            tracing::info!(generation, %error, "connection to the Redis master lost: asking the Sentinels again");
        }
    }

    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.master().await?;
            let result = conn.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.failed(generation, e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.master().await?;
            let result = conn.req_packed_commands(cmd, offset, count).await;
            if let Err(e) = &result {
                self.failed(generation, e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
