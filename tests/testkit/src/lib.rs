//! Real servers for tests, started on free loopback ports in temporary directories and stopped
//! when dropped (also when a test panics). Nothing here is a mock: these are the Debian
//! `redis-server` and PostgreSQL binaries that `scripts/ensure-deps.sh` installs, local servers
//! speaking the storage API's, Yahoo's and the streaming vendors' real protocols, and the test
//! inputs more than one crate reads (`crd_cases`).

pub mod controlplane;
pub mod crd_cases;
mod http;
mod metrics;
mod port;
mod postgres;
mod process;
mod redis;
mod redis_ha;
pub mod secrets;
pub mod storage;
pub mod stream;
mod tls;
pub mod vendor_bars;
mod wait;
pub mod yahoo;
pub mod yahoo_chart;

pub use controlplane::ControlPlane;
pub use crd_cases::{CrdCase, RejectedBy, crd_cases};
pub use http::http_get;
pub use metrics::metric_sum;
pub use port::free_port;
pub use postgres::{Durability, PostgresServer};
pub use process::{Guarded, spawn_logged};
pub use redis::RedisServer;
pub use redis_ha::{RedisClusterSet, RedisSentinelSet};
pub use storage::StorageReceiver;
pub use tls::TestCerts;
pub use wait::wait_until;

/// Why a test server could not be started. Messages say what to install or look at.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{program} not found: run `make deps` (scripts/ensure-deps.sh) to install it")]
    Missing { program: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {seconds}s; its log:\n{log}")]
    NotReady {
        what: String,
        seconds: u64,
        log: String,
    },
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
}

pub type Result<T> = std::result::Result<T, TestkitError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
    let what = what.into();
    move |source| TestkitError::Io { what, source }
}
