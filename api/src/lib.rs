//! The quotestream API shared by the control plane (operator) and the data plane (worker):
//! the `QuoteStream` custom resource, ticker symbols, durations, the shard assignment, and the
//! rest of the operator ↔ worker contract (environment, paths, port: [`contract`]).
//!
//! It lives in its own small crate so that the worker can read the types the operator writes
//! without linking the Kubernetes client and controller runtime.

pub mod batch;
pub mod contract;
pub mod crd;
pub mod duration;
pub mod instrument;
pub mod market;
pub mod readiness;
pub mod sharding;
pub mod sink_failure;
pub mod source_hosts;
pub mod ticker;
pub mod worker_config;

pub use crd::{QuoteStream, QuoteStreamSpec, QuoteStreamStatus};
pub use instrument::{Instrument, Vendor};
pub use ticker::{Ticker, TickerSet};
pub use worker_config::WorkerConfig;
