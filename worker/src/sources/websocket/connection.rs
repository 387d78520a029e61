//! One WebSocket connection's life: connect, log in, subscribe the shard's tickers, then read
//! frames until the connection ends, following assignment changes without reconnecting.

use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use quotestream_api::TickerSet;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::coalesce::Coalescer;
use super::protocol::{Action, Decoded, Event, Frame, Protocol};
use super::settings::WebsocketSettings;
use super::subscriptions::Change;
use crate::log_limit::LogLimiter;
use crate::quote::RawQuote;
use crate::sources::{SourceContext, SourceError};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Most frames read without waiting before their quotes go to the pipeline.
const FRAMES_PER_DELIVERY: usize = 256;

/// How a connection ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// Shutdown, or the pipeline is gone: stop.
    Stopped,
    /// The connection is gone: reconnect after a backoff. `reason` is a metric label.
    Lost {
        reason: &'static str,
        detail: String,
    },
    /// Reconnecting cannot help.
    Fatal(SourceError),
}

impl Ended {
    fn lost(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::Lost {
            reason,
            detail: detail.into(),
        }
    }
}

/// What outlives a single connection.
#[derive(Debug, Default)]
pub(super) struct Carry {
    pub coalescer: Coalescer,
    pub malformed_log: LogLimiter,
    pub vendor_log: LogLimiter<String>,
    /// Quotes decoded but not yet handed to the pipeline.
    pub batch: Vec<RawQuote>,
    decoded: Decoded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's greeting before sending the login.
    Greeting,
    /// Login sent, waiting for it to be accepted.
    LoggingIn,
    /// Subscribed; quotes flow.
    Streaming,
}

/// One connection, from connect to its end.
pub(super) async fn run<P: Protocol>(
    protocol: &mut P,
    settings: &WebsocketSettings,
    ctx: &mut SourceContext,
    carry: &mut Carry,
) -> Ended {
    let vendor = protocol.vendor();
    let connect =
        tokio_tungstenite::connect_async_with_config(protocol.url(), Some(limits()), true);
    let mut socket = tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => return Ended::Stopped,
        r = tokio::time::timeout(settings.connect_timeout, connect) => match r {
            Err(_) => return Ended::lost("connect", format!("no WebSocket within {:?}", settings.connect_timeout)),
            Ok(Err(e)) => return Ended::lost("connect", e.to_string()),
            Ok(Ok((socket, _response))) => socket,
        },
    };
    tracing::info!(vendor, url = protocol.url(), "connected");
    let mut connection = Connection {
        protocol,
        settings,
        phase: Phase::Greeting,
        subscribed: TickerSet::default(),
    };
    let ended = connection.serve(&mut socket, ctx, carry).await;
    if matches!(ended, Ended::Stopped) {
        // A polite close; the server may already be gone, which changes nothing.
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    }
    ended
}

struct Connection<'a, P> {
    protocol: &'a mut P,
    settings: &'a WebsocketSettings,
    phase: Phase,
    subscribed: TickerSet,
}

