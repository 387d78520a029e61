//! The objects the operator server-side-applies for a QuoteStream, built as pure functions of
//! (QuoteStream, resolved ticker set, previous assignment, operator settings):
//!
//! - [`applied`]: whether a desired object differs from the live one (unchanged: no write);
//! - [`plan`]: the assignment and each shard's `WorkerConfig` plus its rollout hash;
//! - [`configmap`] and [`deployment`]: the per-shard objects `<stream>-shard-<i>`;
//! - [`status`]: the QuoteStream status and its conditions;
//! - [`previous`]: the previous assignment, read back from the shard ConfigMaps;
//! - [`handover`]: the order of a reshard's writes (make before break), and
//!   [`acknowledgement`]: which pods confirm that a shard streams its new list;
//! - [`worker_failures`]: why workers cannot start, from their pods' termination messages.

pub mod acknowledgement;
pub mod applied;
pub mod conditions;
pub mod configmap;
pub mod deployment;
pub mod env;
pub mod handover;
pub mod meta;
pub mod plan;
pub mod pod;
pub mod previous;
pub mod queue_budget;
pub mod status;
pub mod worker_failures;

pub use plan::{OperatorSettings, PlanError, ShardPlan, StreamPlan};

#[cfg(test)]
pub(crate) mod fixtures;
