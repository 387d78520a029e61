//! Massive (Polygon) stocks frames → quotes and control events. Every server frame is a JSON
//! array mixing event types (`status`, `T`, `Q`, `AM`, `A`), many events per frame at busy
//! times. Each element is decoded on its own, so one bad event costs only itself.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Deserialize;

use super::status;
use crate::sources::websocket::book::{Aggregate, Book, Outcome, Top, Trade};
use crate::sources::websocket::json::{self, ArrayLabels, excerpt};
use crate::sources::websocket::{Decoded, Frame};

/// Massive's names for unusable frames (docs/streaming.md, polygon's bad input).
const LABELS: ArrayLabels = ArrayLabels {
    text_only: "Massive sends JSON text",
    not_array: "not_array",
    bad_element: "bad_field",
    non_finite: None,
    empty: None,
};

/// The fields of all event types this client reads (others are ignored). Names that mean
/// different things per type (`s`: a trade's size, an aggregate's window start) are only read
/// for the type they belong to; `c` (conditions or a close) is never read.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    ev: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sym: Option<Cow<'a, str>>,
    /// Trade price.
    p: Option<f64>,
    /// Trade size.
    s: Option<f64>,
    /// Event time, Unix ms.
    t: Option<i64>,
    bp: Option<f64>,
    ap: Option<f64>,
    /// Aggregates: accumulated day volume, day open, the bar's high and low, window end (ms).
    av: Option<f64>,
    op: Option<f64>,
    h: Option<f64>,
    l: Option<f64>,
    e: Option<i64>,
}

/// Decodes frames, keeping each ticker's state between them (the shared book, with
/// [`super::BOOK`]'s rules).
#[derive(Debug)]
pub struct Decoder {
    book: Book,
    key_source: String,
}

impl Decoder {
    /// `key_source` names where the API key comes from (for the auth failure's message).
    pub fn new(key_source: impl Into<String>) -> Self {
        Self {
            book: Book::new(super::BOOK),
            key_source: key_source.into(),
        }
    }

    /// Decodes one frame into `out`. Returns how many of its events only updated the state
    /// (a book update before any trade, an aggregate): with `out`'s quotes, malformed parts and
    /// events, every event of the frame is accounted for exactly once.
    pub fn decode(&mut self, frame: Frame<'_>, out: &mut Decoded) -> usize {
        let mut held = 0;
        for raw in json::elements(frame, out, &LABELS) {
            if let Some(item) = json::element::<Item<'_>>(raw, out, &LABELS) {
                held += usize::from(self.item(&item, raw.get(), out));
            }
        }
        held
    }

    /// One event; true when it only updated the state.
    fn item(&mut self, item: &Item<'_>, raw: &str, out: &mut Decoded) -> bool {
        let outcome = match item.ev.as_deref() {
            Some("status") => {
                match item.status.as_deref() {
                    Some(s) => out.events.push(status::event(
                        s,
                        item.message.as_deref().unwrap_or_default(),
                        &self.key_source,
                    )),
                    None => out.malformed("missing_field", format!("status: {}", excerpt(raw))),
                }
                return false;
            }
            Some("T") => self.trade(item, raw),
            Some("Q") => self.top(item, raw),
            Some("AM" | "A") => self.aggregate(item, raw),
            Some(other) => Outcome::Dropped("unknown_event", format!("event type {other:?}")),
            None => Outcome::Dropped("no_event", excerpt(raw)),
        };
        outcome.record(out)
    }

    fn trade(&mut self, item: &Item<'_>, raw: &str) -> Outcome {
        let (sym, time) = match symbol_and_time(item.sym.as_deref(), item.t, "t", raw) {
            Ok(found) => found,
            Err((reason, detail)) => return Outcome::Dropped(reason, detail),
        };
        let Some(price) = item.p else {
            return missing("p", raw);
        };
        let size = item.s.unwrap_or(0.0);
        if !(size.is_finite() && size >= 0.0) {
            return Outcome::Dropped("bad_size", format!("{sym}: trade size {size}"));
        }
        // Price sanity (≤ 0) is left to validation, which counts it by its own reason.
        self.book.trade(sym, Trade { price, size, time })
    }

    fn top(&mut self, item: &Item<'_>, raw: &str) -> Outcome {
        let (sym, time) = match symbol_and_time(item.sym.as_deref(), item.t, "t", raw) {
            Ok(found) => found,
            Err((reason, detail)) => return Outcome::Dropped(reason, detail),
        };
        // A Q event is the whole top of the book: an absent or zero side is an empty one.
        let side = |price: Option<f64>| price.filter(|p| *p != 0.0);
        let top = Top {
            bid: side(item.bp),
            ask: side(item.ap),
            time,
        };
        self.book.top(sym, top)
    }

    fn aggregate(&mut self, item: &Item<'_>, raw: &str) -> Outcome {
        let (sym, end) = match symbol_and_time(item.sym.as_deref(), item.e, "e", raw) {
            Ok(found) => found,
            Err((reason, detail)) => return Outcome::Dropped(reason, detail),
        };
        let Some(day_volume) = item.av else {
            return missing("av", raw);
        };
        self.book.aggregate(
            sym,
            Aggregate {
                day_volume,
                day_open: item.op,
                high: item.h,
                low: item.l,
                end,
            },
        )
    }
}

