//! Massive's (formerly Polygon.io) stocks WebSocket (`wss://socket.massive.com/stocks`): the
//! server greets with `[{"ev":"status","status":"connected",..}]`, the client logs in with
//! `{"action":"auth","params":"KEY"}` (answered `auth_success`, or `auth_failed`,
//! `auth_timeout`, `max_connections` and a close), then subscribes
//! `{"action":"subscribe","params":"T.AAPL,Q.AAPL,AM.AAPL"}` (each param acknowledged with
//! `{"ev":"status","status":"success","message":"subscribed to: T.AAPL"}`). Events come as JSON
//! arrays mixing types, up to [`MAX_BATCH`] per frame: `T` trades, `Q` quotes, `AM` minute
//! aggregates, times in Unix milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{Sink, SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::{Journal, Market, Pacer, Peer, Script, Step, Tick, WsServer};
use crate::Result;

/// Events per frame at most when ticks are due faster than they can be sent one by one
/// (Massive batches busy periods the same way).
pub const MAX_BATCH: usize = 100;

/// What the account allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The only key accepted; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Logged-in connections at once; one more is refused with `max_connections`.
    pub max_connections: usize,
    /// A connection that has not sent its auth frame by then gets `auth_timeout` and a close.
    pub auth_timeout: Duration,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            api_key: None,
            // Massive's default: one connection per cluster.
            max_connections: 1,
            auth_timeout: Duration::from_secs(10),
        }
    }
}

/// The bad input the fake cycles through when asked (`Script::malformed_every`), each with the
/// reason the worker counts it under. `price` is counted by validation: the quote reaches it,
/// carrying the negative price; every other reason by the source itself.
pub const MALFORMED: &[&str] = &[
    "bad_json",
    "bad_json",
    "not_array",
    "unknown_event",
    "bad_field",
    "missing_field",
    "out_of_order",
    "bad_time",
    "price",
    "binary_frame",
];

/// One piece of bad input: a whole frame of its own, or events inside a normal batch.
enum Bad {
    Frame(Message),
    Events(Vec<String>),
}

fn bad_input(kind: usize, t: &Tick) -> Bad {
    let (sym, p, ms) = (&t.symbol, t.price, t.time_ms);
    let trade = |price: &str, time: &str| {
        format!(
            r#"{{"ev":"T","sym":"{sym}","i":"9","x":4,"p":{price},"s":100,"t":{time},"q":1,"z":3}}"#
        )
    };
    match kind % MALFORMED.len() {
        0 => Bad::Frame(Message::text(format!(
            r#"[{{"ev":"T","sym":"{sym}","i":"9","x":4,"p":{p},"s":1"#
        ))),
        // JSON has no NaN: the whole frame is unreadable.
        1 => Bad::Frame(Message::text(format!(
            "[{}]",
            trade("NaN", &ms.to_string())
        ))),
        2 => Bad::Frame(Message::text(
            r#"{"ev":"status","status":"connected","message":"Connected Successfully"}"#,
        )),
        // Limit up-limit down bands: a real channel this client never subscribes.
        3 => Bad::Events(vec![format!(
            r#"{{"ev":"LULD","T":"{sym}","h":{},"l":{},"i":[],"z":3,"t":{ms},"q":1}}"#,
            p * 1.05,
            p * 0.95
        )]),
        4 => Bad::Events(vec![trade(&format!("\"{p}\""), &ms.to_string())]),
        5 => Bad::Events(vec![format!(
            r#"{{"ev":"T","sym":"{sym}","i":"9","x":4,"s":100,"t":{ms},"q":1,"z":3}}"#
        )]),
        // A trade a minute older than the one just before it.
        6 => Bad::Events(vec![
            trade(&p.to_string(), &ms.to_string()),
            trade(&p.to_string(), &(ms - 60_000).to_string()),
        ]),
        7 => Bad::Events(vec![trade(&p.to_string(), "0")]),
        8 => Bad::Events(vec![trade(&(-p).to_string(), &ms.to_string())]),
        _ => Bad::Frame(Message::Binary(Bytes::from_static(&[0x93, 0x01, 0x02]))),
    }
}

