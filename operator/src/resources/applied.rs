//! Which desired objects need a write. A reconcile that changes nothing must write nothing: at
//! 1024 shards a resync would otherwise send 2048 server-side applies (each a mutating request
//! the API server admits, decodes, merges and compares, even when it ends as a no-op).
//!
//! Each applied object carries [`APPLIED_HASH_ANNOTATION`], the hash of the object as the
//! operator built it. An object is up to date when the live one [`contains`] the desired one:
//! - the annotation matches, so the desired object has not changed since it was applied — this
//!   also catches a field the operator *stopped* setting (a removed `spec.worker.labels` key),
//!   which a comparison of present fields alone cannot see;
//! - every field the operator sets still has its value, so a hand edit of an owned field is
//!   reverted (the API server's defaults, status and other managers' fields are extra fields
//!   of the live object and are ignored).

use serde::Serialize;
use serde_json::{Map, Value};

/// Metadata annotation with the hash of the object the operator last applied.
pub const APPLIED_HASH_ANNOTATION: &str = "quotes.opa.io/applied-hash";

/// `object` as the JSON the operator applies: with [`APPLIED_HASH_ANNOTATION`] set to the hash
/// of the rest of it.
pub fn stamped<K: Serialize>(object: &K) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    // serde_json's maps are sorted (no preserve_order), so equal objects hash equally.
    let hash = format!(
        "{:016x}",
        xxhash_rust::xxh64::xxh64(serde_json::to_string(&value)?.as_bytes(), 0)
    );
    if let Value::Object(root) = &mut value {
        let metadata = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        if let Value::Object(metadata) = metadata {
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if !annotations.is_object() {
                *annotations = Value::Object(Map::new());
            }
            if let Value::Object(annotations) = annotations {
                annotations.insert(APPLIED_HASH_ANNOTATION.to_owned(), Value::String(hash));
            }
        }
    }
    Ok(value)
}

/// Whether `live` holds every field of `desired` with the same value. Objects: each key of
/// `desired` is in `live` with a containing value (extra keys in `live` are defaults or other
/// managers' fields). Lists: the same length, element by element (server-side apply keeps the
/// order of a list the operator owns). An unset (`null`) or empty desired value matches an
/// absent one, as the API server drops empty fields.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(key, want)| {
            have.get(key)
                .map_or_else(|| is_empty(want), |have| contains(have, want))
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| contains(h, w))
        }
        (want, Value::Null) => is_empty(want),
        (Value::Null, _) => true,
        (want, have) => want == have,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
