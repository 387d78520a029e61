//! `quotestream-worker backfill`: history for stocks, indices and crypto, from a vendor's bar
//! API into the store's database (docs/history.md).
//!
//! ```text
//! quotestream-worker backfill --tickers AAPL,^GSPC,BTC-USD --from 2024-01-01 --to 2025-12-31 \
//!     --interval 1d --source yahoo [--base-url URL]          # DATABASE_URL from the environment
//! ```
//!
//! Parts: [`args`] (the command line), [`interval`], [`plan`] (windows per the vendor's
//! limits), [`sources`] (one folder per vendor), [`http`] (budget, retries, Retry-After),
//! [`clean`] (one rule from vendor bars to stored ones), [`run`] (fetch, store, checkpoint),
//! [`progress`]. Storage and checkpoints are `quotestream_db::history`, shared with the store
//! that serves the bars.

pub mod args;
pub mod clean;
pub mod http;
pub mod interval;
pub mod plan;
pub mod progress;
pub mod run;
pub mod sources;

pub use args::BackfillArgs;
pub use run::{Report, TickerReport};
