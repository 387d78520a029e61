//! Local WebSocket servers that speak the market-data vendors' streaming protocols, for tests,
//! benchmarks and `SOURCE=... make run`. Each vendor fake is a real WebSocket server on a free
//! loopback port; what differs is its protocol module. They share:
//!
//! - [`WsServer`]: the accept loop, one task per connection, stopped when dropped;
//! - [`Script`]: the behaviours tests ask for (normal flow, auth failure, a connection that
//!   goes silent or is closed mid-stream, malformed frames, a tick rate up to high-rate
//!   benchmarks);
//! - [`Journal`]: every client frame, by connection, for assertions;
//! - [`Pacer`]: a steady tick rate without drift;
//! - [`Market`]: deterministic prices per symbol.

pub mod alpaca;
pub mod polygon;
pub mod yahoo;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Duration, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::{Result, io_err};

/// One accepted connection: its number (from 0, in accept order), the path it asked for and
/// its socket.
#[derive(Debug)]
pub struct Peer {
    pub index: usize,
    pub path: String,
    pub socket: WebSocketStream<TcpStream>,
}

/// A WebSocket server on a free loopback port; each connection is handed to the serve function.
#[derive(Debug)]
pub struct WsServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl WsServer {
    /// Starts listening on 127.0.0.1 (port 0 picks a free one).
    pub async fn start<F, Fut>(port: u16, serve: F) -> Result<Self>
    where
        F: Fn(Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(io_err("binding a WebSocket test server to 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("reading the WebSocket test server's address"))?;
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the server is dropped and this task aborted) aborts every
            // connection task with it.
            let mut sessions = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let index = counter.fetch_add(1, Ordering::SeqCst);
                let serve_fn = &serve;
                let mut path = String::new();
                // The signature is tungstenite's handshake callback.
                #[allow(clippy::result_large_err)]
                let read_path = |request: &Request, response: Response| {
                    path = request.uri().path().to_owned();
                    Ok(response)
                };
                let Ok(socket) = tokio_tungstenite::accept_hdr_async(tcp, read_path).await else {
                    continue;
                };
                sessions.spawn(serve_fn(Peer {
                    index,
                    path,
                    socket,
                }));
                // Reap finished sessions so a long benchmark does not accumulate them.
                while sessions.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            connections,
            task,
        })
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a fake does, beyond speaking the protocol correctly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    /// Ticks per second, across all subscribed symbols (one data message each); 0 sends none.
    pub rate: f64,
    /// Refuse the login (vendors with a login).
    pub reject_login: bool,
    /// The first connection goes silent after this many ticks: it neither sends nor reads
    /// (so it answers no ping) until the client gives up on it.
    pub silent_after: Option<u64>,
    /// The server closes the first connection after this many ticks.
    pub close_after: Option<u64>,
    /// Every n-th tick is replaced by a malformed message (cycling through the vendor's kinds
    /// of bad input).
    pub malformed_every: Option<u64>,
    /// Remember when every tick was sent ([`Market::recording`]), for latency benchmarks.
    pub record_sends: bool,
}

impl Script {
    pub fn at_rate(rate: f64) -> Self {
        Self {
            rate,
            ..Self::default()
        }
    }
}

/// What the scripted connection should do with its next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Tick,
    Malformed(u64),
    GoSilent,
    Close,
}

impl Script {
    /// The step for tick number `n` (from 0) of connection `connection`.
    pub fn step(&self, connection: usize, n: u64) -> Step {
        if connection == 0 && self.silent_after == Some(n) {
            return Step::GoSilent;
        }
        if connection == 0 && self.close_after == Some(n) {
            return Step::Close;
        }
        match self.malformed_every {
            Some(every) if every > 0 && n % every == every - 1 => Step::Malformed(n / every),
            _ => Step::Tick,
        }
    }
}

/// A client frame a fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub connection: usize,
    pub text: String,
}

/// Every client frame, in arrival order, shared by a fake's connections.
#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<Received>>>);

impl Journal {
    pub fn record(&self, connection: usize, text: &str) {
        if let Ok(mut log) = self.0.lock() {
            log.push(Received {
                connection,
                text: text.to_owned(),
            });
        }
    }