/// A local Massive stocks server.
#[derive(Debug)]
pub struct PolygonServer {
    server: WsServer,
    journal: Journal,
}

struct Shared {
    script: Script,
    account: Account,
    journal: Journal,
    market: Market,
    logged_in: AtomicUsize,
}

impl PolygonServer {
    /// Starts on a free port (`port` 0) or the given one, with the default [`Account`].
    pub async fn start(script: Script, port: u16) -> Result<Self> {
        Self::start_with(script, Account::default(), port).await
    }

    pub async fn start_with(script: Script, account: Account, port: u16) -> Result<Self> {
        let journal = Journal::default();
        let shared = Arc::new(Shared {
            script,
            account,
            journal: journal.clone(),
            market: Market::default(),
            logged_in: AtomicUsize::new(0),
        });
        let server = WsServer::start(port, move |peer| serve(peer, shared.clone())).await?;
        Ok(Self { server, journal })
    }

    /// The URL for `spec.source.polygon.url`.
    pub fn url(&self) -> String {
        self.server.url("/stocks")
    }

    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Every frame clients sent.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }
}

/// `[{"ev":"status","status":..,"message":..}, ..]` (fields in Massive's order).
fn status_frame(statuses: &[(&str, &str)]) -> Message {
    let items: Vec<String> = statuses
        .iter()
        .map(|(status, message)| {
            format!(
                r#"{{"ev":"status","status":{},"message":{}}}"#,
                Value::from(*status),
                Value::from(*message)
            )
        })
        .collect();
    Message::text(format!("[{}]", items.join(",")))
}

/// A client request: `{"action":"auth"|"subscribe"|"unsubscribe","params":".."}`.
fn parse_request(text: &str) -> Option<(String, String)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let action = value.get("action")?.as_str()?.to_owned();
    let params = value.get("params")?.as_str()?.to_owned();
    Some((action, params))
}

/// Counts a logged-in connection for as long as it lives.
struct LoggedIn<'a>(&'a AtomicUsize);

impl Drop for LoggedIn<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per symbol, the channels subscribed (`T`, `Q`, `AM`, ...).
type Subscriptions = BTreeMap<String, BTreeSet<String>>;

