//! What every streaming source (`yahoo-stream`, `alpaca`, `polygon`) shares: one WebSocket per
//! worker shard, subscribed to exactly the shard's tickers.
//!
//! - **Subscriptions follow the assignment**: when the operator changes the shard's tickers,
//!   the open connection subscribes the added and unsubscribes the removed ones; it does not
//!   reconnect.
//! - **Reconnects** after any loss (closed, error, vendor error, login timeout) wait with
//!   jittered exponential backoff (0.5 s doubling to 30 s; reset once a connection stayed up
//!   30 s), then log in and subscribe again.
//! - **Silence** is detected: the client pings every third of `spec.source.idleTimeout` and a
//!   connection that delivers nothing at all, not even a pong, for the whole timeout is dropped
//!   and replaced. A quiet market is not silence (pongs still arrive).
//! - **Coalescing** (`spec.source.coalesce`): at most one quote per ticker per window, the
//!   newest; unset, every tick goes through.
//! - **Bad input** never stops the source: unusable messages are counted by reason in
//!   `streamer_source_malformed_total`, logged once a minute per reason, never published.
//!   Vendor errors are counted by code; those reconnecting cannot fix (bad credentials, plan
//!   limits) stop the worker with a message that names the setting to change.
//!
//! A vendor only provides its [`Protocol`]: URL, login and subscription frames, and a decoder.

pub mod book;
mod coalesce;
mod connection;
pub mod json;
mod protocol;
mod settings;
mod subscriptions;

use std::time::Instant;

use backon::BackoffBuilder;

pub use protocol::{Action, Decoded, Event, Frame, Malformed, Protocol, VendorError};
pub use settings::{WebsocketSettings, check_url};

use self::connection::{Carry, Ended};
use super::{Source, SourceContext, SourceError};

/// A streaming source: a vendor protocol run by the shared connection loop.
#[derive(Debug)]
pub struct WebsocketSource<P> {
    protocol: P,
    settings: WebsocketSettings,
}

impl<P: Protocol> WebsocketSource<P> {
    pub fn new(protocol: P, settings: WebsocketSettings) -> Self {
        Self { protocol, settings }
    }

    fn backoff(&self) -> impl Iterator<Item = std::time::Duration> + use<P> {
        crate::retry::backoff(self.settings.backoff_min, self.settings.backoff_max).build()
    }
}

impl<P: Protocol + std::fmt::Debug> Source for WebsocketSource<P> {
    async fn run(mut self, mut ctx: SourceContext) -> Result<(), SourceError> {
        let vendor = self.protocol.vendor();
        let mut carry = Carry::default();
        let mut backoff = self.backoff();
        loop {
            self.protocol.reset();
            let started = Instant::now();
            let ended =
                connection::run(&mut self.protocol, &self.settings, &mut ctx, &mut carry).await;
            ctx.metrics.source_connected.set(0);
            ctx.metrics.source_subscribed.set(0);
            // What was decoded before the connection ended is not lost with it.
            let mut left = std::mem::take(&mut carry.batch);
            left.extend(carry.coalescer.drain());
            if !ctx.deliver(left).await {
                return Ok(());
            }
            match ended {
                Ended::Stopped => return Ok(()),
                Ended::Fatal(error) => {
                    tracing::error!(vendor, %error, "the streaming source cannot work with this configuration");
                    return Err(error);
                }
                Ended::Lost { reason, detail } => {
                    ctx.metrics
                        .source_reconnects
                        .with_label_values(&[reason])
                        .inc();
                    if started.elapsed() >= self.settings.healthy_after {
                        backoff = self.backoff();
                    }
                    let wait = backoff.next().unwrap_or(self.settings.backoff_max);
                    tracing::warn!(vendor, reason, %detail, retry_in = ?wait, "connection lost; reconnecting");
                    tokio::select! {
                        biased;
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}
