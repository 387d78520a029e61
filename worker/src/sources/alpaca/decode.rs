//! Alpaca frames → events and quotes. A frame is a JSON array; control messages come one per
//! frame, data messages may be batched. Each item is decoded on its own, so one bad item costs
//! only itself.

use std::borrow::Cow;
use std::time::Instant;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::status::{self, ErrorContext, GHOST_CONNECTION_GRACE};
use crate::sources::websocket::book::{Book, DailyBar, Outcome, Top, Trade};
use crate::sources::websocket::json::{self, ArrayLabels, excerpt};
use crate::sources::websocket::{Decoded, Event, Frame, VendorError};

/// Alpaca's names for unusable frames (docs/streaming.md, Alpaca's metrics).
const LABELS: ArrayLabels = ArrayLabels {
    text_only: "the connector asks Alpaca for JSON",
    not_array: "not_an_array",
    bad_element: "wrong_type",
    non_finite: Some("non_finite"),
    empty: Some("empty_array"),
};

/// The fields of every message type the connector reads, all optional: which ones a message
/// must have depends on its `T`. Unknown fields are ignored (`c` is left out on purpose: it is
/// the conditions list of a trade but the close price of a bar).
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "T", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "S", borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    t: Option<Cow<'a, str>>,
    p: Option<f64>,
    s: Option<f64>,
    bp: Option<f64>,
    ap: Option<f64>,
    o: Option<f64>,
    h: Option<f64>,
    l: Option<f64>,
    v: Option<f64>,
    code: Option<i64>,
    #[serde(borrow)]
    msg: Option<Cow<'a, str>>,
    trades: Option<Vec<IgnoredAny>>,
    quotes: Option<Vec<IgnoredAny>>,
    #[serde(rename = "dailyBars")]
    daily_bars: Option<Vec<IgnoredAny>>,
}

/// Decodes one connection's frames; remembers per-ticker state across frames (see `book.rs`).
#[derive(Debug)]
pub struct Decoder {
    book: Book,
    errors: ErrorContext,
    /// This connection was logged in.
    logged_in: bool,
    /// When the last connection that had been logged in ended.
    lost_logged_in: Option<Instant>,
}

impl Decoder {
    pub fn new(errors: ErrorContext) -> Self {
        Self {
            book: Book::new(super::BOOK),
            errors,
            logged_in: false,
            lost_logged_in: None,
        }
    }

    /// A new connection begins.
    pub fn reset(&mut self) {
        if self.logged_in {
            self.lost_logged_in = Some(Instant::now());
        }
        self.logged_in = false;
        self.book.reset_connection();
    }

