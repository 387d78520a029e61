//! Helpers of the end-to-end tests: a kubelet that runs Deployments' pods as local processes,
//! and a recorder of the quotes published on Redis.

pub mod kubelet;
pub mod tape;
