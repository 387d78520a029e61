//! `console`: keeps what a person watching `make run` wants to see — quotes per shard, the
//! latest prices, how old quotes are when they reach the sinks. Not durable: it never holds
//! the pipeline back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use quotestream_api::Ticker;

use crate::queue::QueueReceiver;
use crate::sinks::{Sink, SinkContext, SinkError};

/// Label of this sink in metrics and logs.
pub const NAME: &str = "console";

/// What the console shows for one shard.
#[derive(Debug, Default, Clone)]
pub struct ConsoleStats {
    pub quotes: u64,
    /// Last price and the first price seen, per ticker.
    pub prices: BTreeMap<Ticker, (f64, f64)>,
    /// Milliseconds from a quote's timestamp to its arrival here (last batch).
    pub age_ms: f64,
}

/// Shared view of a shard's [`ConsoleStats`].
#[derive(Debug, Default, Clone)]
pub struct ConsoleView(Arc<Mutex<ConsoleStats>>);

impl ConsoleView {
    pub fn snapshot(&self) -> ConsoleStats {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct ConsoleSink {
    view: ConsoleView,
}

impl ConsoleSink {
    pub fn new(view: ConsoleView) -> Self {
        Self { view }
    }
}

impl Sink for ConsoleSink {
    const NAME: &'static str = NAME;

    fn durable(&self) -> bool {
        false
    }

    async fn run(self, mut queue: QueueReceiver, ctx: SinkContext) -> Result<(), SinkError> {
        let published = ctx.metrics.quotes_published.with_label_values(&[NAME]);
        while let Some(batch) = queue.recv().await {
            let now = Timestamp::now();
            let Ok(mut stats) = self.view.0.lock() else {
                continue;
            };
            stats.quotes += batch.len() as u64;
            for q in batch.iter() {
                let entry = stats
                    .prices
                    .entry(q.ticker.clone())
                    .or_insert((q.price, q.price));
                entry.0 = q.price;
            }
            if let Some(q) = batch.last() {
                stats.age_ms = now.duration_since(q.timestamp).as_secs_f64() * 1000.0;
            }
            published.inc_by(batch.len() as u64);
        }
        Ok(())
    }
}