impl<P: Protocol> Connection<'_, P> {
    async fn serve(
        &mut self,
        socket: &mut Socket,
        ctx: &mut SourceContext,
        carry: &mut Carry,
    ) -> Ended {
        let settings = self.settings;
        if self.protocol.login().is_none()
            && let Err(ended) = self.start_streaming(socket, ctx).await
        {
            return ended;
        }
        let login_deadline = Instant::now() + settings.login_timeout;
        let mut idle_deadline = Instant::now() + settings.idle_timeout;
        let mut pings = every(settings.ping_every);
        let mut resubscribe = every(
            self.protocol
                .resubscribe_every()
                .unwrap_or(Duration::from_secs(3600)),
        );
        let resubscribes = self.protocol.resubscribe_every().is_some();
        let mut flushes = every(settings.coalesce.unwrap_or(Duration::from_secs(3600)));
        let coalescing = settings.coalesce.is_some();
        loop {
            let streaming = self.phase == Phase::Streaming;
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Ended::Stopped,
                message = socket.next() => {
                    idle_deadline = Instant::now() + settings.idle_timeout;
                    if let Some(ended) = self.receive(message, socket, ctx, carry).await {
                        return ended;
                    }
                    // Frames that are already here join the same delivery: at high rates one
                    // hand-over to the pipeline carries many ticks instead of one each.
                    for _ in 0..FRAMES_PER_DELIVERY {
                        let Some(message) = socket.next().now_or_never() else {
                            break;
                        };
                        if let Some(ended) = self.receive(message, socket, ctx, carry).await {
                            return ended;
                        }
                    }
                    if !carry.batch.is_empty() && !ctx.deliver(std::mem::take(&mut carry.batch)).await {
                        return Ended::Stopped;
                    }
                }
                _ = tokio::time::sleep_until(idle_deadline) => {
                    return Ended::lost("silent", format!("nothing received for {:?} (not even a pong)", settings.idle_timeout));
                }
                _ = tokio::time::sleep_until(login_deadline), if !streaming => {
                    return Ended::lost("login_timeout", format!("not logged in within {:?}", settings.login_timeout));
                }
                _ = pings.tick() => {
                    if let Err(e) = socket.send(Message::Ping(Bytes::new())).await {
                        return Ended::lost("send", e.to_string());
                    }
                }
                changed = ctx.tickers.changed(), if streaming => {
                    if changed.is_err() {
                        return Ended::Stopped;
                    }
                    if let Err(ended) = self.follow_assignment(socket, ctx).await {
                        return ended;
                    }
                }
                _ = resubscribe.tick(), if streaming && resubscribes => {
                    let frames = self.protocol.subscribe(self.subscribed.as_slice());
                    if let Err(ended) = send_all(socket, frames).await {
                        return ended;
                    }
                }
                _ = flushes.tick(), if coalescing => {
                    let folded = carry.coalescer.take_folded();
                    ctx.metrics.source_coalesced.inc_by(folded);
                    if !carry.coalescer.is_empty() && !ctx.deliver(carry.coalescer.drain()).await {
                        return Ended::Stopped;
                    }
                }
            }
        }
    }

    /// Acts on one WebSocket message; `Some` ends the connection.
    async fn receive(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        socket: &mut Socket,
        ctx: &mut SourceContext,
        carry: &mut Carry,
    ) -> Option<Ended> {
        match message {
            None => Some(Ended::lost("closed", "the server closed the connection")),
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => Some(Ended::lost(
                "oversized",
                format!(
                    "{e}; messages above {} bytes are refused before they are buffered",
                    crate::bounds::MAX_WS_MESSAGE_BYTES
                ),
            )),
            Some(Err(e)) => Some(Ended::lost("error", e.to_string())),
            Some(Ok(Message::Text(text))) => {
                self.handle(Frame::Text(text.as_str()), socket, ctx, carry)
                    .await
            }
            Some(Ok(Message::Binary(bytes))) => {
                self.handle(Frame::Binary(&bytes), socket, ctx, carry).await
            }
            Some(Ok(Message::Close(frame))) => Some(Ended::lost(
                "closed",
                match frame {
                    Some(f) => format!("the server closed the connection: {} {}", f.code, f.reason),
                    None => "the server closed the connection".to_owned(),
                },
            )),
            // Pings are answered by the WebSocket layer; pongs only prove liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
        }
    }

    /// Decodes one frame and acts on it; its quotes join `carry.batch` (or the coalescer).
    /// `Some` ends the connection.
    async fn handle(
        &mut self,
        frame: Frame<'_>,
        socket: &mut Socket,
        ctx: &mut SourceContext,
        carry: &mut Carry,
    ) -> Option<Ended> {
        let vendor = self.protocol.vendor();
        carry.decoded.clear();
        self.protocol.decode(frame, &mut carry.decoded);
        for m in &carry.decoded.malformed {
            ctx.metrics
                .source_malformed
                .with_label_values(&[m.reason])
                .inc();
            if carry.malformed_log.due(m.reason) {
                tracing::warn!(vendor, reason = m.reason, detail = %m.detail, "dropped an unusable message (logged once a minute per reason; all are counted in streamer_source_malformed_total)");
            }
        }
        let events = std::mem::take(&mut carry.decoded.events);
        for event in events {
            match event {
                Event::Greeted if self.phase == Phase::Greeting => {
                    let login = self.protocol.login().unwrap_or_default();
                    if let Err(ended) = send_all(socket, login).await {
                        return Some(ended);
                    }
                    self.phase = Phase::LoggingIn;
                }
                Event::Authenticated if self.phase != Phase::Streaming => {
                    tracing::info!(vendor, "logged in");
                    if let Err(ended) = self.start_streaming(socket, ctx).await {
                        return Some(ended);
                    }
                }
                Event::Greeted | Event::Authenticated => {}
                Event::Subscribed(what) => tracing::debug!(vendor, %what, "subscription confirmed"),
                Event::Error(error) => {
                    ctx.metrics
                        .source_vendor_errors
                        .with_label_values(&[error.code.as_str()])
                        .inc();
                    match error.action {
                        Action::Reconnect => {
                            return Some(Ended::lost(
                                "vendor_error",
                                format!("{vendor} error {}: {}", error.code, error.message),
                            ));
                        }
                        Action::Fatal(fix) => {
                            return Some(Ended::Fatal(SourceError::Config(format!(
                                "{vendor} refused the connection with error {} ({}): {fix}",
                                error.code, error.message
                            ))));
                        }
                        Action::Log => {
                            if carry.vendor_log.due(error.code.clone()) {
                                tracing::warn!(vendor, code = %error.code, message = %error.message, "the vendor reported an error (logged once a minute per code)");
                            }
                        }
                    }
                }
            }
        }
        // Filtered and moved out in place: the decode buffer keeps its capacity, so a frame
        // costs no allocation here.
        let quotes = &mut carry.decoded.quotes;
        if quotes.is_empty() || self.phase != Phase::Streaming {
            return None;
        }
        // A tick for a ticker this shard gave away (a late one after the unsubscribe) belongs
        // to its new owner: publishing it here would make two shards publish one ticker.
        let before = quotes.len();
        let subscribed = self.subscribed.as_slice();
        quotes.retain(|q| {
            subscribed
                .binary_search_by(|t| t.as_str().cmp(q.ticker.as_str()))
                .is_ok()
        });
        if quotes.len() < before {
            ctx.metrics
                .source_malformed
                .with_label_values(&["unsubscribed_symbol"])
                .inc_by((before - quotes.len()) as u64);
        }
        if self.settings.coalesce.is_some() {
            carry.coalescer.add(quotes.drain(..));
        } else {
            carry.batch.append(quotes);
        }
        None
    }

    /// Logged in (or no login needed): subscribe everything the shard owns now.
    async fn start_streaming(
        &mut self,
        socket: &mut Socket,
        ctx: &mut SourceContext,
    ) -> Result<(), Ended> {
        self.phase = Phase::Streaming;
        let wanted = ctx.tickers.borrow_and_update().clone();
        send_all(socket, self.protocol.subscribe(wanted.as_slice())).await?;
        ctx.metrics.source_subscribed.set(wanted.len() as i64);
        ctx.metrics.source_connected.set(1);
        tracing::info!(
            vendor = self.protocol.vendor(),
            tickers = wanted.len(),
            "subscribed"
        );
        self.subscribed = wanted;
        Ok(())
    }

    /// The operator changed the shard's tickers: subscribe and unsubscribe the difference on
    /// the open connection.
    async fn follow_assignment(
        &mut self,
        socket: &mut Socket,
        ctx: &mut SourceContext,
    ) -> Result<(), Ended> {
        let wanted = ctx.tickers.borrow_and_update().clone();
        let change = Change::between(&self.subscribed, &wanted);
        if change.is_empty() {
            return Ok(());
        }
        send_all(socket, self.protocol.unsubscribe(&change.removed)).await?;
        send_all(socket, self.protocol.subscribe(&change.added)).await?;
        tracing::info!(
            vendor = self.protocol.vendor(),
            added = change.added.len(),
            removed = change.removed.len(),
            tickers = wanted.len(),
            "subscription follows the new assignment"
        );
        ctx.metrics.source_subscribed.set(wanted.len() as i64);
        self.subscribed = wanted;
        Ok(())
    }
}

async fn send_all(socket: &mut Socket, frames: Vec<String>) -> Result<(), Ended> {
    for frame in frames {
        socket
            .feed(Message::text(frame))
            .await
            .map_err(|e| Ended::lost("send", e.to_string()))?;
    }
    socket
        .flush()
        .await
        .map_err(|e| Ended::lost("send", e.to_string()))
}

/// The WebSocket limits: one frame and one (reassembled) message at most
/// [`crate::bounds::MAX_WS_MESSAGE_BYTES`]. tungstenite checks a frame's length in its header,
/// and a fragmented message's running total, before buffering more of it.
fn limits() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(crate::bounds::MAX_WS_MESSAGE_BYTES))
        .max_frame_size(Some(crate::bounds::MAX_WS_MESSAGE_BYTES))
}

/// A ticker whose first tick is one period from now (the immediate tick of
/// `tokio::time::interval` would ping or flush for nothing).
fn every(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}
