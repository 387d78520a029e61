//! Settings of the synthetic source (`spec.source.synthetic`).

use quotestream_api::crd::SyntheticSource;

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

impl SyntheticConfig {
    pub fn from_spec(spec: Option<&SyntheticSource>) -> Self {
        let d = Self::default();
        let Some(s) = spec else { return d };
        Self {
            seed: s.seed.map_or(d.seed, |v| v as u64),
            market_hours: s.market_hours.unwrap_or(d.market_hours),
            volatility: s
                .volatility_percent
                .map_or(d.volatility, |p| f64::from(p) / 100.0),
        }
    }
}
