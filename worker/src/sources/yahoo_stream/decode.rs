//! Yahoo live-stream frames → quotes: `{"type":"pricing","message":"<base64 PricingData>"}`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use prost::Message;
use serde::Deserialize;

use super::proto::PricingData;
use crate::quote::RawQuote;
use crate::sources::websocket::{Decoded, Frame};

/// The `source` of the quotes (Yahoo is `yfinance` in the contracts, streaming or not).
const SOURCE: &str = "yfinance";

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    #[serde(borrow)]
    message: Option<std::borrow::Cow<'a, str>>,
}

/// Decodes one server frame into `out`.
pub fn decode(frame: Frame<'_>, out: &mut Decoded) {
    let text = match frame {
        Frame::Text(text) => text,
        Frame::Binary(bytes) => {
            out.malformed(
                "binary_frame",
                format!("{} bytes in a binary frame; Yahoo sends text", bytes.len()),
            );
            return;
        }
    };
    let trimmed = text.trim();
    // Version 1 of the streamer sent the bare base64 message; version 2 wraps it in JSON.
    let message = if trimmed.starts_with('{') {
        let envelope: Envelope<'_> = match serde_json::from_str(trimmed) {
            Ok(envelope) => envelope,
            Err(e) => {
                out.malformed("bad_json", format!("{e}: {}", excerpt(trimmed)));
                return;
            }
        };
        match (envelope.kind, envelope.message) {
            (Some("pricing") | None, Some(message)) => message,
            (Some("pricing") | None, None) => {
                out.malformed("no_message", excerpt(trimmed));
                return;
            }
            (Some(other), _) => {
                out.malformed("unknown_type", format!("message type {other:?}"));
                return;
            }
        }
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    };
    let bytes = match STANDARD.decode(message.as_bytes()) {
        Ok(bytes) => bytes,
        Err(e) => {
            out.malformed("bad_base64", format!("{e}: {}", excerpt(&message)));
            return;
        }
    };
    let data = match PricingData::decode(bytes.as_slice()) {
        Ok(data) => data,
        Err(e) => {
            out.malformed("bad_protobuf", e.to_string());
            return;
        }
    };
    match to_raw(data) {
        Ok(quote) => out.quotes.push(quote),
        Err((reason, detail)) => out.malformed(reason, detail),
    }
}

/// The quote a `PricingData` describes. Price sanity (NaN, ≤ 0, bid > ask) is left to
/// validation, which counts each by its own reason.
fn to_raw(data: PricingData) -> Result<RawQuote, (&'static str, String)> {
    if data.id.is_empty() {
        return Err(("no_symbol", "PricingData without an id".into()));
    }
    let timestamp = Timestamp::from_millisecond(data.time)
        .ok()
        .filter(|_| data.time > 0)
        .ok_or_else(|| ("bad_time", format!("{}: time {} ms", data.id, data.time)))?;
    let ticker = match crate::sources::yahoo::symbol::from_yahoo(&data.id) {
        Ok(t) => t.as_str().to_owned(),
        // Validation names the problem with the symbol.
        Err(_) => data.id,
    };
    Ok(RawQuote {
        ticker,
        timestamp,
        price: widen(data.price),
        volume: data.day_volume as f64,
        bid: positive(data.bid),
        ask: positive(data.ask),
        open: positive(data.open_price),
        high: positive(data.day_high),
        low: positive(data.day_low),
        source: SOURCE,
    })
}

/// proto3 sends 0 for "not set": an absent optional price.
fn positive(value: f32) -> Option<f64> {
    (value != 0.0).then(|| widen(value))
}