    /// Decodes one frame into `out`; returns how many of its messages were only remembered
    /// (a quote update before any trade, a daily bar) or deliberately ignored (minute bars,
    /// statuses), so that every message is accounted for.
    pub fn decode(&mut self, frame: Frame<'_>, out: &mut Decoded) -> usize {
        let mut held = 0;
        for raw in json::elements(frame, out, &LABELS) {
            if let Some(item) = json::element::<Item<'_>>(raw, out, &LABELS) {
                held += self.item(item, raw.get(), out);
            }
        }
        held
    }

    /// One message; returns 1 when it was only remembered or ignored.
    fn item(&mut self, item: Item<'_>, raw: &str, out: &mut Decoded) -> usize {
        let Some(kind) = item.kind.as_deref() else {
            out.malformed("missing_field", format!("no T: {}", excerpt(raw)));
            return 0;
        };
        let outcome = match kind {
            "t" => self.trade(&item),
            "q" => self.nbbo(&item),
            "d" => self.daily_bar(&item),
            // Minute bars, updated bars, statuses, LULD bands, cancels and corrections: not
            // subscribed for the quote model (Alpaca adds cancels and corrections to trades).
            "b" | "u" | "s" | "l" | "x" | "c" => return 1,
            "success" => {
                match item.msg.as_deref() {
                    Some("connected") => out.events.push(Event::Greeted),
                    Some("authenticated") => {
                        self.logged_in = true;
                        out.events.push(Event::Authenticated);
                    }
                    other => out.malformed("unknown_control", format!("success {other:?}")),
                }
                return 0;
            }
            "subscription" => {
                let n = |list: &Option<Vec<IgnoredAny>>| list.as_ref().map_or(0, Vec::len);
                out.events.push(Event::Subscribed(format!(
                    "trades {}, quotes {}, dailyBars {}",
                    n(&item.trades),
                    n(&item.quotes),
                    n(&item.daily_bars)
                )));
                return 0;
            }
            "error" => {
                let Some(code) = item.code else {
                    out.malformed(
                        "missing_field",
                        format!("error without a code: {}", excerpt(raw)),
                    );
                    return 0;
                };
                let ghost_possible = self
                    .lost_logged_in
                    .is_some_and(|lost| lost.elapsed() < GHOST_CONNECTION_GRACE);
                out.events.push(Event::Error(VendorError {
                    code: code.to_string(),
                    message: item.msg.as_deref().unwrap_or_default().to_owned(),
                    action: status::action(code, &self.errors, ghost_possible),
                }));
                return 0;
            }
            other => Outcome::Dropped("unknown_type", format!("T {other:?}: {}", excerpt(raw))),
        };
        usize::from(outcome.record(out))
    }

    fn trade(&mut self, item: &Item<'_>) -> Outcome {
        let (symbol, time) = match symbol_and_time(item) {
            Ok(found) => found,
            Err((reason, detail)) => return Outcome::Dropped(reason, detail),
        };
        let (Some(price), Some(size)) = (item.p, item.s) else {
            return missing(symbol, "trade", &[("p", item.p), ("s", item.s)]);
        };
        let Some(size) = whole(size) else {
            return Outcome::Dropped("bad_size", format!("{symbol}: trade size {size}"));
        };
        self.book.trade(symbol, Trade { price, size, time })
    }

    fn nbbo(&mut self, item: &Item<'_>) -> Outcome {
        let (symbol, time) = match symbol_and_time(item) {
            Ok(found) => found,
            Err((reason, detail)) => return Outcome::Dropped(reason, detail),
        };
        let (Some(bid), Some(ask)) = (item.bp, item.ap) else {
            return missing(symbol, "quote", &[("bp", item.bp), ("ap", item.ap)]);
        };
        // Alpaca sends 0 for an empty side of the book.
        let side = |price: f64| (price != 0.0).then_some(price);
        let (bid, ask) = (side(bid), side(ask));
        self.book.top(symbol, Top { bid, ask, time })
    }

    fn daily_bar(&mut self, item: &Item<'_>) -> Outcome {
        let (symbol, time) = match symbol_and_time(item) {
            Ok(found) => found,
            Err((reason, detail)) => return Outcome::Dropped(reason, detail),
        };
        let (Some(open), Some(high), Some(low), Some(volume)) = (item.o, item.h, item.l, item.v)
        else {
            return missing(
                symbol,
                "daily bar",
                &[("o", item.o), ("h", item.h), ("l", item.l), ("v", item.v)],
            );
        };
        let Some(volume) = whole(volume) else {
            return Outcome::Dropped("bad_bar", format!("{symbol}: daily bar volume {volume}"));
        };
        self.book.daily_bar(
            symbol,
            DailyBar {
                open,
                high,
                low,
                volume,
                time,
            },
        )
    }
}

/// The message's symbol and time, both required; else why not (reason, detail).
fn symbol_and_time<'i>(item: &'i Item<'_>) -> Result<(&'i str, Timestamp), (&'static str, String)> {
    let Some(symbol) = item.symbol.as_deref().filter(|s| !s.is_empty()) else {
        return Err(("missing_field", "a data message without S".into()));
    };
    let Some(text) = item.t.as_deref() else {
        return Err(("missing_field", format!("{symbol}: no t")));
    };
    let time = text
        .parse::<Timestamp>()
        .map_err(|e| ("bad_time", format!("{symbol}: t {text:?}: {e}")))?;
    Ok((symbol, time))
}

fn missing(symbol: &str, what: &str, fields: &[(&str, Option<f64>)]) -> Outcome {
    let absent: Vec<&str> = fields
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
    Outcome::Dropped(
        "missing_field",
        format!("{symbol}: {what} without {}", absent.join(", ")),
    )
}

