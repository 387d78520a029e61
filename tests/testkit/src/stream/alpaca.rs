//! Alpaca market data v2 (`wss://stream.data.alpaca.markets/v2/{feed}`), stocks: the server
//! greets with `[{"T":"success","msg":"connected"}]`, expects `{"action":"auth",..}` within
//! 10 s, then takes `{"action":"subscribe"|"unsubscribe","trades":[..],"quotes":[..],..}` and
//! acknowledges each with the whole current set. Data messages (`T` `t` trade, `q` quote, `d`
//! daily bar) are batched, up to [`BATCH`] per frame. Errors are `[{"T":"error","code":N,..}]`
//! with Alpaca's codes: 400 bad request, 401 not logged in, 402 bad credentials, 403 second
//! login, 404 login timeout, 405 symbol limit, 406 connection limit (one logged-in connection
//! per account and endpoint).
//!
//! The feed is the last path segment (`/v2/iex`, `/v2/sip`, `/v2/test`); on `test` only the
//! always-open symbol `FAKEPACA` trades, like Alpaca's test feed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::{Journal, Market, Peer, Script, Step, Tick, WsServer};
use crate::Result;

/// The credentials the fake accepts.
pub const KEY_ID: &str = "PKFAKEMARKET";
pub const SECRET_KEY: &str = "fake-market-secret";
/// The test feed's symbol.
pub const TEST_SYMBOL: &str = "FAKEPACA";
/// Data messages per frame at most (high rates fill frames like Alpaca does).
pub const BATCH: usize = 100;
/// The subscription channels of Alpaca's stocks stream, in the acknowledgement's order.
pub const CHANNELS: &[&str] = &[
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
];

/// Who counts a kind of bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountedBy {
    /// The connector drops it: `streamer_source_malformed_total{reason}`.
    Source,
    /// The connector passes it on and validation drops it: `streamer_validation_errors_total{reason}`.
    Validation,
}

/// The bad input the fake cycles through (`Script::malformed_every`), in order, by the reason
/// the worker counts it under.
pub const MALFORMED: &[(&str, CountedBy)] = &[
    ("bad_json", CountedBy::Source),
    ("unknown_type", CountedBy::Source),
    ("wrong_type", CountedBy::Source),
    ("missing_field", CountedBy::Source),
    ("bad_time", CountedBy::Source),
    ("non_finite", CountedBy::Source),
    ("price", CountedBy::Validation),
    ("out_of_order", CountedBy::Source),
];

/// A bad message: an item inside a batch, or a whole frame.
enum Bad {
    Item(String),
    Frame(String),
}