/// The event's symbol and its time (the field `field`), both required.
fn symbol_and_time<'a>(
    sym: Option<&'a str>,
    ms: Option<i64>,
    field: &str,
    raw: &str,
) -> Result<(&'a str, Timestamp), (&'static str, String)> {
    let sym = sym
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ("no_symbol", excerpt(raw)))?;
    let Some(ms) = ms else {
        return Err(("missing_field", missing_detail(field, raw)));
    };
    let time = Timestamp::from_millisecond(ms)
        .ok()
        .filter(|_| ms > 0)
        .ok_or_else(|| ("bad_time", format!("{sym}: time {ms} ms")))?;
    Ok((sym, time))
}

fn missing(field: &str, raw: &str) -> Outcome {
    Outcome::Dropped("missing_field", missing_detail(field, raw))
}

fn missing_detail(field: &str, raw: &str) -> String {
    format!("no {field:?}: {}", excerpt(raw))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    use super::*;
    use crate::sources::websocket::Event;

    const KEY: &str = "key \"k\" of Secret \"s\" (spec.source.polygon.apiKeySecretRef)";

    fn decode(decoder: &mut Decoder, text: &str) -> (Decoded, usize) {
        let mut out = Decoded::default();
        let held = decoder.decode(Frame::Text(text), &mut out);
        (out, held)
    }

    #[test]
    fn the_login_flow_and_acknowledgements_are_events() {
        let mut d = Decoder::new(KEY);
        let (out, _) = decode(
            &mut d,
            r#"[{"ev":"status","status":"connected","message":"Connected Successfully"}]"#,
        );
        assert_eq!(out.events, [Event::Greeted]);
        let (out, _) = decode(
            &mut d,
            r#"[{"ev":"status","status":"auth_success","message":"authenticated"}]"#,
        );
        assert_eq!(out.events, [Event::Authenticated]);
        let (out, _) = decode(
            &mut d,
            r#"[{"ev":"status","status":"success","message":"subscribed to: T.AAPL"},{"ev":"status","status":"success","message":"subscribed to: Q.AAPL"}]"#,
        );
        assert_eq!(
            out.events,
            [
                Event::Subscribed("subscribed to: T.AAPL".into()),
                Event::Subscribed("subscribed to: Q.AAPL".into())
            ]
        );
    }

    #[test]
    fn a_mixed_batch_becomes_quotes_with_the_state_of_earlier_events() {
        let mut d = Decoder::new(KEY);
        let frame = r#"[
            {"ev":"Q","sym":"MSFT","bx":4,"bp":410.1,"bs":2,"ax":7,"ap":410.2,"as":3,"c":0,"i":[604],"t":1768919415000,"q":50385480,"z":3},
            {"ev":"AM","sym":"MSFT","v":12345,"av":9876543,"op":405.5,"vw":410.0,"o":409.9,"c":410.15,"h":410.3,"l":409.8,"a":408.1,"z":55,"s":1768919340000,"e":1768919400000,"otc":false},
            {"ev":"T","sym":"MSFT","i":"52983525029461","x":4,"p":410.15,"s":100,"c":[12,37],"t":1768919415123,"q":1063,"z":3,"trfi":201,"trft":1768919415100},
            {"ev":"T","sym":"BRK.B","i":"1","x":11,"p":472.5,"s":5,"t":1768919415200,"q":7,"z":1}
        ]"#;
        let (out, held) = decode(&mut d, frame);
        assert!(out.malformed.is_empty(), "{:?}", out.malformed);
        assert_eq!(
            held, 2,
            "the book update before any trade and the aggregate"
        );
        let msft = &out.quotes[0];
        assert_eq!(msft.ticker, "MSFT");
        assert_eq!(msft.price, 410.15);
        assert_eq!(msft.timestamp.as_millisecond(), 1_768_919_415_123);
        assert_eq!((msft.bid, msft.ask), (Some(410.1), Some(410.2)));
        assert_eq!(msft.volume, 9_876_643.0);
        assert_eq!(msft.open, Some(405.5));
        assert_eq!(out.quotes[1].ticker, "BRK.B");
        // The next book update carries the trade price.
        let (out, held) = decode(
            &mut d,
            r#"[{"ev":"Q","sym":"MSFT","bp":410.12,"bs":1,"ap":0,"as":0,"t":1768919416000}]"#,
        );
        assert_eq!(held, 0);
        let q = &out.quotes[0];
        assert_eq!((q.price, q.bid, q.ask), (410.15, Some(410.12), None));
    }

    #[test]
    fn every_kind_of_bad_input_is_named() {
        let cases: &[(&str, &str)] = &[
            (r#"[{"ev":"T","sym":"AAPL","p":1"#, "bad_json"),
            (
                r#"[{"ev":"T","sym":"AAPL","p":NaN,"s":1,"t":1768919415000}]"#,
                "bad_json",
            ),
            (r#"{"ev":"status","status":"connected"}"#, "not_array"),
            (
                r#"[{"ev":"T","sym":"AAPL","p":"189.4","s":1,"t":1768919415000}]"#,
                "bad_field",
            ),
            (
                r#"[{"ev":"T","sym":"AAPL","p":1e999,"s":1,"t":1768919415000}]"#,
                "bad_field",
            ),
            (r#"[17]"#, "bad_field"),
            (
                r#"[{"ev":"LULD","T":"AAPL","h":191.2,"l":187.6,"t":1768919415000}]"#,
                "unknown_event",
            ),
            (r#"[{"sym":"AAPL","p":1}]"#, "no_event"),
            (r#"[{"ev":"T","p":1,"s":1,"t":1768919415000}]"#, "no_symbol"),
            (
                r#"[{"ev":"T","sym":"AAPL","s":1,"t":1768919415000}]"#,
                "missing_field",
            ),
            (r#"[{"ev":"T","sym":"AAPL","p":1,"s":1}]"#, "missing_field"),
            (
                r#"[{"ev":"AM","sym":"AAPL","op":1,"s":1,"e":1768919415000}]"#,
                "missing_field",
            ),
            (
                r#"[{"ev":"AM","sym":"AAPL","av":1,"op":1,"s":1}]"#,
                "missing_field",
            ),
            (r#"[{"ev":"status","message":"x"}]"#, "missing_field"),
            (
                r#"[{"ev":"T","sym":"AAPL","p":1,"s":1,"t":-5}]"#,
                "bad_time",
            ),
            (
                r#"[{"ev":"T","sym":"AAPL","p":1,"s":-1,"t":1768919415000}]"#,
                "bad_size",
            ),
            (
                r#"[{"ev":"Q","sym":"AAPL","bp":-1,"ap":2,"t":1768919415000}]"#,
                "bad_price",
            ),
            (
                r#"[{"ev":"AM","sym":"AAPL","av":5,"op":-1,"e":1768919415000}]"#,
                "bad_aggregate",
            ),
        ];
        for (frame, reason) in cases {
            let mut out = Decoded::default();
            Decoder::new(KEY).decode(Frame::Text(frame), &mut out);
            assert!(out.quotes.is_empty() && out.events.is_empty(), "{frame}");
            assert_eq!(out.malformed.len(), 1, "{frame}");
            assert_eq!(out.malformed[0].reason, *reason, "{frame}");
        }
        let mut out = Decoded::default();
        Decoder::new(KEY).decode(Frame::Binary(&[1, 2]), &mut out);
        assert_eq!(out.malformed[0].reason, "binary_frame");
    }

    #[test]
    fn one_bad_event_costs_only_itself() {
        let mut d = Decoder::new(KEY);
        let (out, _) = decode(
            &mut d,
            r#"[{"ev":"T","sym":"AAPL","p":"x","t":1},{"ev":"T","sym":"AAPL","p":189.42,"s":10,"t":1768919415000},{"ev":"T","sym":"AAPL","p":189.0,"s":10,"t":1768919414000}]"#,
        );
        assert_eq!(out.quotes.len(), 1);
        let reasons: Vec<&str> = out.malformed.iter().map(|m| m.reason).collect();
        assert_eq!(reasons, ["bad_field", "out_of_order"]);
    }

    #[test]
    fn negative_prices_are_delivered_for_validation_to_count() {
        let mut d = Decoder::new(KEY);
        let (out, _) = decode(
            &mut d,
            r#"[{"ev":"T","sym":"AAPL","p":-189.42,"s":10,"t":1768919415000}]"#,
        );
        let q = &out.quotes[0];
        let e = crate::quote::validate(q.clone(), q.timestamp).unwrap_err();
        assert_eq!(e.reason(), "price");
    }

    proptest! {
        /// Fuzz: no input panics, and every element of a frame is accounted for once.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let mut out = Decoded::default();
            let held = Decoder::new(KEY).decode(Frame::Text(&text), &mut out);
            let accounted = out.quotes.len() + out.malformed.len() + out.events.len() + held;
            match serde_json::from_str::<Vec<&RawValue>>(&text) {
                Ok(items) => prop_assert_eq!(accounted, items.len()),
                Err(_) => prop_assert_eq!(accounted, 1),
            }
        }

        /// Trades with any values: a quote, or a named reason.
        #[test]
        fn arbitrary_trades_never_panic(
            price in any::<f64>(), size in any::<f64>(), t in any::<i64>(), sym in "[A-Z.]{0,6}"
        ) {
            let frame = serde_json::json!([{"ev":"T","sym":sym,"p":price,"s":size,"t":t}]).to_string();
            let mut out = Decoded::default();
            Decoder::new(KEY).decode(Frame::Text(&frame), &mut out);
            prop_assert_eq!(out.quotes.len() + out.malformed.len(), 1);
        }
    }
}
