//! Yahoo Finance's live stream (`wss://streamer.finance.yahoo.com/?version=2`): no login; the
//! client sends `{"subscribe":[..]}` / `{"unsubscribe":[..]}`, the server sends
//! `{"type":"pricing","message":"<base64 PricingData>"}` for subscribed symbols.
//!
//! The `PricingData` encoder here is written independently of the worker's decoder (which is
//! generated from worker/proto/yahoo_pricing.proto), so a test that passes means both sides
//! agree on the field table, not merely that one struct round-trips.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::{Journal, Market, Peer, Script, Step, WsServer};
use crate::Result;

/// The fields of Yahoo's `PricingData` the fake fills (numbers from the reference table).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PricingData {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(float, tag = "2")]
    pub price: f32,
    #[prost(sint64, tag = "3")]
    pub time: i64,
    #[prost(string, tag = "4")]
    pub currency: String,
    #[prost(string, tag = "5")]
    pub exchange: String,
    #[prost(int32, tag = "6")]
    pub quote_type: i32,
    #[prost(int32, tag = "7")]
    pub market_hours: i32,
    #[prost(sint64, tag = "9")]
    pub day_volume: i64,
    #[prost(float, tag = "10")]
    pub day_high: f32,
    #[prost(float, tag = "11")]
    pub day_low: f32,
    #[prost(float, tag = "15")]
    pub open_price: f32,
    #[prost(sint64, tag = "22")]
    pub last_size: i64,
    #[prost(float, tag = "23")]
    pub bid: f32,
    #[prost(float, tag = "25")]
    pub ask: f32,
}

/// `quote_type` of an equity and `market_hours` of the regular session.
const EQUITY: i32 = 8;
const REGULAR: i32 = 1;

/// The wrapped frame of one message.
pub fn pricing_frame(data: &PricingData) -> String {
    let message = STANDARD.encode(data.encode_to_vec());
    format!(r#"{{"type":"pricing","message":"{message}"}}"#)
}

/// The bad input the fake cycles through when asked (`Script::malformed_every`): what a
/// decoder must survive, counted by the reason the worker gives it.
pub const MALFORMED: &[(&str, &str)] = &[
    ("bad_json", r#"{"type":"pricing","message":"#),
    (
        "bad_base64",
        r#"{"type":"pricing","message":"%%%not-base64%%%"}"#,
    ),
    ("bad_protobuf", r#"{"type":"pricing","message":"/////w=="}"#),
    ("unknown_type", r#"{"type":"heartbeat","message":""}"#),
];

/// A local Yahoo live-stream server.
#[derive(Debug)]
pub struct YahooStreamServer {
    server: WsServer,
    state: Arc<(Script, Journal, Market)>,
}

impl YahooStreamServer {
    /// Starts on a free port (`port` 0) or the given one.
    pub async fn start(script: Script, port: u16) -> Result<Self> {
        let market = if script.record_sends {
            Market::recording()
        } else {
            Market::default()
        };
        let state = Arc::new((script, Journal::default(), market));
        let shared = state.clone();
        let server = WsServer::start(port, move |peer| serve(peer, shared.clone())).await?;
        Ok(Self { server, state })
    }

    /// The URL for `spec.source.yahooStream.url`.
    pub fn url(&self) -> String {
        self.server.url("/?version=2")
    }

    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Every frame clients sent.
    pub fn journal(&self) -> &Journal {
        &self.state.1
    }

    /// The market behind the ticks (send times when the script records them).
    pub fn market(&self) -> &Market {
        &self.state.2
    }
}

/// What a client asked for in one frame.
fn parse_request(text: &str) -> Option<(bool, Vec<String>)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let (subscribe, list) = match (value.get("subscribe"), value.get("unsubscribe")) {
        (Some(list), _) => (true, list),
        (None, Some(list)) => (false, list),
        (None, None) => return None,
    };
    let symbols = list
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    Some((subscribe, symbols))
}

async fn serve(peer: Peer, state: Arc<(Script, Journal, Market)>) {
    let (script, journal, market) = &*state;
    let Peer { index, socket, .. } = peer;
    let (mut tx, mut rx) = socket.split();
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    let mut pacer = super::Pacer::new(script.rate);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            message = rx.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    journal.record(index, text.as_str());
                    match parse_request(text.as_str()) {
                        Some((true, symbols)) => subscribed.extend(symbols),
                        Some((false, symbols)) => {
                            for s in symbols {
                                subscribed.remove(&s);
                            }
                        }
                        None => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            due = pacer.due(1024), if !subscribed.is_empty() => {
                let symbols: Vec<&String> = subscribed.iter().collect();
                for _ in 0..due {
                    let frame = match script.step(index, ticks) {
                        Step::GoSilent => return std::future::pending().await,
                        Step::Close => {
                            let _ = tx.close().await;
                            return;
                        }
                        Step::Malformed(k) => MALFORMED[(k as usize) % MALFORMED.len()].1.to_owned(),
                        Step::Tick => {
                            let t = market.tick(symbols[(ticks as usize) % symbols.len()]);
                            pricing_frame(&PricingData {
                                id: t.symbol,
                                price: t.price as f32,
                                time: t.time_ms,
                                currency: "USD".into(),
                                exchange: "NMS".into(),
                                quote_type: EQUITY,
                                market_hours: REGULAR,
                                day_volume: t.day_volume as i64,
                                day_high: t.day_high as f32,
                                day_low: t.day_low as f32,
                                open_price: t.day_open as f32,
                                last_size: t.size as i64,
                                bid: t.bid as f32,
                                ask: t.ask as f32,
                            })
                        }
                    };
                    ticks += 1;
                    if tx.feed(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