    pub fn frames(&self) -> Vec<Received> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

/// Releases ticks at a steady rate: `due` waits until at least one is due and says how many,
/// so a high rate is sent in bursts per wake-up instead of one timer per message.
#[derive(Debug)]
pub struct Pacer {
    per_second: f64,
    started: Instant,
    released: u64,
}

impl Pacer {
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            started: Instant::now(),
            released: 0,
        }
    }

    /// Waits for the next tick; returns how many are due now (at most `max`).
    pub async fn due(&mut self, max: u64) -> u64 {
        if self.per_second <= 0.0 {
            return std::future::pending().await;
        }
        let next =
            self.started + Duration::from_secs_f64((self.released + 1) as f64 / self.per_second);
        tokio::time::sleep_until(next).await;
        let owed = (self.started.elapsed().as_secs_f64() * self.per_second) as u64;
        let n = owed.saturating_sub(self.released).clamp(1, max.max(1));
        self.released += n;
        n
    }
}

/// Deterministic prices: each symbol starts from a price derived from its name and moves a
/// little with every tick; the day volume only grows.
#[derive(Debug, Default)]
pub struct Market {
    ticks: AtomicU64,
    /// When recording: the wall-clock send time (Unix ns) of every tick, by tick number.
    sent: Option<Mutex<Vec<i128>>>,
}

/// One tick of the fake market.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub symbol: String,
    pub price: f64,
    pub bid: f64,
    pub ask: f64,
    pub size: u64,
    pub day_volume: u64,
    pub day_open: f64,
    pub day_high: f64,
    pub day_low: f64,
    /// Unix time in milliseconds (now).
    pub time_ms: i64,
    /// Unix time in nanoseconds (now), for vendors that send RFC 3339 with nanoseconds.
    pub time_ns: i128,
}

impl Market {
    /// A market that remembers when each tick was made, for latency benchmarks
    /// ([`Market::sent_ns`]).
    pub fn recording() -> Self {
        Self {
            sent: Some(Mutex::new(Vec::new())),
            ..Self::default()
        }
    }

    /// The tick number a day volume belongs to (every tick adds 100 to one market-wide volume).
    pub fn tick_of_volume(day_volume: u64) -> Option<u64> {
        day_volume
            .checked_sub(FIRST_VOLUME)
            .map(|v| v / VOLUME_STEP)
    }

    /// When tick `n` was made (Unix ns), if the market records.
    pub fn sent_ns(&self, n: u64) -> Option<i128> {
        let sent = self.sent.as_ref()?.lock().ok()?;
        sent.get(usize::try_from(n).ok()?)
            .copied()
            .filter(|&ns| ns > 0)
    }

    pub fn tick(&self, symbol: &str) -> Tick {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        let base = 10.0 + (fnv1a(symbol) % 49_000) as f64 / 100.0;
        let wave = ((n % 200) as f64 / 200.0 * std::f64::consts::TAU).sin();
        let price = round2(base * (1.0 + 0.01 * wave));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if let Some(Ok(mut sent)) = self.sent.as_ref().map(|s| s.lock()) {
            let i = n as usize;
            if sent.len() <= i {
                sent.resize(i + 1, 0);
            }
            sent[i] = now.as_nanos() as i128;
        }
        Tick {
            symbol: symbol.to_owned(),
            price,
            bid: round2(price - 0.01),
            ask: round2(price + 0.01),
            size: 100,
            day_volume: FIRST_VOLUME + n * VOLUME_STEP,
            day_open: round2(base),
            day_high: round2(base * 1.01),
            day_low: round2(base * 0.99),
            time_ms: now.as_millis() as i64,
            time_ns: now.as_nanos() as i128,
        }
    }
}

const FIRST_VOLUME: u64 = 1_000_000;
const VOLUME_STEP: u64 = 100;

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_act_on_the_first_connection_and_cycle_malformed_kinds() {
        let script = Script {
            silent_after: Some(3),
            malformed_every: Some(2),
            ..Script::default()
        };
        assert_eq!(script.step(0, 0), Step::Tick);
        assert_eq!(script.step(0, 1), Step::Malformed(0));
        assert_eq!(script.step(0, 3), Step::GoSilent);
        assert_eq!(script.step(1, 3), Step::Malformed(1));
    }

    #[tokio::test]
    async fn the_pacer_releases_the_rate_in_bursts() {
        let mut pacer = Pacer::new(100_000.0);
        let started = Instant::now();
        let mut sent = 0;
        while sent < 10_000 {
            sent += pacer.due(1000).await;
        }
        // 10k ticks at 100k/s take at least 0.1 s; far fewer wake-ups than ticks.
        assert!(started.elapsed() >= Duration::from_millis(99));
    }
}
