//! `redis`: contract 004 Pub/Sub (see [`sink`]).

mod config;
mod heartbeat;
mod sink;

pub use config::RedisConfig;
pub use sink::{NAME, RedisSink};
