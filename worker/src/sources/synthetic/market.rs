//! The simulated market: one random walk per ticker.
//!
//! Prices follow a geometric Brownian motion at the configured volatility, rounded to cents;
//! the bid/ask spread is 1-5 basis points around the last trade (at least one cent), so
//! bid ≤ price ≤ ask; volume grows by a random lot each tick; open/high/low track the session.
//! Each ticker's generator is seeded from (seed, ticker) only, so a ticker follows the same
//! path whichever shard owns it.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use quotestream_api::Ticker;
use quotestream_api::sharding::hash;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::quote::RawQuote;

/// Seconds in a trading year (252 sessions of 6.5 hours): the time unit of the volatility.
const TRADING_YEAR_SECS: f64 = 252.0 * 6.5 * 3600.0;

#[derive(Debug)]
struct Walk {
    rng: ChaCha8Rng,
    price: f64,
    open: f64,
    high: f64,
    low: f64,
    volume: u64,
}

impl Walk {
    fn new(seed: u64, ticker: &Ticker) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ hash::key(ticker.as_str()));
        // Listed prices span a few dollars to a few thousand: log-uniform in [10, 1000].
        let price = cents(10f64.powf(1.0 + 2.0 * rng.random::<f64>()));
        let volume = rng.random_range(100_000..5_000_000);
        Self {
            rng,
            price,
            open: price,
            high: price,
            low: price,
            volume,
        }
    }

    fn step(&mut self, dt_secs: f64, volatility: f64) {
        let dt = dt_secs / TRADING_YEAR_SECS;
        let z = standard_normal(&mut self.rng);
        let next =
            self.price * ((-0.5 * volatility * volatility) * dt + volatility * dt.sqrt() * z).exp();
        self.price = cents(next).max(0.01);
        self.high = self.high.max(self.price);
        self.low = self.low.min(self.price);
        self.volume += self.rng.random_range(1..=50u64) * 100;
    }

    fn quote(&mut self, ticker: &Ticker, at: Timestamp) -> RawQuote {
        let half_spread = (self.price * self.rng.random_range(0.0001..0.0005)).max(0.01);
        RawQuote {
            ticker: ticker.to_string(),
            timestamp: at,
            price: self.price,
            volume: self.volume as f64,
            bid: Some(cents(self.price - half_spread).max(0.01).min(self.price)),
            ask: Some(cents(self.price + half_spread).max(self.price)),
            open: Some(self.open),
            high: Some(self.high),
            low: Some(self.low),
            source: "synthetic",
        }
    }
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Box-Muller: one standard normal draw from two uniforms.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// All walks of a shard, created on first use of a ticker.
#[derive(Debug)]
pub struct Market {
    seed: u64,
    volatility: f64,
    walks: HashMap<Ticker, Walk>,
}

impl Market {
    pub fn new(seed: u64, volatility: f64) -> Self {
        Self {
            seed,
            volatility,
            walks: HashMap::new(),
        }
    }

    /// Advances every ticker by `dt` and returns one quote each, stamped `at`.
    pub fn tick<'a>(
        &mut self,
        tickers: impl IntoIterator<Item = &'a Ticker>,
        dt: Duration,
        at: Timestamp,
    ) -> Vec<RawQuote> {
        let (seed, vol) = (self.seed, self.volatility);
        tickers
            .into_iter()
            .map(|t| {
                let walk = self
                    .walks
                    .entry(t.clone())
                    .or_insert_with(|| Walk::new(seed, t));
                walk.step(dt.as_secs_f64(), vol);
                walk.quote(t, at)
            })
            .collect()
    }

    /// Forgets tickers the shard no longer owns.
    pub fn retain(&mut self, owned: impl Fn(&Ticker) -> bool) {
        self.walks.retain(|t, _| owned(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::validate;
    use proptest::prelude::*;

    fn tickers(names: &[&str]) -> Vec<Ticker> {
        names.iter().map(|n| Ticker::parse(n).unwrap()).collect()
    }

    #[test]
    fn same_seed_same_path_whatever_else_is_in_the_shard() {
        let at = Timestamp::now();
        let dt = Duration::from_secs(1);
        let mut alone = Market::new(7, 0.3);
        let mut crowd = Market::new(7, 0.3);
        let a = tickers(&["AAPL"]);
        let many = tickers(&["MSFT", "AAPL", "NVDA"]);
        for _ in 0..50 {
            let x = alone.tick(&a, dt, at);
            let y = crowd.tick(&many, dt, at);
            assert_eq!(x[0], y[1]);
        }
    }

    proptest! {
        #[test]
        fn every_quote_is_valid_and_volume_only_grows(seed in any::<u64>(), steps in 1usize..200, vol in 0.0f64..3.0) {
            let at = Timestamp::now();
            let t = tickers(&["AAPL", "BRK.B"]);
            let mut m = Market::new(seed, vol);
            let mut last_volume = [0f64; 2];
            for _ in 0..steps {
                for (i, q) in m.tick(&t, Duration::from_millis(500), at).into_iter().enumerate() {
                    prop_assert!(q.volume >= last_volume[i]);
                    last_volume[i] = q.volume;
                    prop_assert!(q.bid.unwrap() <= q.price && q.price <= q.ask.unwrap());
                    prop_assert!(validate(q, at).is_ok());
                }
            }
        }
    }
}
