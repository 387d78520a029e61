//! The sink core every sink is written with (the role of Vector's `sinks/util`):
//!
//! - [`batch::gather`]: the one batching loop: wait for a batch, then linger for more up to a
//!   size;
//! - [`drain::Drain`]: the one shutdown path: once the worker's shutdown token fires (or the
//!   queue closes) every wait and write is cut off at the drain deadline, and what is left is
//!   counted as dropped with reason `shutdown` ([`drain::drop_at_shutdown`]);
//! - the retry backoff, [`crate::retry::backoff`] (shared with the sources).

pub mod batch;
pub mod drain;
