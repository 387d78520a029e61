//! `spec.autoscale` against a real kube-apiserver: the shard count follows the ticker count of a
//! `tickersFrom` ConfigMap (300 → 1000 tickers at 100 per shard: 3 → 10 shards) moving no
//! ticker that already had a shard, and an HPA-style patch of the scale subresource converges:
//! above the ticker count's need it adds shards, below it the need wins.
//!
//! There is no kubelet here: a test reports a Deployment ready itself (`mark_ready`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use serde_json::{Value, json};
use support::cluster::{
    WAIT, apply, assignment, control_plane_with_crd, eventually, get_json, kubectl, mark_ready,
    wait_stream_ready,
};
use support::operator::Operator;
use support::reshard::{Lists, is_settled, owners};

const NS: &str = "default";

/// `n` distinct valid tickers (AAA, AAB, ...).
fn tickers(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let letter = |k: usize| char::from(b'A' + u8::try_from(k % 26).unwrap());
            [letter(i / 676), letter(i / 26), letter(i)]
                .iter()
                .collect()
        })
        .collect()
}

fn watchlist(n: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "universe", "namespace": NS},
           "data": {"tickers": tickers(n).join("\n")}})
}

#[test]
fn shards_follow_the_ticker_count_and_an_hpa_patch_converges() {
    let cp = control_plane_with_crd();
    let operator = Operator::admin(&cp);
    let context = || format!("operator log:\n{}", operator.log());
    // The shards appear, a test reports them ready (make before break: tickers moving to a
    // new shard stay with their old one until then), then the lists settle.
    let settle = |shards: usize, tickers: usize| -> Lists {
        eventually(&format!("{shards} shard lists"), WAIT, context, || {
            (assignment(&cp, NS, "universe").len() == shards).then_some(())
        });
        for i in 0..shards {
            mark_ready(&cp, NS, &format!("universe-shard-{i}"));
        }
        let lists = eventually(
            &format!("{shards} shards holding {tickers} tickers"),
            WAIT,
            context,
            || {
                let lists = assignment(&cp, NS, "universe");
                (lists.len() == shards && is_settled(&lists, tickers)).then_some(lists)
            },
        );
        wait_stream_ready(&cp, NS, "universe", shards as u64, context);
        lists
    };

    apply(&cp, &watchlist(300));
    apply(
        &cp,
        &json!({
            "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
            "metadata": {"name": "universe", "namespace": NS},
            "spec": {"tickersFrom": {"configMapKeyRef": {"name": "universe", "key": "tickers"}},
                     "autoscale": {"tickersPerShard": 100, "maxShards": 20},
                     "source": {"type": "synthetic"}, "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
        }),
    );
    let three = settle(3, 300);
    let qs = get_json(&cp, &["get", "qs/universe", "-n", NS]).unwrap();
    assert_eq!(
        qs["spec"]["shards"], 1,
        "spec.shards is left to the user and the HPA"
    );
    assert_eq!(qs["status"]["desiredShards"], 3, "{}", qs["status"]);

    // The universe grows: 10 shards, and no ticker that had a shard moves (each old shard
    // keeps its 100; the 700 new tickers fill the 7 new shards).
    apply(&cp, &watchlist(1000));
    let ten = settle(10, 1000);
    let (before, after) = (owners(&three), owners(&ten));
    let moved: Vec<&String> = before.keys().filter(|t| before[*t] != after[*t]).collect();
    assert!(moved.is_empty(), "tickers moved on a scale-out: {moved:?}");

    // An HPA writes the scale subresource: above the need it adds shards ...
    kubectl(
        &cp,
        &["scale", "qs/universe", "-n", NS, "--replicas=12"],
        None,
    );
    settle(12, 1000);
    let scale = kubectl(
        &cp,
        &[
            "get",
            "--raw",
            "/apis/quotes.opa.io/v1alpha1/namespaces/default/quotestreams/universe/scale",
        ],
        None,
    );
    assert_eq!(scale["spec"]["replicas"], 12);
    // ... below it the ticker count's need wins.
    kubectl(
        &cp,
        &["scale", "qs/universe", "-n", NS, "--replicas=2"],
        None,
    );
    settle(10, 1000);

    // maxShards caps the count.
    apply(&cp, &watchlist(5000));
    settle(20, 5000);
}