/// Yahoo's prices are 32-bit floats: 189.42 arrives as 189.4199981689453 when widened bit for
/// bit. The shortest decimal that round-trips the f32 is the price Yahoo meant.
fn widen(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

fn excerpt(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frame_of(data: &PricingData) -> String {
        let message = STANDARD.encode(data.encode_to_vec());
        format!(r#"{{"type":"pricing","message":"{message}"}}"#)
    }

    fn aapl() -> PricingData {
        PricingData {
            id: "AAPL".into(),
            price: 189.42,
            time: 1_768_919_415_123,
            day_volume: 51_234_567,
            bid: 189.41,
            ask: 189.43,
            open_price: 187.5,
            day_high: 190.0,
            day_low: 187.25,
            ..Default::default()
        }
    }

    #[test]
    fn decodes_a_pricing_frame_into_a_quote() {
        let mut out = Decoded::default();
        decode(Frame::Text(&frame_of(&aapl())), &mut out);
        assert!(out.malformed.is_empty(), "{:?}", out.malformed);
        let q = &out.quotes[0];
        assert_eq!(q.ticker, "AAPL");
        assert_eq!(
            q.price, 189.42,
            "the f32 price is widened to the decimal Yahoo meant"
        );
        assert_eq!(q.bid, Some(189.41));
        assert_eq!(q.volume, 51_234_567.0);
        assert_eq!(q.timestamp.as_millisecond(), 1_768_919_415_123);
        assert_eq!(q.source, "yfinance");
    }

    #[test]
    fn share_classes_come_back_canonical_and_zero_means_absent() {
        let mut data = aapl();
        data.id = "BRK-B".into();
        data.bid = 0.0;
        let mut out = Decoded::default();
        decode(Frame::Text(&frame_of(&data)), &mut out);
        assert_eq!(out.quotes[0].ticker, "BRK.B");
        assert_eq!(out.quotes[0].bid, None);
    }

    #[test]
    fn the_bare_base64_of_version_1_is_understood() {
        let mut out = Decoded::default();
        decode(
            Frame::Text(&STANDARD.encode(aapl().encode_to_vec())),
            &mut out,
        );
        assert_eq!(out.quotes.len(), 1);
    }

    #[test]
    fn every_kind_of_bad_frame_is_named() {
        let cases: &[(Frame<'_>, &str)] = &[
            (Frame::Text("{not json"), "bad_json"),
            (
                Frame::Text(r#"{"type":"news","message":"x"}"#),
                "unknown_type",
            ),
            (
                Frame::Text(r#"{"type":"pricing","message":"***"}"#),
                "bad_base64",
            ),
            (
                Frame::Text(r#"{"type":"pricing","message":"/////w=="}"#),
                "bad_protobuf",
            ),
            (Frame::Text(r#"{"type":"pricing"}"#), "no_message"),
            (Frame::Binary(&[1, 2, 3]), "binary_frame"),
        ];
        for (frame, reason) in cases {
            let mut out = Decoded::default();
            decode(*frame, &mut out);
            assert!(out.quotes.is_empty(), "{reason}");
            assert_eq!(out.malformed.len(), 1, "{reason}");
            assert_eq!(out.malformed[0].reason, *reason);
        }
        let mut no_time = aapl();
        no_time.time = 0;
        let mut no_id = aapl();
        no_id.id.clear();
        for (data, reason) in [(no_time, "bad_time"), (no_id, "no_symbol")] {
            let mut out = Decoded::default();
            decode(Frame::Text(&frame_of(&data)), &mut out);
            assert_eq!(out.malformed[0].reason, reason);
        }
    }

    proptest! {
        /// Fuzz: no input panics, and every frame yields a quote or a named reason.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let mut out = Decoded::default();
            decode(Frame::Text(&text), &mut out);
            prop_assert!(out.quotes.len() + out.malformed.len() >= 1);
        }

        #[test]
        fn arbitrary_protobuf_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Decoded::default();
            let message = STANDARD.encode(&bytes);
            decode(Frame::Text(&format!(r#"{{"type":"pricing","message":"{message}"}}"#)), &mut out);
            prop_assert_eq!(out.quotes.len() + out.malformed.len(), 1);
        }

        /// Any price Yahoo can send as an f32 comes back as the same f32.
        #[test]
        fn widening_keeps_the_f32_value(price in any::<f32>().prop_filter("finite", |p| p.is_finite())) {
            prop_assert_eq!(widen(price) as f32, price);
        }
    }
}