/// Sizes and volumes are whole numbers of shares.
fn whole(value: f64) -> Option<f64> {
    (value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= u64::MAX as f64)
        .then_some(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use quotestream_api::crd::AlpacaFeed;

    use super::*;
    use crate::sources::alpaca::SecretNames;
    use crate::sources::websocket::Action;

    fn decoder() -> Decoder {
        Decoder::new(ErrorContext {
            feed: AlpacaFeed::Iex,
            secret: SecretNames {
                name: "alpaca".into(),
                key_id_key: "APCA_API_KEY_ID".into(),
                secret_key_key: "APCA_API_SECRET_KEY".into(),
            },
        })
    }

    fn decode(d: &mut Decoder, text: &str) -> (Decoded, usize) {
        let mut out = Decoded::default();
        let held = d.decode(Frame::Text(text), &mut out);
        (out, held)
    }

    const TRADE: &str = r#"{"T":"t","S":"AAPL","i":52983525029461,"x":"V","p":189.42,"s":100,"t":"2026-01-20T15:30:15.123456789Z","c":["@"],"z":"C"}"#;
    const QUOTE: &str = r#"{"T":"q","S":"AAPL","bx":"V","bp":189.41,"bs":2,"ax":"V","ap":189.44,"as":3,"c":["R"],"z":"C","t":"2026-01-20T15:30:15.2Z"}"#;

    #[test]
    fn the_login_flow_becomes_events() {
        let mut d = decoder();
        let cases = [
            (r#"[{"T":"success","msg":"connected"}]"#, Event::Greeted),
            (
                r#"[{"T":"success","msg":"authenticated"}]"#,
                Event::Authenticated,
            ),
            (
                r#"[{"T":"subscription","trades":["AAPL"],"quotes":["AAPL"],"bars":[],"updatedBars":[],"dailyBars":["AAPL"],"statuses":[],"lulds":[],"corrections":["AAPL"],"cancelErrors":["AAPL"]}]"#,
                Event::Subscribed("trades 1, quotes 1, dailyBars 1".into()),
            ),
        ];
        for (frame, event) in cases {
            let (out, _) = decode(&mut d, frame);
            assert_eq!(out.events, vec![event], "{frame}");
        }
        let (out, _) = decode(&mut d, r#"[{"T":"error","code":402,"msg":"auth failed"}]"#);
        let Event::Error(error) = &out.events[0] else {
            panic!("{:?}", out.events)
        };
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("402", "auth failed")
        );
        assert!(matches!(&error.action, Action::Fatal(fix) if fix.contains("Secret alpaca")));
    }

    #[test]
    fn a_batch_yields_one_quote_per_trade_and_per_quote_update_after_a_trade() {
        let mut d = decoder();
        let bar = r#"{"T":"d","S":"AAPL","o":187.5,"h":190.0,"l":187.25,"c":189.4,"v":51234567,"t":"2026-01-20T05:00:00Z","n":612345,"vw":188.9}"#;
        let minute = r#"{"T":"b","S":"AAPL","o":189,"h":189.5,"l":188.9,"c":189.4,"v":1200,"t":"2026-01-20T15:29:00Z","n":20,"vw":189.2}"#;
        let (out, held) = decode(&mut d, &format!("[{QUOTE},{bar},{minute},{TRADE},{QUOTE}]"));
        assert!(out.malformed.is_empty(), "{:?}", out.malformed);
        assert_eq!(
            held, 3,
            "the first quote update, the daily bar and the minute bar"
        );
        assert_eq!(out.quotes.len(), 2);
        let (trade, update) = (&out.quotes[0], &out.quotes[1]);
        assert_eq!((trade.price, trade.volume), (189.42, 51_234_667.0));
        assert_eq!((trade.bid, trade.ask), (Some(189.41), Some(189.44)));
        assert_eq!(
            (trade.open, trade.high, trade.low),
            (Some(187.5), Some(190.0), Some(187.25))
        );
        assert_eq!(trade.timestamp.as_nanosecond() % 1_000_000_000, 123_456_789);
        assert_eq!(update.price, 189.42);
        assert_eq!(update.ticker, "AAPL");
        let empty_ask = QUOTE
            .replace(r#""ap":189.44"#, r#""ap":0"#)
            .replace("15.2Z", "16Z");
        let (out, _) = decode(&mut d, &format!("[{empty_ask}]"));
        let q = &out.quotes[0];
        assert_eq!((q.bid, q.ask), (Some(189.41), None), "0 is an empty side");
    }

    #[test]
    fn every_kind_of_bad_input_is_named() {
        let cases: &[(&str, &str)] = &[
            (r#"[{"T":"t","S":"AAPL","p":"#, "bad_json"),
            (
                r#"[{"T":"t","S":"AAPL","p":NaN,"s":1,"t":"2026-01-20T15:30:15Z"}]"#,
                "non_finite",
            ),
            (
                r#"[{"T":"t","S":"AAPL","p":-Infinity,"s":1,"t":"2026-01-20T15:30:15Z"}]"#,
                "non_finite",
            ),
            (r#"{"T":"success","msg":"connected"}"#, "not_an_array"),
            ("[]", "empty_array"),
            ("[42]", "wrong_type"),
            (
                r#"[{"T":"t","S":"AAPL","p":"189.42","s":1,"t":"2026-01-20T15:30:15Z"}]"#,
                "wrong_type",
            ),
            (
                r#"[{"T":"t","S":"AAPL","s":1,"t":"2026-01-20T15:30:15Z"}]"#,
                "missing_field",
            ),
            (
                r#"[{"T":"t","p":1.0,"s":1,"t":"2026-01-20T15:30:15Z"}]"#,
                "missing_field",
            ),
            (r#"[{"S":"AAPL"}]"#, "missing_field"),
            (r#"[{"T":"error","msg":"?"}]"#, "missing_field"),
            (
                r#"[{"T":"t","S":"AAPL","p":1.0,"s":1,"t":"yesterday"}]"#,
                "bad_time",
            ),
            (
                r#"[{"T":"t","S":"AAPL","p":1.0,"s":1.5,"t":"2026-01-20T15:30:15Z"}]"#,
                "bad_size",
            ),
            (
                r#"[{"T":"t","S":"AAPL","p":1.0,"s":-1,"t":"2026-01-20T15:30:15Z"}]"#,
                "bad_size",
            ),
            (
                r#"[{"T":"d","S":"AAPL","o":1,"h":2,"l":1,"v":-5,"t":"2026-01-20T05:00:00Z"}]"#,
                "bad_bar",
            ),
            (r#"[{"T":"news","S":"AAPL"}]"#, "unknown_type"),
            (r#"[{"T":"success","msg":"maybe"}]"#, "unknown_control"),
        ];
        for (frame, reason) in cases {
            let (out, held) = decode(&mut decoder(), frame);
            assert!(
                out.quotes.is_empty() && out.events.is_empty() && held == 0,
                "{frame}"
            );
            assert_eq!(out.malformed.len(), 1, "{frame}");
            assert_eq!(
                out.malformed[0].reason, *reason,
                "{frame}: {}",
                out.malformed[0].detail
            );
        }
        let (out, _) = decode(&mut decoder(), &[1u8, 2][..].escape_ascii().to_string());
        assert_eq!(out.malformed[0].reason, "bad_json");
        let mut out = Decoded::default();
        decoder().decode(Frame::Binary(&[0x91, 0x80]), &mut out);
        assert_eq!(out.malformed[0].reason, "binary_frame");
    }

    #[test]
    fn one_bad_item_costs_only_itself() {
        let mut d = decoder();
        let (out, _) = decode(
            &mut d,
            &format!(r#"[{TRADE},{{"T":"t","S":"MSFT","p":"x"}},{QUOTE}]"#),
        );
        assert_eq!(out.quotes.len(), 2);
        assert_eq!(out.malformed[0].reason, "wrong_type");
    }

    #[test]
    fn negative_prices_reach_validation_and_late_trades_are_named() {
        let mut d = decoder();
        decode(&mut d, &format!("[{TRADE}]"));
        let negative = TRADE
            .replace("189.42", "-189.42")
            .replace("15:30:15.1", "15:30:16.1");
        let (out, _) = decode(&mut d, &format!("[{negative}]"));
        assert_eq!(out.quotes[0].price, -189.42);
        let late = TRADE.replace("15:30:15", "15:30:14");
        let (out, _) = decode(&mut d, &format!("[{late}]"));
        assert_eq!(out.malformed[0].reason, "out_of_order");
    }

    #[test]
    fn a_connection_limit_after_losing_a_logged_in_connection_is_retried() {
        let limit = r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#;
        let action = |d: &mut Decoder| match &decode(d, limit).0.events[0] {
            Event::Error(e) => e.action.clone(),
            other => panic!("{other:?}"),
        };
        let mut d = decoder();
        d.reset();
        assert!(
            matches!(action(&mut d), Action::Fatal(_)),
            "the first connection: someone else"
        );
        decode(&mut d, r#"[{"T":"success","msg":"authenticated"}]"#);
        d.reset();
        assert_eq!(
            action(&mut d),
            Action::Reconnect,
            "our own lost connection, still counted"
        );
        d.reset();
        assert_eq!(action(&mut d), Action::Reconnect, "still within the grace");
    }

    proptest! {
        /// No text panics the decoder, and every frame is accounted for.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let (out, held) = decode(&mut decoder(), &text);
            prop_assert!(out.quotes.len() + out.malformed.len() + out.events.len() + held >= 1);
        }

        /// Any batch of well-formed trades yields exactly one quote per trade in time order.
        #[test]
        fn batches_of_trades_yield_one_quote_each(
            trades in proptest::collection::vec((1u32..1_000_000, 1u32..10_000), 1..100)
        ) {
            let items: Vec<String> = trades
                .iter()
                .enumerate()
                .map(|(i, (cents, size))| format!(
                    r#"{{"T":"t","S":"AAPL","p":{},"s":{size},"t":"2026-01-20T15:30:{:02}.{i:09}Z"}}"#,
                    f64::from(*cents) / 100.0, 0
                ))
                .collect();
            let (out, _) = decode(&mut decoder(), &format!("[{}]", items.join(",")));
            prop_assert_eq!(out.quotes.len(), trades.len());
            let total: u64 = trades.iter().map(|(_, s)| u64::from(*s)).sum();
            prop_assert_eq!(out.quotes.last().unwrap().volume, total as f64);
        }
    }
}