async fn serve(peer: Peer, shared: Arc<Shared>) {
    let Shared {
        script,
        account,
        journal,
        market,
        logged_in,
    } = &*shared;
    let Peer { index, socket, .. } = peer;
    let (mut tx, mut rx) = socket.split();
    if tx
        .send(status_frame(&[("connected", "Connected Successfully")]))
        .await
        .is_err()
    {
        return;
    }
    let mut auth_deadline = std::pin::pin!(tokio::time::sleep(account.auth_timeout));
    let mut session: Option<LoggedIn<'_>> = None;
    let mut subscribed = Subscriptions::new();
    let mut pacer = Pacer::new(script.rate);
    let mut ticks: u64 = 0;
    let mut sequence: u64 = 0;
    loop {
        let streaming = session.is_some() && !subscribed.is_empty();
        tokio::select! {
            message = rx.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    journal.record(index, text.as_str());
                    let Some((action, params)) = parse_request(text.as_str()) else {
                        continue;
                    };
                    let reply = match action.as_str() {
                        "auth" if session.is_none() => {
                            let refused = script.reject_login
                                || params.is_empty()
                                || account.api_key.as_ref().is_some_and(|k| *k != params);
                            if refused {
                                let _ = tx.send(status_frame(&[("auth_failed", "authentication failed")])).await;
                                let _ = tx.close().await;
                                return;
                            }
                            if logged_in.fetch_add(1, Ordering::SeqCst) >= account.max_connections {
                                logged_in.fetch_sub(1, Ordering::SeqCst);
                                let _ = tx.send(status_frame(&[("max_connections", "Maximum number of websocket connections exceeded. You have reached the connection limit for your account. Please contact support to increase your limit.")])).await;
                                let _ = tx.close().await;
                                return;
                            }
                            session = Some(LoggedIn(logged_in));
                            status_frame(&[("auth_success", "authenticated")])
                        }
                        "subscribe" | "unsubscribe" if session.is_some() => {
                            acknowledge(&action, &params, &mut subscribed)
                        }
                        _ => continue,
                    };
                    if tx.send(reply).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            _ = &mut auth_deadline, if session.is_none() => {
                let _ = tx.send(status_frame(&[("auth_timeout", "no authentication received in time")])).await;
                let _ = tx.close().await;
                return;
            }
            due = pacer.due(1024), if streaming => {
                let symbols: Vec<(&String, &BTreeSet<String>)> = subscribed.iter().collect();
                let mut batch: Vec<String> = Vec::with_capacity(MAX_BATCH);
                for _ in 0..due {
                    let (symbol, channels) = symbols[(ticks as usize) % symbols.len()];
                    let round = ticks / symbols.len() as u64;
                    let step = script.step(index, ticks);
                    ticks += 1;
                    match step {
                        Step::GoSilent => {
                            let _ = send_batch(&mut tx, &mut batch).await;
                            // A silent connection reads nothing, so it would never notice the
                            // client leaving; it stops counting against the limit now, as a
                            // real server's dead-connection timeout would let it go.
                            drop(session.take());
                            return std::future::pending().await;
                        }
                        Step::Close => {
                            let _ = send_batch(&mut tx, &mut batch).await;
                            // Gone before the client can reconnect.
                            drop(session.take());
                            let _ = tx.close().await;
                            return;
                        }
                        Step::Malformed(k) => match bad_input(k as usize, &market.tick(symbol)) {
                            Bad::Events(events) => batch.extend(events),
                            Bad::Frame(frame) => {
                                if send_batch(&mut tx, &mut batch).await.is_err()
                                    || tx.feed(frame).await.is_err()
                                {
                                    return;
                                }
                            }
                        },
                        Step::Tick => {
                            sequence += 1;
                            if let Some(event) = event(&market.tick(symbol), channels, round, sequence) {
                                batch.push(event);
                            }
                        }
                    }
                    if batch.len() >= MAX_BATCH && send_batch(&mut tx, &mut batch).await.is_err() {
                        return;
                    }
                }
                if send_batch(&mut tx, &mut batch).await.is_err() || tx.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Applies a subscribe or unsubscribe and acknowledges each param.
fn acknowledge(action: &str, params: &str, subscribed: &mut Subscriptions) -> Message {
    let mut acks = Vec::new();
    for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((channel, symbol)) = param.split_once('.') else {
            continue;
        };
        if action == "subscribe" {
            subscribed
                .entry(symbol.to_owned())
                .or_default()
                .insert(channel.to_owned());
            acks.push(format!("subscribed to: {param}"));
        } else {
            if let Some(channels) = subscribed.get_mut(symbol) {
                channels.remove(channel);
                if channels.is_empty() {
                    subscribed.remove(symbol);
                }
            }
            acks.push(format!("unsubscribed to: {param}"));
        }
    }
    let acks: Vec<(&str, &str)> = acks.iter().map(|a| ("success", a.as_str())).collect();
    status_frame(&acks)
}

/// Sends the batched events as one frame (nothing when empty).
async fn send_batch<S>(tx: &mut S, batch: &mut Vec<String>) -> std::result::Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    if batch.is_empty() {
        return Ok(());
    }
    let frame = format!("[{}]", batch.join(","));
    batch.clear();
    tx.feed(Message::text(frame)).await
}

/// The event of one tick: mostly trades and quotes, a minute aggregate now and then, each
/// only for a channel the client subscribed.
fn event(t: &Tick, channels: &BTreeSet<String>, round: u64, sequence: u64) -> Option<String> {
    let kind = match round % 50 {
        1 => "AM",
        r if r % 2 == 0 => "T",
        _ => "Q",
    };
    if !channels.contains(kind) {
        return None;
    }
    let mut out = String::with_capacity(200);
    let (sym, ms) = (&t.symbol, t.time_ms);
    // Writing to a String cannot fail.
    let _ = match kind {
        "T" => write!(
            out,
            r#"{{"ev":"T","sym":"{sym}","i":"{sequence}","x":4,"p":{},"s":{},"c":[12,37],"t":{ms},"q":{sequence},"z":3}}"#,
            t.price, t.size
        ),
        "Q" => write!(
            out,
            r#"{{"ev":"Q","sym":"{sym}","bx":4,"bp":{},"bs":2,"ax":7,"ap":{},"as":3,"c":1,"i":[604],"t":{ms},"q":{sequence},"z":3}}"#,
            t.bid, t.ask
        ),
        _ => {
            // The minute that just ended.
            let end = ms - ms.rem_euclid(60_000);
            write!(
                out,
                r#"{{"ev":"AM","sym":"{sym}","v":{},"av":{},"op":{},"vw":{},"o":{},"c":{},"h":{},"l":{},"a":{},"z":100,"s":{},"e":{end},"otc":false}}"#,
                t.size * 40,
                t.day_volume,
                t.day_open,
                t.price,
                t.price,
                t.price,
                t.day_high,
                t.day_low,
                t.day_open,
                end - 60_000,
            )
        }
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_follow_the_params_and_every_param_is_acknowledged() {
        let mut subs = Subscriptions::new();
        let ack = acknowledge("subscribe", "T.AAPL,Q.AAPL,AM.BRK.B", &mut subs);
        assert_eq!(
            ack.to_text().unwrap(),
            r#"[{"ev":"status","status":"success","message":"subscribed to: T.AAPL"},{"ev":"status","status":"success","message":"subscribed to: Q.AAPL"},{"ev":"status","status":"success","message":"subscribed to: AM.BRK.B"}]"#
        );
        assert_eq!(subs["BRK.B"], BTreeSet::from(["AM".to_owned()]));
        acknowledge("unsubscribe", "T.AAPL,Q.AAPL", &mut subs);
        assert!(!subs.contains_key("AAPL"));
    }

    #[test]
    fn every_kind_of_bad_input_is_built() {
        let t = Market::default().tick("AAPL");
        for k in 0..MALFORMED.len() {
            match bad_input(k, &t) {
                Bad::Events(events) => {
                    for e in events {
                        serde_json::from_str::<Value>(&e).unwrap();
                    }
                }
                Bad::Frame(_) => {}
            }
        }
    }

    /// The next text frame's events.
    async fn next<S>(ws: &mut S) -> Vec<Value>
    where
        S: StreamExt<Item = std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        loop {
            if let Message::Text(text) = ws.next().await.unwrap().unwrap() {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    /// A client speaking the protocol by hand: greeting, auth, subscribe, then batched events.
    #[tokio::test]
    async fn a_high_rate_is_sent_in_batches_of_at_most_max_batch() {
        // Timers wake at most once a millisecond: at 200 000/s every wake-up owes more than a
        // full batch.
        let server = PolygonServer::start(Script::at_rate(200_000.0), 0)
            .await
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .unwrap();
        assert_eq!(next(&mut ws).await[0]["status"], "connected");
        ws.send(Message::text(r#"{"action":"auth","params":"k"}"#))
            .await
            .unwrap();
        assert_eq!(next(&mut ws).await[0]["status"], "auth_success");
        ws.send(Message::text(
            r#"{"action":"subscribe","params":"T.AAPL,Q.AAPL,AM.AAPL,T.MSFT,Q.MSFT"}"#,
        ))
        .await
        .unwrap();
        let acks = next(&mut ws).await;
        assert_eq!(acks.len(), 5);
        assert_eq!(acks[4]["message"], "subscribed to: Q.MSFT");
        let mut largest = 0;
        let mut kinds = BTreeSet::new();
        while largest < MAX_BATCH || kinds.len() < 3 {
            let events = next(&mut ws).await;
            assert!(events.len() <= MAX_BATCH);
            largest = largest.max(events.len());
            kinds.extend(events.iter().map(|e| e["ev"].as_str().unwrap().to_owned()));
        }
        assert_eq!(kinds, BTreeSet::from(["AM", "Q", "T"].map(String::from)));
    }
}