/// The `k`-th kind of bad input (see [`MALFORMED`]) about `tick`; `last_trade` is the previous
/// trade sent (an out-of-order trade must be older than one the client saw).
fn bad(k: usize, tick: &Tick, last_trade: Option<&(String, i128)>) -> Bad {
    let s = &tick.symbol;
    let t = rfc3339(tick.time_ns);
    match k % MALFORMED.len() {
        0 => Bad::Frame(format!(r#"[{{"T":"t","S":"{s}","i":1,"x":"V","p":"#)),
        1 => Bad::Item(format!(
            r#"{{"T":"news","S":"{s}","headline":"?","t":"{t}"}}"#
        )),
        2 => Bad::Item(format!(
            r#"{{"T":"t","S":"{s}","i":1,"x":"V","p":"{}","s":100,"t":"{t}","c":["@"],"z":"C"}}"#,
            tick.price
        )),
        3 => Bad::Item(format!(
            r#"{{"T":"t","S":"{s}","i":1,"x":"V","s":100,"t":"{t}","c":["@"],"z":"C"}}"#
        )),
        4 => Bad::Item(format!(
            r#"{{"T":"t","S":"{s}","i":1,"x":"V","p":{},"s":100,"t":"2026-13-45T25:61:00Z","c":["@"],"z":"C"}}"#,
            tick.price
        )),
        5 => Bad::Frame(format!(
            r#"[{{"T":"t","S":"{s}","i":1,"x":"V","p":NaN,"s":100,"t":"{t}","c":["@"],"z":"C"}}]"#
        )),
        6 => Bad::Item(trade(&Tick {
            price: -tick.price,
            ..tick.clone()
        })),
        _ => match last_trade {
            Some((symbol, time_ns)) => Bad::Item(trade(&Tick {
                symbol: symbol.clone(),
                time_ns: time_ns - 1_000_000_000,
                ..tick.clone()
            })),
            // Nothing traded yet that this could be older than.
            None => Bad::Item(format!(r#"{{"T":"news","S":"{s}","t":"{t}"}}"#)),
        },
    }
}

/// What the fake does besides speaking the protocol.
#[derive(Debug, Clone)]
pub struct AlpacaOptions {
    pub script: Script,
    /// Symbols a connection may subscribe for trades and quotes together (405 beyond; Alpaca's
    /// free IEX plan allows 30). `None`: no limit (a paid plan).
    pub symbol_limit: Option<usize>,
    /// Logged-in connections at once (406 beyond; Alpaca allows one).
    pub max_connections: usize,
    /// How long a connection that went silent (`Script::silent_after`) still counts against
    /// `max_connections`: Alpaca takes a while to notice a client that vanished.
    pub silent_linger: Duration,
    /// The first connection sends this error code after this many ticks (and closes, except
    /// for 400).
    pub error_after: Option<(u64, u16)>,
    /// Time allowed for the login (404 after).
    pub auth_timeout: Duration,
}

impl AlpacaOptions {
    pub fn new(script: Script) -> Self {
        Self {
            script,
            symbol_limit: None,
            max_connections: 1,
            silent_linger: Duration::ZERO,
            error_after: None,
            auth_timeout: Duration::from_secs(10),
        }
    }
}

/// The message of each error code, as Alpaca words it.
pub fn error_message(code: u16) -> &'static str {
    match code {
        400 => "invalid syntax",
        401 => "not authenticated",
        402 => "auth failed",
        403 => "already authenticated",
        404 => "auth timeout",
        405 => "symbol limit exceeded",
        406 => "connection limit exceeded",
        407 => "slow client",
        408 => "v2 not enabled",
        409 => "insufficient subscription",
        410 => "invalid subscribe action for this feed",
        411 => "insufficient scope",
        _ => "internal error",
    }
}

/// A local Alpaca market-data server.
#[derive(Debug)]
pub struct AlpacaServer {
    server: WsServer,
    journal: Journal,
    logged_in: Arc<AtomicUsize>,
}

struct Shared {
    options: AlpacaOptions,
    journal: Journal,
    market: Market,
    logged_in: Arc<AtomicUsize>,
}

impl AlpacaServer {
    /// Starts on a free port (`port` 0) or the given one.
    pub async fn start(options: AlpacaOptions, port: u16) -> Result<Self> {
        let journal = Journal::default();
        let logged_in = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            options,
            journal: journal.clone(),
            market: Market::default(),
            logged_in: logged_in.clone(),
        });
        let server = WsServer::start(port, move |peer| serve(peer, shared.clone())).await?;
        Ok(Self {
            server,
            journal,
            logged_in,
        })
    }

    /// The URL of a feed (`iex`, `sip`, `test`) for `spec.source.alpaca.url`.
    pub fn url(&self, feed: &str) -> String {
        self.server.url(&format!("/v2/{feed}"))
    }

    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Connections logged in now.
    pub fn logged_in(&self) -> usize {
        self.logged_in.load(Ordering::SeqCst)
    }

    /// Every frame clients sent.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }
}

/// A place among the logged-in connections, given back when the connection ends.
struct Slot(Option<Arc<AtomicUsize>>);

impl Slot {
    fn release(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

type Tx = SplitSink<WebSocketStream<TcpStream>, Message>;

fn error_frame(code: u16) -> String {
    json!([{"T": "error", "code": code, "msg": error_message(code)}]).to_string()
}

fn rfc3339(time_ns: i128) -> String {
    Timestamp::from_nanosecond(time_ns)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn trade(t: &Tick) -> String {
    format!(
        r#"{{"T":"t","S":"{}","i":{},"x":"V","p":{},"s":{},"t":"{}","c":["@"],"z":"C"}}"#,
        t.symbol,
        t.day_volume,
        t.price,
        t.size,
        rfc3339(t.time_ns)
    )
}

fn quote(t: &Tick) -> String {
    format!(
        r#"{{"T":"q","S":"{}","bx":"V","bp":{},"bs":2,"ax":"V","ap":{},"as":3,"c":["R"],"z":"C","t":"{}"}}"#,
        t.symbol,
        t.bid,
        t.ask,
        rfc3339(t.time_ns)
    )
}

/// The day's bar so far, stamped with the start of the day in New York like Alpaca's.
fn daily_bar(t: &Tick) -> String {
    let start = Timestamp::from_nanosecond(t.time_ns)
        .and_then(|now| now.in_tz("America/New_York"))
        .and_then(|zoned| zoned.start_of_day())
        .map(|midnight| midnight.timestamp().to_string())
        .unwrap_or_default();
    format!(
        r#"{{"T":"d","S":"{}","o":{},"h":{},"l":{},"c":{},"v":{},"t":"{start}","n":{},"vw":{}}}"#,
        t.symbol,
        t.day_open,
        t.day_high,
        t.day_low,
        t.price,
        t.day_volume,
        t.day_volume / 100,
        t.price
    )
}

/// One connection's subscriptions, by channel.
#[derive(Default)]
struct Subscriptions(BTreeMap<&'static str, BTreeSet<String>>);

impl Subscriptions {
    fn get(&self, channel: &str) -> Option<&BTreeSet<String>> {
        self.0.get(channel)
    }

    fn has(&self, channel: &str, symbol: &str) -> bool {
        self.get(channel).is_some_and(|s| s.contains(symbol))
    }

    /// What the subscription would be after `request`.
    fn after(&self, request: &Value, subscribe: bool) -> Self {
        let mut next = Self(self.0.clone());
        for channel in CHANNELS {
            let Some(list) = request.get(*channel).and_then(Value::as_array) else {
                continue;
            };
            let set = next.0.entry(channel).or_default();
            for symbol in list.iter().filter_map(Value::as_str) {
                if subscribe {
                    set.insert(symbol.to_owned());
                } else {
                    set.remove(symbol);
                }
            }
        }
        next
    }

    /// Symbols with trades or quotes: what the plan's symbol limit counts.
    fn live(&self) -> BTreeSet<String> {
        let mut live = self.get("trades").cloned().unwrap_or_default();
        live.extend(self.get("quotes").into_iter().flatten().cloned());
        live
    }

    /// `[{"T":"subscription",...}]`: the whole current set (cancels and corrections follow
    /// trades, as on Alpaca).
    fn ack(&self) -> String {
        let mut ack = serde_json::Map::new();
        ack.insert("T".into(), json!("subscription"));
        for channel in CHANNELS {
            let list: Vec<&String> = self.get(channel).into_iter().flatten().collect();
            ack.insert((*channel).into(), json!(list));
        }
        let trades = json!(self.get("trades").into_iter().flatten().collect::<Vec<_>>());
        ack.insert("corrections".into(), trades.clone());
        ack.insert("cancelErrors".into(), trades);
        Value::Array(vec![Value::Object(ack)]).to_string()
    }
}

/// The connection's state besides the socket.
struct Session<'a> {
    shared: &'a Shared,
    test_feed: bool,
    slot: Slot,
    subscriptions: Subscriptions,
    /// Symbols that trade (trades or quotes subscribed; only FAKEPACA on the test feed).
    streaming: Vec<String>,
    ticks: u64,
    last_trade: Option<(String, i128)>,
}

/// What a client frame asks the connection to do.
enum Reply {
    Frames(Vec<String>),
    /// Send these, then close.
    Close(Vec<String>),
}

impl Session<'_> {
    fn logged_in(&self) -> bool {
        self.slot.0.is_some()
    }

    fn request(&mut self, text: &str) -> Reply {
        let options = &self.shared.options;
        let Ok(request) = serde_json::from_str::<Value>(text) else {
            return Reply::Frames(vec![error_frame(400)]);
        };
        match request.get("action").and_then(Value::as_str) {
            Some("auth") => {
                if self.logged_in() {
                    return Reply::Frames(vec![error_frame(403)]);
                }
                let key = request.get("key").and_then(Value::as_str);
                let secret = request.get("secret").and_then(Value::as_str);
                if options.script.reject_login || key != Some(KEY_ID) || secret != Some(SECRET_KEY)
                {
                    return Reply::Frames(vec![error_frame(402)]);
                }
                let count = &self.shared.logged_in;
                if count.fetch_add(1, Ordering::SeqCst) >= options.max_connections {
                    count.fetch_sub(1, Ordering::SeqCst);
                    return Reply::Close(vec![error_frame(406)]);
                }
                self.slot = Slot(Some(count.clone()));
                Reply::Frames(vec![
                    json!([{"T": "success", "msg": "authenticated"}]).to_string(),
                ])
            }
            Some(action @ ("subscribe" | "unsubscribe")) => {
                if !self.logged_in() {
                    return Reply::Frames(vec![error_frame(401)]);
                }
                let next = self.subscriptions.after(&request, action == "subscribe");
                let live = next.live();
                if options.symbol_limit.is_some_and(|limit| live.len() > limit) {
                    return Reply::Frames(vec![error_frame(405)]);
                }
                self.streaming = live
                    .into_iter()
                    .filter(|s| !self.test_feed || s == TEST_SYMBOL)
                    .collect();
                self.subscriptions = next;
                Reply::Frames(vec![self.subscriptions.ack()])
            }
            _ => Reply::Frames(vec![error_frame(400)]),
        }
    }

    /// The data message of tick `n`: the symbols take turns; each gets a daily bar now and
    /// then (when subscribed), otherwise a trade, every third turn a quote update.
    fn data(&mut self, n: u64) -> String {
        let symbol = &self.streaming[(n as usize) % self.streaming.len()];
        let turn = n / self.streaming.len() as u64;
        let tick = self.shared.market.tick(symbol);
        let subs = &self.subscriptions;
        if turn % 50 == 49 && subs.has("dailyBars", symbol) {
            daily_bar(&tick)
        } else if (turn % 3 == 2 || !subs.has("trades", symbol)) && subs.has("quotes", symbol) {
            quote(&tick)
        } else {
            self.last_trade = Some((tick.symbol.clone(), tick.time_ns));
            trade(&tick)
        }
    }
}

async fn send(tx: &mut Tx, frames: Vec<String>) -> bool {
    for frame in frames {
        if tx.feed(Message::text(frame)).await.is_err() {
            return false;
        }
    }
    tx.flush().await.is_ok()
}

fn batch_frame(items: &mut Vec<String>) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let frame = format!("[{}]", items.join(","));
    items.clear();
    Some(frame)
}

async fn serve(peer: Peer, shared: Arc<Shared>) {
    let Peer {
        index,
        path,
        socket,
    } = peer;
    let options = &shared.options;
    let feed = path.rsplit('/').next().unwrap_or_default();
    let (mut tx, mut rx) = socket.split();
    if !["iex", "sip", "delayed_sip", "test"].contains(&feed) {
        // No such feed: nothing to greet with.
        let _ = tx.close().await;
        return;
    }
    let mut session = Session {
        shared: &shared,
        test_feed: feed == "test",
        slot: Slot(None),
        subscriptions: Subscriptions::default(),
        streaming: Vec::new(),
        ticks: 0,
        last_trade: None,
    };
    if !send(
        &mut tx,
        vec![json!([{"T": "success", "msg": "connected"}]).to_string()],
    )
    .await
    {
        return;
    }
    let login_deadline = Instant::now() + options.auth_timeout;
    let mut pacer = super::Pacer::new(options.script.rate);
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    loop {
        let streaming = session.logged_in() && !session.streaming.is_empty();
        tokio::select! {
            message = rx.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    shared.journal.record(index, text.as_str());
                    match session.request(text.as_str()) {
                        Reply::Frames(frames) => {
                            if !send(&mut tx, frames).await {
                                return;
                            }
                        }
                        Reply::Close(frames) => {
                            let _ = send(&mut tx, frames).await;
                            let _ = tx.close().await;
                            return;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            _ = tokio::time::sleep_until(login_deadline), if !session.logged_in() => {
                let _ = send(&mut tx, vec![error_frame(404)]).await;
                let _ = tx.close().await;
                return;
            }
            due = pacer.due(10 * BATCH as u64), if streaming => {
                let mut frames = Vec::new();
                for _ in 0..due {
                    let n = session.ticks;
                    session.ticks += 1;
                    if index == 0 && let Some((at, code)) = options.error_after && at == n {
                        frames.extend(batch_frame(&mut batch));
                        frames.push(error_frame(code));
                        if code != 400 {
                            session.slot.release();
                            let _ = send(&mut tx, frames).await;
                            let _ = tx.close().await;
                            return;
                        }
                        continue;
                    }
                    match options.script.step(index, n) {
                        Step::GoSilent => {
                            frames.extend(batch_frame(&mut batch));
                            let _ = send(&mut tx, frames).await;
                            tokio::time::sleep(options.silent_linger).await;
                            session.slot.release();
                            return std::future::pending().await;
                        }
                        Step::Close => {
                            frames.extend(batch_frame(&mut batch));
                            // Given back before the close is sent: a client that reconnects at
                            // once must find its place free.
                            session.slot.release();
                            let _ = send(&mut tx, frames).await;
                            let _ = tx.close().await;
                            return;
                        }
                        Step::Malformed(k) => {
                            let symbol = session.streaming[(n as usize) % session.streaming.len()].clone();
                            let tick = shared.market.tick(&symbol);
                            match bad(k as usize, &tick, session.last_trade.as_ref()) {
                                Bad::Item(item) => batch.push(item),
                                Bad::Frame(frame) => {
                                    frames.extend(batch_frame(&mut batch));
                                    frames.push(frame);
                                }
                            }
                        }
                        Step::Tick => batch.push(session.data(n)),
                    }
                    if batch.len() >= BATCH {
                        frames.extend(batch_frame(&mut batch));
                    }
                }
                frames.extend(batch_frame(&mut batch));
                if !send(&mut tx, frames).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tokio_tungstenite::MaybeTlsStream;

    use super::*;

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    async fn connect(server: &AlpacaServer, feed: &str) -> Client {
        let (client, _) = tokio_tungstenite::connect_async(server.url(feed))
            .await
            .unwrap();
        client
    }

    /// The next text frame as JSON, within 5 s.
    async fn next(client: &mut Client) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), client.next())
                .await
                .expect("a frame within 5s")
                .expect("the connection is open")
                .unwrap();
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    async fn say(client: &mut Client, value: Value) {
        client.send(Message::text(value.to_string())).await.unwrap();
    }

    async fn login(client: &mut Client) -> Value {
        assert_eq!(
            next(client).await,
            json!([{"T":"success","msg":"connected"}])
        );
        say(
            client,
            json!({"action":"auth","key":KEY_ID,"secret":SECRET_KEY}),
        )
        .await;
        next(client).await
    }

    fn code(reply: &Value) -> Option<i64> {
        reply[0]["code"].as_i64()
    }

    #[tokio::test]
    async fn speaks_the_login_flow_and_acknowledges_the_whole_set() {
        let server = AlpacaServer::start(AlpacaOptions::new(Script::default()), 0)
            .await
            .unwrap();
        let mut client = connect(&server, "iex").await;
        assert_eq!(next(&mut client).await[0]["msg"], "connected");
        say(&mut client, json!({"action":"subscribe","trades":["AAPL"]})).await;
        assert_eq!(code(&next(&mut client).await), Some(401));
        say(
            &mut client,
            json!({"action":"auth","key":KEY_ID,"secret":"wrong"}),
        )
        .await;
        assert_eq!(code(&next(&mut client).await), Some(402));
        say(
            &mut client,
            json!({"action":"auth","key":KEY_ID,"secret":SECRET_KEY}),
        )
        .await;
        assert_eq!(
            next(&mut client).await,
            json!([{"T":"success","msg":"authenticated"}])
        );
        say(
            &mut client,
            json!({"action":"auth","key":KEY_ID,"secret":SECRET_KEY}),
        )
        .await;
        assert_eq!(code(&next(&mut client).await), Some(403));
        say(
            &mut client,
            json!({"action":"subscribe","trades":["AAPL","MSFT"],"quotes":["AAPL"],"dailyBars":["AAPL"]}),
        )
        .await;
        say(
            &mut client,
            json!({"action":"unsubscribe","trades":["MSFT"]}),
        )
        .await;
        next(&mut client).await;
        let ack = next(&mut client).await;
        assert_eq!(ack[0]["T"], "subscription");
        assert_eq!(ack[0]["trades"], json!(["AAPL"]));
        assert_eq!(ack[0]["quotes"], json!(["AAPL"]));
        assert_eq!(ack[0]["dailyBars"], json!(["AAPL"]));
        assert_eq!(ack[0]["corrections"], json!(["AAPL"]));
        say(&mut client, json!({"action":"dance"})).await;
        assert_eq!(code(&next(&mut client).await), Some(400));
        assert_eq!(server.journal().frames().len(), 7);
    }

    #[tokio::test]
    async fn enforces_the_connection_and_symbol_limits() {
        let options = AlpacaOptions {
            symbol_limit: Some(2),
            ..AlpacaOptions::new(Script::default())
        };
        let server = AlpacaServer::start(options, 0).await.unwrap();
        let mut first = connect(&server, "iex").await;
        login(&mut first).await;
        let mut second = connect(&server, "iex").await;
        assert_eq!(code(&login(&mut second).await), Some(406));
        say(
            &mut first,
            json!({"action":"subscribe","trades":["A","B"],"quotes":["C"]}),
        )
        .await;
        assert_eq!(code(&next(&mut first).await), Some(405));
        drop(first);
        // Bounded: the server notices the closed socket promptly.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.logged_in() > 0 {
            assert!(
                Instant::now() < deadline,
                "the first connection's place was not freed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut third = connect(&server, "iex").await;
        assert_eq!(login(&mut third).await[0]["msg"], "authenticated");
    }

    #[tokio::test]
    async fn a_client_that_does_not_log_in_in_time_is_dropped() {
        let options = AlpacaOptions {
            auth_timeout: Duration::from_millis(100),
            ..AlpacaOptions::new(Script::default())
        };
        let server = AlpacaServer::start(options, 0).await.unwrap();
        let mut client = connect(&server, "iex").await;
        assert_eq!(next(&mut client).await[0]["msg"], "connected");
        assert_eq!(code(&next(&mut client).await), Some(404));
        let mut unknown = connect(&server, "nasdaq").await;
        let end = tokio::time::timeout(Duration::from_secs(5), unknown.next())
            .await
            .unwrap();
        assert!(
            matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
            "an unknown feed is closed: {end:?}"
        );
    }

    #[tokio::test]
    async fn the_test_feed_streams_fakepaca_only() {
        let server = AlpacaServer::start(AlpacaOptions::new(Script::at_rate(2000.0)), 0)
            .await
            .unwrap();
        let mut client = connect(&server, "test").await;
        login(&mut client).await;
        say(
            &mut client,
            json!({"action":"subscribe","trades":["AAPL", TEST_SYMBOL],"quotes":[TEST_SYMBOL]}),
        )
        .await;
        assert_eq!(next(&mut client).await[0]["T"], "subscription");
        for _ in 0..20 {
            for item in next(&mut client).await.as_array().unwrap() {
                assert_eq!(item["S"], TEST_SYMBOL);
                assert!(["t", "q"].contains(&item["T"].as_str().unwrap()));
            }
        }
    }

    #[tokio::test]
    async fn a_high_rate_is_sent_in_batches() {
        let server = AlpacaServer::start(AlpacaOptions::new(Script::at_rate(100_000.0)), 0)
            .await
            .unwrap();
        let mut client = connect(&server, "sip").await;
        login(&mut client).await;
        say(
            &mut client,
            json!({"action":"subscribe","trades":["AAPL","MSFT","NVDA"],"quotes":["AAPL","MSFT","NVDA"],"dailyBars":["AAPL"]}),
        )
        .await;
        next(&mut client).await;
        let (mut items, mut frames, mut kinds) = (0, 0, BTreeSet::new());
        while items < 20_000 {
            let frame = next(&mut client).await;
            let batch = frame.as_array().unwrap();
            assert!(batch.len() <= BATCH);
            kinds.extend(batch.iter().map(|i| i["T"].as_str().unwrap().to_owned()));
            items += batch.len();
            frames += 1;
        }
        assert!(frames < items / 2, "{items} items in {frames} frames");
        assert_eq!(kinds, ["d", "q", "t"].map(String::from).into());
    }

    #[test]
    fn every_bad_kind_is_what_the_table_says() {
        let tick = Market::default().tick("AAPL");
        let last = ("AAPL".to_owned(), tick.time_ns);
        for (k, (reason, _)) in MALFORMED.iter().enumerate() {
            let text = match bad(k, &tick, Some(&last)) {
                Bad::Item(item) => format!("[{item}]"),
                Bad::Frame(frame) => frame,
            };
            let parsed = serde_json::from_str::<Value>(&text);
            match *reason {
                "bad_json" | "non_finite" => assert!(parsed.is_err(), "{reason}: {text}"),
                _ => assert!(parsed.is_ok(), "{reason}: {text}"),
            }
        }
    }
}
