//! Symbols Yahoo gave no quote for: unknown, delisted (`quoteType: "NONE"`), or a result without
//! price or time. Not a validation error (there is no quote to validate): each one is counted
//! in `streamer_errors_total{type="missing_quote"}` every cycle, and logged once until the
//! symbol has a quote again, so a stale ticker list shows in the logs without flooding them.

use std::collections::HashSet;
use std::sync::Mutex;

use quotestream_api::Ticker;

use crate::metrics::Metrics;

/// The `type` label of the count.
pub const ERROR_TYPE: &str = "missing_quote";

#[derive(Debug, Default)]
pub(super) struct MissingQuotes {
    logged: Mutex<HashSet<Ticker>>,
}

impl MissingQuotes {
    /// `ticker` got no quote this cycle, because `why`.
    pub fn report(&self, ticker: &Ticker, why: &dyn std::fmt::Display, metrics: &Metrics) {
        metrics.errors.with_label_values(&[ERROR_TYPE]).inc();
        let first = self
            .logged
            .lock()
            .map(|mut logged| logged.insert(ticker.clone()))
            .unwrap_or(true);
        if first {
            tracing::warn!(
                %ticker,
                yahoo_symbol = %super::symbol::to_yahoo(ticker),
                "yahoo has no quote for this ticker: {why} (logged once until it has one again)"
            );
        }
    }

    /// `ticker` had a quote: log again if it goes missing later.
    pub fn resolved(&self, ticker: &Ticker) {
        if let Ok(mut logged) = self.logged.lock()
            && logged.remove(ticker)
        {
            tracing::info!(%ticker, "yahoo has a quote for this ticker again");
        }
    }
}
