//! `spec.schedule`: stream only while the exchange trades.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Trading hours of the stream (docs/operator.md, "Trading hours"). Outside the window polling
/// sources make no requests and streaming sources disconnect; the shards stay up and ready and
/// keep sending heartbeats. Without a schedule the stream streams around the clock (crypto,
/// the synthetic and replay sources).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// The exchange calendar: NYSE or NASDAQ (both keep the same sessions, holidays and early
    /// closes). Sessions are in New York time, daylight saving included.
    pub calendar: ExchangeCalendar,
    /// Also stream the pre-market session, 04:00–09:30 New York time.
    #[serde(default)]
    pub pre_market: bool,
    /// Also stream the post-market session, the four hours after the close (16:00–20:00, or
    /// 13:00–17:00 on an early close).
    #[serde(default)]
    pub post_market: bool,
}

/// An exchange whose trading days and hours quotestream knows.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeCalendar {
    #[serde(rename = "NYSE")]
    Nyse,
    #[serde(rename = "NASDAQ")]
    Nasdaq,
}
