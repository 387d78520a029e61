//! Names, labels and ownership shared by every object the operator creates for a stream.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use quotestream_api::crd::{MAX_SHARDS, SHARD_LABEL, STREAM_LABEL};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "quotestream-operator";
/// `app.kubernetes.io/name` of worker objects.
pub const APP_NAME_LABEL: &str = "app.kubernetes.io/name";
pub const APP_NAME: &str = "quotestream-worker";
/// `app.kubernetes.io/instance`: the stream, so generic tooling groups a stream's shards.
pub const APP_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by` of everything the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "quotestream-operator";
/// Longest label value Kubernetes accepts; the stream name is one (`quotes.opa.io/stream`).
pub const MAX_LABEL_VALUE: usize = 63;

/// Name of shard `shard`'s ConfigMap and Deployment: `<stream>-shard-<i>`.
pub fn shard_name(stream: &str, shard: u32) -> String {
    format!("{stream}-shard-{shard}")
}

/// The labels that identify one shard's objects and pods (the Deployment selector). Never
/// change them: a Deployment's selector is immutable.
pub fn selector_labels(stream: &str, shard: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (STREAM_LABEL.to_owned(), stream.to_owned()),
        (SHARD_LABEL.to_owned(), shard.to_string()),
    ])
}

/// Every label the operator puts on a shard's objects and pods.
pub fn shard_labels(stream: &str, shard: u32) -> BTreeMap<String, String> {
    let mut labels = selector_labels(stream, shard);
    labels.insert(APP_NAME_LABEL.to_owned(), APP_NAME.to_owned());
    labels.insert(APP_INSTANCE_LABEL.to_owned(), stream.to_owned());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels
}

/// Highest shard index + 1 the operator ever reads from a label: `spec.shards` is at most
/// `MAX_SHARDS`, so a larger label is not one of its shards (and must not size anything).
pub const SHARD_INDEX_LIMIT: u32 = MAX_SHARDS.unsigned_abs();

/// The shard index in an object's `quotes.opa.io/shard` label; `None` unless it is a number
/// below [`SHARD_INDEX_LIMIT`] (a label anyone in the namespace can write is outside input).
pub fn shard_index(meta: &ObjectMeta) -> Option<u32> {
    meta.labels
        .as_ref()?
        .get(SHARD_LABEL)?
        .parse()
        .ok()
        .filter(|i| *i < SHARD_INDEX_LIMIT)
}

/// Whether `meta` names `uid` (the stream) as its controlling owner: only such objects are the
/// stream's shards. Labels anyone can copy; an object with the stream's labels but another (or
/// no) owner is someone else's and the operator never deletes it.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Metadata of a shard object: name, namespace, labels, and the stream as controlling owner
/// (so deleting the stream deletes it, and the controller is woken by changes to it).
pub fn shard_meta(namespace: &str, stream: &str, shard: u32, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(shard_name(stream, shard)),
        namespace: Some(namespace.to_owned()),
        labels: Some(shard_labels(stream, shard)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_objects_are_named_and_labelled_per_the_api() {
        assert_eq!(shard_name("sp500", 3), "sp500-shard-3");
        let labels = shard_labels("sp500", 3);
        assert_eq!(labels["quotes.opa.io/stream"], "sp500");
        assert_eq!(labels["quotes.opa.io/shard"], "3");
        assert_eq!(labels["app.kubernetes.io/name"], "quotestream-worker");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "quotestream-operator"
        );
        assert_eq!(selector_labels("sp500", 3).len(), 2);
    }

    #[test]
    fn shard_index_reads_the_label() {
        let meta = ObjectMeta {
            labels: Some(selector_labels("s", 7)),
            ..ObjectMeta::default()
        };
        assert_eq!(shard_index(&meta), Some(7));
        assert_eq!(shard_index(&ObjectMeta::default()), None);
        let huge = ObjectMeta {
            labels: Some(BTreeMap::from([(
                SHARD_LABEL.to_owned(),
                "4000000000".to_owned(),
            )])),
            ..ObjectMeta::default()
        };
        assert_eq!(shard_index(&huge), None, "beyond MAX_SHARDS: not a shard");
    }
}
