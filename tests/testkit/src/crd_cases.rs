//! The QuoteStream manifests of `api/testdata/crd-cases.yaml`, each with the layer that must
//! reject it. The api crate evaluates the CRD's CEL rules on them in-process and the operator's
//! `crd_on_apiserver` test sends them to a real kube-apiserver: one list, two verdicts.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::{Result, TestkitError, io_err};

/// Which layer refuses a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectedBy {
    /// A valid manifest.
    None,
    /// The OpenAPI schema (pattern, enum, bounds, required, list type, unknown field).
    Schema,
    /// An `x-kubernetes-validations` CEL rule.
    Cel,
}

/// One manifest and its expected verdict.
#[derive(Debug, Clone)]
pub struct CrdCase {
    pub name: String,
    /// The whole QuoteStream (`base` with the case's merge patch applied).
    pub manifest: Value,
    pub rejected_by: RejectedBy,
    /// The field the rejection names, as the API server spells it (`spec.sinks.redis.url`).
    pub field: Option<String>,
    /// Text the rejection contains.
    pub message: Option<String>,
    /// Where the in-process CEL evaluator (kube-cel) knowingly differs from the API server's:
    /// the client-side test expects it to fail to evaluate the rule, and fails once it no
    /// longer does (then the gap is closed and the entry can go).
    pub client_gap: Option<String>,
}

#[derive(Deserialize)]
struct File {
    base: Value,
    cases: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    name: String,
    patch: Value,
    rejected_by: RejectedBy,
    field: Option<String>,
    message: Option<String>,
    client_gap: Option<String>,
}

/// Path of the case file.
pub fn crd_cases_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../api/testdata/crd-cases.yaml")
}

/// Reads every case of `api/testdata/crd-cases.yaml`.
pub fn crd_cases() -> Result<Vec<CrdCase>> {
    let path = crd_cases_path();
    let text = std::fs::read_to_string(&path).map_err(io_err(path.display().to_string()))?;
    let file: File = serde_yaml::from_str(&text).map_err(|e| TestkitError::Failed {
        what: format!("parsing {}", path.display()),
        detail: e.to_string(),
    })?;
    Ok(file
        .cases
        .into_iter()
        .map(|e| {
            let mut manifest = file.base.clone();
            merge_patch(&mut manifest, &e.patch);
            CrdCase {
                name: e.name,
                manifest,
                rejected_by: e.rejected_by,
                field: e.field,
                message: e.message,
                client_gap: e.client_gap,
            }
        })
        .collect())
}

/// JSON merge patch (RFC 7386): objects merge key by key, `null` deletes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(fields) = target {
        for (key, change) in changes {
            if change.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The example of RFC 7386 section 3.
        let mut doc = json!({
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "This will be unchanged"
        });
        merge_patch(
            &mut doc,
            &json!({
                "title": "Hello!",
                "phoneNumber": "+01-123-456-7890",
                "author": {"familyName": null},
                "tags": ["example"]
            }),
        );
        assert_eq!(
            doc,
            json!({
                "title": "Hello!",
                "author": {"givenName": "John"},
                "tags": ["example"],
                "content": "This will be unchanged",
                "phoneNumber": "+01-123-456-7890"
            })
        );
    }

    #[test]
    fn every_case_names_what_rejects_it() {
        let cases = crd_cases().unwrap();
        assert!(cases.len() > 30, "{} cases", cases.len());
        for c in &cases {
            let named = c.field.is_some() && c.message.is_some();
            assert_eq!(
                named,
                c.rejected_by != RejectedBy::None,
                "{}: a rejected case names its field and message, a valid one neither",
                c.name
            );
            assert_eq!(c.manifest["kind"], "QuoteStream", "{}", c.name);
        }
    }
}
