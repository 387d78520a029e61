//! Settings of the replay source (`spec.source.replay`).

use std::path::PathBuf;

use quotestream_api::crd::{ReplayFormat, ReplaySource};

/// Where the shard Deployment mounts the recording's ConfigMap (one file per key); the
/// `QUOTESTREAM_REPLAY_FILE` variable overrides the path (local runs, tests).
pub const REPLAY_DIR: &str = "/etc/quotestream/replay";
pub const REPLAY_FILE_ENV: &str = "QUOTESTREAM_REPLAY_FILE";

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    pub path: PathBuf,
    pub format: ReplayFormat,
    /// Playback speed relative to the recorded time (1.0 = real time); 0 = as fast as the
    /// sinks accept.
    pub speed: f64,
    pub looped: bool,
}

impl ReplayConfig {
    pub fn from_spec(spec: &ReplaySource, env_path: Option<String>) -> Self {
        let path = env_path
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(REPLAY_DIR).join(&spec.config_map_key_ref.key));
        Self {
            path,
            format: spec.format.unwrap_or(ReplayFormat::Ndjson),
            speed: f64::from(spec.speed_percent.unwrap_or(100)) / 100.0,
            looped: spec.looped.unwrap_or(false),
        }
    }
}
