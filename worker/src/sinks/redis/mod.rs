//! `redis`: contract 004 Pub/Sub (see [`sink`]).

mod config;
mod heartbeat;
mod sink;

pub use config::{RedisConfig, redact};
pub use heartbeat::{Heartbeat, SERVICE};
pub use sink::RedisSink;
