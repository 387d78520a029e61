//! The storage sink (seed contract 001): POST /quotes/batch with INV-001..007, a circuit
//! breaker, jittered retries and back-pressure instead of dropping on outages.
//!
//! - `config`: settings from `spec.sinks.storage` (or `STORAGE_URL`) and the timings.
//! - `breaker`: the circuit breaker, pure logic with the clock passed in.
//! - `client`: one POST and the classification of its answer.
//! - `sink`: the loop implementing [`crate::sinks::Sink`] on the sink core (`crate::sinks::util`).

mod breaker;
mod client;
mod config;
mod sink;

pub use config::{StorageConfig, StorageConfigError};
pub use sink::{NAME, StorageSink};
