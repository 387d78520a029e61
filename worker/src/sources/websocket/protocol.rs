//! What a streaming vendor has to say: the only part that differs between vendors. The
//! connection, reconnects, subscriptions, silence detection and coalescing are shared
//! (`connection.rs`, `mod.rs`).

use std::time::Duration;

use quotestream_api::Ticker;

use crate::quote::RawQuote;

/// One data frame from the server.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What one frame held.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Quotes to validate and publish.
    pub quotes: Vec<RawQuote>,
    /// Parts of the frame that could not be used, by reason (never published).
    pub malformed: Vec<Malformed>,
    /// Control messages: greetings, login results, acknowledgements, vendor errors.
    pub events: Vec<Event>,
}

impl Decoded {
    pub fn clear(&mut self) {
        self.quotes.clear();
        self.malformed.clear();
        self.events.clear();
    }

    /// Records an unusable part of a frame.
    pub fn malformed(&mut self, reason: &'static str, detail: impl Into<String>) {
        self.malformed.push(Malformed {
            reason,
            detail: detail.into(),
        });
    }
}

/// An unusable message. `reason` is the metric label (a short snake_case kind, bounded);
/// `detail` goes to the (rate-limited) log.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub reason: &'static str,
    pub detail: String,
}

/// Control messages the shared connection loop acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server greeted the client: send the login frames now.
    Greeted,
    /// The login was accepted: subscribe.
    Authenticated,
    /// The server confirmed a subscription (logged at debug).
    Subscribed(String),
    /// The vendor reported an error.
    Error(VendorError),
}

/// An error the vendor sent, with what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorError {
    /// The vendor's code (metric label: a vendor has a small fixed set of codes).
    pub code: String,
    pub message: String,
    pub action: Action,
}

/// What an error means for the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Transient: drop the connection and reconnect with backoff.
    Reconnect,
    /// Reconnecting cannot help (bad credentials, plan limits, connection limit): stop the source
    /// with this explanation, which names the setting to change.
    Fatal(String),
    /// Worth a log line and a count, nothing more.
    Log,
}

/// A vendor's WebSocket protocol.
pub trait Protocol: Send + 'static {
    /// Vendor name in logs and metric labels.
    fn vendor(&self) -> &'static str;

    /// Where to connect.
    fn url(&self) -> &str;

    /// Frames to send once the server greeted ([`Event::Greeted`]); `None` when the vendor
    /// needs no login, so the client subscribes as soon as the socket is open.
    fn login(&self) -> Option<Vec<String>>;

    /// Frames subscribing to these tickers (none for an empty slice).
    fn subscribe(&self, tickers: &[Ticker]) -> Vec<String>;

    /// Frames ending the subscription of these tickers (none for an empty slice).
    fn unsubscribe(&self, tickers: &[Ticker]) -> Vec<String>;

    /// Resend the whole subscription this often (Yahoo drops subscriptions it has not been
    /// reminded of).
    fn resubscribe_every(&self) -> Option<Duration> {
        None
    }

    /// Decodes one frame into `out` (which the caller clears). Never panics on any input.
    fn decode(&mut self, frame: Frame<'_>, out: &mut Decoded);

    /// A new connection begins: forget what belonged to the previous one.
    fn reset(&mut self) {}
}
