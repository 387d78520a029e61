//! The CRD's CEL rules (`x-kubernetes-validations`) evaluated in-process with kube's `cel`
//! feature (kube-cel), on the manifests of `api/testdata/crd-cases.yaml` — the same ones
//! `operator/tests/crd_on_apiserver.rs` sends to a real API server, so a rule that behaves
//! differently here and there shows up as one case failing on one side.
//!
//! `QuoteStream::validate_cel` (from `#[kube(cel)]`) and `QuoteStreamSpec::validate_cel` (from
//! `#[x_kube(cel)]`) regenerate and recompile the CRD on every call (~40 ms in a debug build),
//! so the bulk of the checks compile `QuoteStream::crd()` once and run the same evaluator
//! (`Validator::validate_compiled`, which applies schema defaults first, like the API server);
//! `the_generated_methods_agree_with_the_compiled_crd` shows that both give the same answers on
//! a sample of cases.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, ErrorKind, ValidationErrors, Validator, compile_schema};
use proptest::prelude::*;
use quotestream_testkit::{CrdCase, RejectedBy, crd_cases};
use serde_json::{Value, json};

use super::*;
use crate::duration;

/// The CRD's `openAPIV3Schema`, the document the API server evaluates.
fn schema() -> Value {
    let crd = serde_json::to_value(QuoteStream::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

static COMPILED: LazyLock<CompiledSchema> = LazyLock::new(|| {
    let compiled = compile_schema(&schema());
    assert!(
        !compiled.has_errors(),
        "a CEL rule does not compile: {:?}",
        compiled.compilation_errors()
    );
    compiled
});

/// Every CEL rule of the CRD on a whole QuoteStream manifest.
fn check(manifest: &Value) -> Result<(), ValidationErrors> {
    Validator::new().validate_compiled(&COMPILED, manifest, None)
}

fn manifest(spec: Value) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1",
        "kind": "QuoteStream",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": spec,
    })
}

/// (field, rule) of every failure; the field as the API server names it (`spec.sinks.redis.url`).
fn failures(errors: &ValidationErrors) -> BTreeSet<(String, String)> {
    errors
        .iter()
        .map(|e| (e.field_path.clone(), e.rule.clone()))
        .collect()
}

fn describe(errors: &ValidationErrors) -> String {
    errors
        .iter()
        .map(|e| format!("{e} ({:?})", e.kind))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What is wrong with the client-side verdict on `case`, if anything.
fn verdict(case: &CrdCase) -> Option<String> {
    let result = check(&case.manifest);
    if let Some(gap) = &case.client_gap {
        return match result {
            Err(e) if e.iter().all(|f| f.kind == ErrorKind::EvaluationError) => None,
            other => Some(format!(
                "the client gap ({gap}) looks closed, remove clientGap: {:?}",
                other.map_err(|e| describe(&e))
            )),
        };
    }
    match (case.rejected_by, result) {
        (RejectedBy::None | RejectedBy::Schema, Ok(())) => None,
        (RejectedBy::None | RejectedBy::Schema, Err(e)) => {
            Some(format!("CEL rejects it: {}", describe(&e)))
        }
        (RejectedBy::Cel, Ok(())) => Some("CEL accepts it".to_owned()),
        (RejectedBy::Cel, Err(e)) => {
            let field = case.field.as_deref().unwrap_or_default();
            let message = case.message.as_deref().unwrap_or_default();
            let named = e
                .iter()
                .any(|f| f.field_path == field && f.message.contains(message));
            (!named).then(|| format!("no failure at {field} saying {message:?}: {}", describe(&e)))
        }
    }
}

#[test]
fn each_case_gets_the_verdict_the_case_file_names() {
    let cases = crd_cases().unwrap();
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|c| verdict(c).map(|why| format!("{}: {why}", c.name)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} cases in api/testdata/crd-cases.yaml wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// (field, rule) of every `x-kubernetes-validations` entry under `node`, the field as a failure
/// names it: the rule's location plus its `fieldPath`.
fn rules_in(node: &Value, at: &str, out: &mut BTreeSet<(String, String)>) {
    for rule in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let field = format!("{at}{}", rule["fieldPath"].as_str().unwrap_or_default());
        out.insert((field, rule["rule"].as_str().unwrap_or_default().to_owned()));
    }
    for (name, child) in node["properties"].as_object().into_iter().flatten() {
        rules_in(child, &format!("{at}.{name}"), out);
    }
    for key in ["items", "additionalProperties"] {
        if node[key].is_object() {
            rules_in(&node[key], &format!("{at}[*]"), out);
        }
    }
}

#[test]
fn every_cel_rule_of_the_crd_is_broken_by_some_case() {
    let mut rules = BTreeSet::new();
    rules_in(&schema()["properties"]["spec"], "spec", &mut rules);
    assert!(rules.len() >= 20, "found only {rules:#?}");

    let mut broken = BTreeSet::new();
    for case in crd_cases().unwrap() {
        if case.rejected_by == RejectedBy::Cel
            && let Err(e) = check(&case.manifest)
        {
            broken.extend(failures(&e));
        }
    }
    let untested: Vec<_> = rules.difference(&broken).collect();
    assert!(
        untested.is_empty(),
        "no `rejectedBy: cel` case in api/testdata/crd-cases.yaml breaks these (field, rule):\n{untested:#?}"
    );
}

/// Cases with a rule at each kind of place: on the spec, on the spec with a `fieldPath`, on a
/// string field, on a nested object, on a field of a nested object; and a valid one.
const SAMPLE: [&str; 6] = [
    "the base manifest",
    "no tickers",
    "more shards than tickers",
    "interval too long",
    "alpaca without credentials",
    "password in the redis URL",
];

#[test]
fn the_generated_methods_agree_with_the_compiled_crd() {
    let cases = crd_cases().unwrap();
    for name in SAMPLE {
        let case = cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name:?} in api/testdata/crd-cases.yaml"));
        let expected = check(&case.manifest).map_err(|e| failures(&e));
        let qs: QuoteStream = serde_json::from_value(case.manifest.clone()).unwrap();
        let typed = qs.validate_cel().map_err(|e| failures(&e));
        assert_eq!(typed, expected, "{name}: QuoteStream::validate_cel");
        // The spec fragment's failures are relative to the spec; a rule's fieldPath keeps its dot.
        let raw = QuoteStreamSpec::validate_cel(&case.manifest["spec"], None).map_err(|e| {
            e.iter()
                .map(|f| {
                    let field = match f.field_path.as_str() {
                        "" => "spec".to_owned(),
                        p if p.starts_with('.') => format!("spec{p}"),
                        p => format!("spec.{p}"),
                    };
                    (field, f.rule.clone())
                })
                .collect::<BTreeSet<_>>()
        });
        assert_eq!(raw, expected, "{name}: QuoteStreamSpec::validate_cel");
    }
}

