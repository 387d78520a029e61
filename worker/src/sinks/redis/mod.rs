//! `redis`: contract 004 Pub/Sub (see [`sink`]).

mod config;
mod connection;
mod heartbeat;
mod sink;

pub use config::{RedisConfig, Target};
pub use sink::{NAME, RedisSink};
