//! Settings of the replay source (`spec.source.replay`).

use std::collections::HashMap;
use std::path::PathBuf;

use quotestream_api::contract::{self, REPLAY_DIR, env::REPLAY_FILE};
use quotestream_api::crd::Source as SourceSpec;
use quotestream_api::crd::{ReplayFormat, ReplaySource};

use crate::sources::{AnySource, ConfigError, Connector, SourceError};

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    pub path: PathBuf,
    pub format: ReplayFormat,
    /// Playback speed relative to the recorded time (1.0 = real time); 0 = as fast as the
    /// sinks accept.
    pub speed: f64,
    pub looped: bool,
}

impl Connector for ReplayConfig {
    const NAME: &'static str = super::NAME;
    type Spec = ReplaySource;

    fn spec(source: &SourceSpec) -> Option<&ReplaySource> {
        source.replay.as_ref()
    }

    /// The recording is where the shard Deployment mounts its ConfigMap
    /// (`<REPLAY_DIR>/<key>`), unless `QUOTESTREAM_REPLAY_FILE` names another file (local runs,
    /// tests).
    fn from_spec(
        spec: Option<&ReplaySource>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let spec = spec.ok_or(ConfigError::Missing {
            source_type: super::NAME,
            field: "spec.source.replay.configMapKeyRef",
            fix: "name the ConfigMap key holding the recording",
        })?;
        let path = contract::env_value(env, REPLAY_FILE)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(REPLAY_DIR).join(&spec.config_map_key_ref.key));
        let speed_percent = spec.speed_percent.unwrap_or(100);
        // The CRD bounds it; a hand-written worker.json is checked here.
        if !(0..=100_000).contains(&speed_percent) {
            return Err(ConfigError::Invalid {
                field: "spec.source.replay.speedPercent",
                value: speed_percent.to_string(),
                fix: "use 0 to 100000 (0 plays as fast as the sinks accept, 100 in real time)"
                    .into(),
            });
        }
        Ok(Self {
            path,
            format: spec.format.unwrap_or(ReplayFormat::Ndjson),
            speed: f64::from(speed_percent) / 100.0,
            looped: spec.looped.unwrap_or(false),
        })
    }

    fn build(self, _source: &SourceSpec) -> Result<AnySource, SourceError> {
        Ok(AnySource::Replay(super::ReplaySource::new(self)))
    }
}