#[test]
fn the_examples_pass_every_rule() {
    for example in [
        "minimal.yaml",
        "sp500.yaml",
        "tickers-configmap.yaml",
        "with-store.yaml",
    ] {
        let path = format!("{}/../examples/{example}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let streams = text
            .split("\n---\n")
            .map(|doc| serde_yaml::from_str::<Value>(doc).unwrap())
            .filter(|doc| doc["kind"] == "QuoteStream");
        for doc in streams {
            if let Err(e) = check(&doc) {
                panic!("{example}: {}", describe(&e));
            }
        }
    }
}

#[test]
fn an_update_is_checked_like_a_create() {
    // No rule compares with oldSelf, so an update passes or fails on the new object alone.
    let good: QuoteStream = serde_json::from_value(manifest(json!({
        "tickers": ["AAPL", "MSFT"], "shards": 2, "source": {"type": "synthetic"},
        "sinks": {"redis": {"url": "redis://redis:6379/0"}}
    })))
    .unwrap();
    let mut bad = good.clone();
    bad.spec.shards = 3;
    assert!(good.validate_cel_update(&bad).is_ok());
    let err = bad.validate_cel_update(&good).unwrap_err();
    assert_eq!(
        failures(&err).into_iter().map(|f| f.0).collect::<Vec<_>>(),
        ["spec.shards"],
        "{}",
        describe(&err)
    );
}

// --- properties ------------------------------------------------------------------------------

/// `[0-9]+(\.[0-9]+)?unit`, one or two components: strings the schema pattern admits. Not µs:
/// kube-cel cannot evaluate it (the clientGap case of crd-cases.yaml).
fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h"]);
    let part =
        (0u32..5000, prop::option::of(0u32..1000), unit).prop_map(|(n, frac, u)| match frac {
            Some(f) => format!("{n}.{f}{u}"),
            None => format!("{n}{u}"),
        });
    prop::collection::vec(part, 1..=2).prop_map(|parts| parts.concat())
}

fn base_spec() -> Value {
    json!({
        "tickers": ["AAPL", "MSFT", "BRK.B"],
        "source": {"type": "synthetic"},
        "sinks": {"redis": {"url": "redis://redis:6379/0"}}
    })
}

fn fails_at(spec: Value, field: &str) -> bool {
    check(&manifest(spec)).is_err_and(|e| e.iter().any(|f| f.field_path == field))
}

