//! The contract 004 `system.health` heartbeat.

use serde::Serialize;

use crate::process_stats::{CpuSampler, rss_mb};
use crate::quote::wire::WireTime;

/// The service name the contract gives the quote streamer (`^opa-[a-z-]+$`).
pub const SERVICE: &str = "opa-quotes-streamer";

#[derive(Debug, Serialize)]
pub struct Heartbeat {
    pub service: &'static str,
    pub timestamp: WireTime,
    pub status: &'static str,
    pub details: Details,
}

#[derive(Debug, Serialize)]
pub struct Details {
    pub uptime_seconds: u64,
    pub memory_mb: f64,
    pub cpu_percent: f64,
    pub shard: String,
}

impl Heartbeat {
    /// `degraded` when anything failed since the previous heartbeat, `healthy` otherwise.
    pub fn now(uptime_seconds: u64, degraded: bool, cpu: &mut CpuSampler, shard: String) -> Self {
        Self {
            service: SERVICE,
            timestamp: WireTime(jiff::Timestamp::now()),
            status: if degraded { "degraded" } else { "healthy" },
            details: Details {
                uptime_seconds,
                memory_mb: rss_mb().map_or(0.0, |mb| (mb * 10.0).round() / 10.0),
                cpu_percent: cpu.percent(),
                shard,
            },
        }
    }
}
