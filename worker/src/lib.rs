//! The quotestream data plane: one worker process streams one shard of a QuoteStream from its
//! source, through validation, to its sinks.
//!
//! source ──mpsc (bounded)──► pipeline (validate, drop repeats) ──► one bounded queue per sink
//!
//! Durable sinks (storage, PostgreSQL) block the pipeline when they fall behind, which holds the
//! source back; Redis Pub/Sub drops its oldest batches instead and counts them.

pub mod accounting;
pub mod assembly;
pub mod backfill;
pub mod bounds;
pub mod buffer;
pub mod config_file;
pub mod footprint;
pub mod health;
pub mod local;
pub mod log_limit;
pub mod metrics;
pub mod pipeline;
pub mod process_stats;
pub mod queue;
pub mod quote;
pub mod rate_limit;
pub mod retry;
pub mod server;
pub mod sinks;
pub mod sources;

pub use quotestream_runtime::install_crypto_provider;