/// A valid source: each type with or without its block (required ones always with it).
fn source() -> impl Strategy<Value = Value> {
    let host = "[a-z]{1,10}(\\.[a-z]{1,5})?";
    prop_oneof![
        (any::<bool>(), host).prop_map(|(block, host)| if block {
            json!({"type": "yahoo", "yahoo": {"baseUrl": format!("https://{host}")}})
        } else {
            json!({"type": "yahoo"})
        }),
        (any::<bool>(), any::<i64>()).prop_map(|(block, seed)| if block {
            json!({"type": "synthetic", "synthetic": {"seed": seed}})
        } else {
            json!({"type": "synthetic"})
        }),
        host.prop_map(|host| json!({
            "type": "yahoo-stream", "yahooStream": {"url": format!("wss://{host}/")}
        })),
        "[a-z]{1,20}".prop_map(|name| json!({
            "type": "replay", "replay": {"configMapKeyRef": {"name": name, "key": "quotes"}}
        })),
        (1i32..=1024).prop_map(|max| json!({
            "type": "alpaca",
            "alpaca": {"credentialsSecretRef": {"name": "alpaca"}, "maxConnections": max}
        })),
        host.prop_map(|host| json!({
            "type": "polygon",
            "polygon": {"apiKeySecretRef": {"name": "p", "key": "k"}, "url": format!("wss://{host}/stocks")}
        })),
    ]
}

/// At least one sink; Redis by URL or by Secret, never both.
fn sinks() -> impl Strategy<Value = Value> {
    (1u8..8, any::<bool>()).prop_map(|(mask, secret)| {
        let mut sinks = json!({});
        if mask & 1 != 0 {
            sinks["redis"] = if secret {
                json!({"urlSecretRef": {"name": "redis", "key": "url"}})
            } else {
                json!({"url": "redis://redis:6379/0"})
            };
        }
        if mask & 2 != 0 {
            sinks["storage"] = json!({"url": "http://storage:8000", "batchSize": 1000});
        }
        if mask & 4 != 0 {
            sinks["postgres"] = json!({"dsnSecretRef": {"name": "db", "key": "dsn"}});
        }
        sinks
    })
}

/// A valid spec: distinct tickers with shards up to their number, or a ConfigMap list with any
/// shard count; an interval within bounds; a valid source and sinks.
fn valid_spec() -> impl Strategy<Value = Value> {
    let listing = prop_oneof![
        prop::collection::btree_set("[A-Z]{1,5}", 1..40).prop_flat_map(|set| {
            let n = i32::try_from(set.len()).unwrap();
            (Just(set), 1..=n).prop_map(|(set, shards)| json!({"tickers": set, "shards": shards}))
        }),
        (1i32..=1024).prop_map(|shards| json!({
            "tickersFrom": {"configMapKeyRef": {"name": "list", "key": "tickers"}},
            "shards": shards
        })),
    ];
    let interval = (100u64..=3_600_000).prop_map(|ms| duration::format(Duration::from_millis(ms)));
    (listing, interval, source(), sinks()).prop_map(|(mut spec, interval, source, sinks)| {
        spec["interval"] = json!(interval);
        spec["source"] = source;
        spec["sinks"] = sinks;
        spec
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the generator builds within the documented limits passes every rule, raw and
    /// as the typed stream the operator reads (after serde defaults).
    #[test]
    fn generated_valid_specs_pass(spec in valid_spec()) {
        let doc = manifest(spec);
        prop_assert!(check(&doc).is_ok(), "{doc}: {}", check(&doc).map_err(|e| describe(&e)).unwrap_err());
        let qs: QuoteStream = serde_json::from_value(doc).unwrap();
        prop_assert!(check(&serde_json::to_value(&qs).unwrap()).is_ok());
    }

    /// The CEL interval rule and the operator's duration parser agree on every string the
    /// schema pattern admits: inside [100ms, 1h] passes, anything else fails.
    #[test]
    fn the_interval_rule_agrees_with_the_duration_parser(text in duration_text()) {
        let mut spec = base_spec();
        spec["interval"] = json!(text);
        let parsed = duration::parse(&text).unwrap();
        let in_bounds = parsed >= Duration::from_millis(100) && parsed <= Duration::from_secs(3600);
        prop_assert_eq!(!fails_at(spec, "spec.interval"), in_bounds, "interval {} = {:?}", text, parsed);
    }

    /// The CEL shard rule and the operator's `shard_count` agree on inline lists.
    #[test]
    fn the_shard_rule_agrees_with_shard_count(n in 1usize..20, shards in 1i32..40) {
        let mut spec = base_spec();
        spec["tickers"] = json!((b'A'..).take(n).map(|c| format!("T{}", c as char)).collect::<Vec<_>>());
        spec["shards"] = json!(shards);
        let typed: QuoteStreamSpec = serde_json::from_value(spec.clone()).unwrap();
        let tickers = typed.ticker_set(None).unwrap();
        prop_assert_eq!(!fails_at(spec, "spec.shards"), typed.shard_count(&tickers).is_ok());
    }
}
