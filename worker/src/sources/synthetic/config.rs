//! Settings of the synthetic source (`spec.source.synthetic`).

use std::collections::HashMap;

use quotestream_api::crd::Source as SourceSpec;
use quotestream_api::crd::SyntheticSource;

use crate::sources::{AnySource, ConfigError, Connector, SourceError};

#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Seed of the random walk: the same seed gives every ticker the same path.
    pub seed: u64,
    /// Only quote during US regular trading hours (9:30-16:00 America/New_York, Mon-Fri).
    pub market_hours: bool,
    /// Annualised volatility as a fraction (0.30 = 30%).
    pub volatility: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            market_hours: false,
            volatility: 0.30,
        }
    }
}

impl Connector for SyntheticConfig {
    const NAME: &'static str = super::NAME;
    type Spec = SyntheticSource;

    fn spec(source: &SourceSpec) -> Option<&SyntheticSource> {
        source.synthetic.as_ref()
    }

    /// Reads `spec.source.synthetic` (absent: the defaults); nothing comes from `env`.
    fn from_spec(
        spec: Option<&SyntheticSource>,
        _env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let d = Self::default();
        let Some(s) = spec else { return Ok(d) };
        // The CRD bounds it; a hand-written worker.json is checked here.
        if let Some(p) = s.volatility_percent.filter(|p| !(0..=500).contains(p)) {
            return Err(ConfigError::Invalid {
                field: "spec.source.synthetic.volatilityPercent",
                value: p.to_string(),
                fix: "use 0 to 500 (annualised, default 30)".into(),
            });
        }
        Ok(Self {
            seed: s.seed.map_or(d.seed, |v| v as u64),
            market_hours: s.market_hours.unwrap_or(d.market_hours),
            volatility: s
                .volatility_percent
                .map_or(d.volatility, |p| f64::from(p) / 100.0),
        })
    }

    fn build(self, _source: &SourceSpec) -> Result<AnySource, SourceError> {
        Ok(AnySource::Synthetic(super::SyntheticSource::new(self)))
    }
}
