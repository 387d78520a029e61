use k8s_openapi::api::apps::v1::Deployment;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::resources::deployment::deployment;
use crate::resources::fixtures::{plan, stream, tickers};

fn shard_deployment() -> Deployment {
    let p = plan(&stream("sp500", 2), &tickers(&["AAPL", "MSFT", "NVDA"]));
    deployment(&p, &p.shards[0])
}

/// What the API server hands back for an applied object: the object plus its defaults,
/// bookkeeping and status.
fn as_stored(applied: &Value) -> Value {
    let mut live = applied.clone();
    live["metadata"]["resourceVersion"] = json!("4711");
    live["metadata"]["uid"] = json!("d6c1e0f2-0000-4000-8000-000000000001");
    live["metadata"]["managedFields"] = json!([{"manager": "quotestream-operator"}]);
    live["spec"]["progressDeadlineSeconds"] = json!(600);
    let container = &mut live["spec"]["template"]["spec"]["containers"][0];
    container["imagePullPolicy"] = json!("IfNotPresent");
    container["terminationMessagePath"] = json!("/dev/termination-log");
    live["status"] = json!({"observedGeneration": 1, "readyReplicas": 1});
    live
}

#[test]
fn an_applied_object_with_the_servers_defaults_is_up_to_date() {
    let desired = stamped(&shard_deployment()).unwrap();
    let hash = &desired["metadata"]["annotations"][APPLIED_HASH_ANNOTATION];
    assert_eq!(hash.as_str().map(str::len), Some(16), "{desired}");
    assert!(contains(&as_stored(&desired), &desired));
    assert_eq!(stamped(&shard_deployment()).unwrap(), desired, "stable");
}

#[test]
fn a_hand_edit_of_an_owned_field_is_a_change() {
    let desired = stamped(&shard_deployment()).unwrap();
    let mut live = as_stored(&desired);
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil/miner:latest");
    assert!(!contains(&live, &desired));
    let mut live = as_stored(&desired);
    live["spec"]["replicas"] = json!(0);
    assert!(!contains(&live, &desired));
    let mut live = as_stored(&desired);
    live["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(APPLIED_HASH_ANNOTATION);
    assert!(
        !contains(&live, &desired),
        "applied before the annotation existed"
    );
}

#[test]
fn a_field_the_operator_stops_setting_is_a_change() {
    // A pod label removed from spec.worker.labels is absent from the desired object, so no
    // field comparison sees it; the hash does, and the apply removes it.
    let mut labelled = shard_deployment();
    let template = labelled.spec.template.metadata.as_mut().unwrap();
    template
        .labels
        .get_or_insert_default()
        .insert("team".into(), "quotes".into());
    let live = as_stored(&stamped(&labelled).unwrap());
    let desired = stamped(&shard_deployment()).unwrap();
    assert!(!contains(&live, &desired));
}

#[test]
fn empty_desired_fields_match_absent_ones() {
    assert!(contains(
        &json!({"a": 1}),
        &json!({"a": 1, "b": {}, "c": [], "d": null})
    ));
    assert!(contains(&json!({"b": null}), &json!({"b": {"x": {}}})));
    assert!(!contains(&json!({"a": 1}), &json!({"a": 1, "b": [1]})));
    assert!(
        !contains(&json!({"l": [1, 2]}), &json!({"l": [1]})),
        "lists keep their length"
    );
    assert!(
        !contains(&json!({"n": "1"}), &json!({"n": 1})),
        "no type coercion"
    );
}

/// Arbitrary JSON, objects and lists nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object (what the operator applies is one), with arbitrary fields.
fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]", json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// `value` with a key no generated object has added to every object in it: what server
/// defaults and other managers add.
fn with_extras(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut m: Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), with_extras(v))).collect();
            m.insert("zz-default".into(), json!({"set": "by the server"}));
            Value::Object(m)
        }
        Value::Array(a) => Value::Array(a.iter().map(with_extras).collect()),
        other => other.clone(),
    }
}

proptest! {
    /// What was applied, plus anything the server adds, is up to date: a no-op resync writes
    /// nothing.
    #[test]
    fn an_applied_object_stays_up_to_date_whatever_the_server_adds(object in json_object()) {
        let desired = stamped(&object).unwrap();
        prop_assert!(contains(&desired, &desired));
        prop_assert!(contains(&with_extras(&desired), &desired));
    }

    /// A desired object that differs in anything from the applied one is never up to date:
    /// no change is skipped, whatever the server added to the live object.
    #[test]
    fn a_changed_object_is_never_up_to_date(a in json_object(), b in json_object()) {
        prop_assume!(a != b);
        let (applied, desired) = (stamped(&a).unwrap(), stamped(&b).unwrap());
        prop_assert!(!contains(&with_extras(&applied), &desired));
    }
}
