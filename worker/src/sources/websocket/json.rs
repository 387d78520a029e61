//! The decode prologue of the vendors whose frames are JSON arrays of messages (`alpaca`,
//! `polygon`): a text frame, parsed as an array whose elements stay raw, so that each one is
//! decoded on its own and one bad element costs only itself. What the vendors call each
//! failure is their metric label (documented per vendor in docs/streaming.md), so the labels
//! are theirs: [`ArrayLabels`].

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Decoded, Frame};

/// A vendor's names for the ways a frame or one of its elements can be unusable.
#[derive(Debug, Clone, Copy)]
pub struct ArrayLabels {
    /// What the vendor sends instead (the detail of `binary_frame`).
    pub text_only: &'static str,
    /// Valid JSON that is not an array.
    pub not_array: &'static str,
    /// An element whose fields have the wrong types.
    pub bad_element: &'static str,
    /// `NaN` or `Infinity` (not JSON, but what a broken server writes); `None`: such a frame is
    /// `bad_json` like any other.
    pub non_finite: Option<&'static str>,
    /// `[]`; `None`: an empty frame holds nothing to account for.
    pub empty: Option<&'static str>,
}

/// The frame's elements, still raw; an unusable frame is recorded in `out` and yields none.
pub fn elements<'t>(
    frame: Frame<'t>,
    out: &mut Decoded,
    labels: &ArrayLabels,
) -> Vec<&'t RawValue> {
    let text = match frame {
        Frame::Text(text) => text,
        Frame::Binary(bytes) => {
            out.malformed(
                "binary_frame",
                format!(
                    "{} bytes in a binary frame; {}",
                    bytes.len(),
                    labels.text_only
                ),
            );
            return Vec::new();
        }
    };
    match serde_json::from_str::<Vec<&RawValue>>(text) {
        Ok(items) if items.is_empty() => {
            if let Some(reason) = labels.empty {
                out.malformed(reason, "[]");
            }
            items
        }
        Ok(items) => items,
        Err(e) => {
            let reason = if e.is_data() {
                labels.not_array
            } else {
                labels
                    .non_finite
                    .filter(|_| non_finite_at(text, &e))
                    .unwrap_or("bad_json")
            };
            out.malformed(reason, format!("{e}: {}", excerpt(text)));
            Vec::new()
        }
    }
}

/// One element read as the vendor's message type; an unusable one is recorded in `out`.
pub fn element<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    out: &mut Decoded,
    labels: &ArrayLabels,
) -> Option<T> {
    match serde_json::from_str::<T>(raw.get()) {
        Ok(item) => Some(item),
        Err(e) => {
            let reason = labels
                .non_finite
                .filter(|_| non_finite_at(raw.get(), &e))
                .unwrap_or(labels.bad_element);
            out.malformed(reason, format!("{e}: {}", excerpt(raw.get())));
            None
        }
    }
}

/// The start of a text, for a log line.
pub fn excerpt(text: &str) -> String {
    text.chars().take(120).collect()
}

/// JSON has no NaN or infinity; a server that writes them anyway breaks the frame. Says whether
/// that is what broke it (the parser stops at the token).
fn non_finite_at(text: &str, error: &serde_json::Error) -> bool {
    let Some(line) = text.lines().nth(error.line().saturating_sub(1)) else {
        return false;
    };
    let at = error.column().saturating_sub(1);
    ["NaN", "Infinity", "-Infinity"].iter().any(|token| {
        (at.saturating_sub(token.len())..=at).any(|start| {
            line.get(start..)
                .is_some_and(|rest| rest.starts_with(token))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: ArrayLabels = ArrayLabels {
        text_only: "JSON please",
        not_array: "not_an_array",
        bad_element: "wrong_type",
        non_finite: Some("non_finite"),
        empty: Some("empty_array"),
    };
    const LENIENT: ArrayLabels = ArrayLabels {
        non_finite: None,
        empty: None,
        ..STRICT
    };

    fn reasons(text: &str, labels: &ArrayLabels) -> (usize, Vec<&'static str>) {
        let mut out = Decoded::default();
        let items = elements(Frame::Text(text), &mut out, labels);
        let n = items.len();
        for raw in items {
            element::<serde_json::Map<String, serde_json::Value>>(raw, &mut out, labels);
        }
        (n, out.malformed.iter().map(|m| m.reason).collect())
    }

    #[test]
    fn every_unusable_frame_is_named_with_the_vendors_labels() {
        assert_eq!(reasons("[{}]", &STRICT), (1, vec![]));
        assert_eq!(reasons("{}", &STRICT), (0, vec!["not_an_array"]));
        assert_eq!(reasons("[", &STRICT), (0, vec!["bad_json"]));
        assert_eq!(reasons(r#"[{"p":NaN}]"#, &STRICT), (0, vec!["non_finite"]));
        assert_eq!(reasons(r#"[{"p":NaN}]"#, &LENIENT), (0, vec!["bad_json"]));
        assert_eq!(reasons("[]", &STRICT), (0, vec!["empty_array"]));
        assert_eq!(reasons("[]", &LENIENT), (0, vec![]));
        assert_eq!(reasons("[{},7]", &STRICT), (2, vec!["wrong_type"]));
        let mut out = Decoded::default();
        assert!(elements(Frame::Binary(&[1, 2, 3]), &mut out, &STRICT).is_empty());
        assert_eq!(out.malformed[0].reason, "binary_frame");
        assert_eq!(
            out.malformed[0].detail,
            "3 bytes in a binary frame; JSON please"
        );
    }

    #[test]
    fn excerpts_are_bounded_on_character_boundaries() {
        let text = "é".repeat(500);
        assert_eq!(excerpt(&text).chars().count(), 120);
    }
}
