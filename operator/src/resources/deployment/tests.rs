use quotestream_api::crd::WorkerTemplate;

use super::*;
use crate::resources::fixtures::{plan, postgres_sink, stream, tickers};

fn template_meta(d: &Deployment) -> &ObjectMeta {
    d.spec.template.metadata.as_ref().unwrap()
}

#[test]
fn one_replica_selected_by_stream_and_shard_and_owned_by_the_stream() {
    let p = plan(&stream("sp500", 3), &tickers(&["AAPL", "MSFT", "NVDA"]));
    let d = deployment(&p, &p.shards[2]);
    assert_eq!(d.metadata.name.as_deref(), Some("sp500-shard-2"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("markets"));
    let labels = d.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["quotes.opa.io/stream"], "sp500");
    assert_eq!(labels["quotes.opa.io/shard"], "2");
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("QuoteStream", "sp500")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));

    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(1));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector.len(), 2);
    assert_eq!(selector["quotes.opa.io/stream"], "sp500");
    assert_eq!(selector["quotes.opa.io/shard"], "2");
    let pod_labels = template_meta(&d).labels.as_ref().unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));

    let body = serde_json::to_value(&d).unwrap();
    assert_eq!(body["apiVersion"], "apps/v1");
    assert_eq!(body["kind"], "Deployment");
}

#[test]
fn rolls_make_before_break_unless_the_vendor_caps_connections() {
    let few = tickers(&["AAPL", "MSFT"]);
    let p = plan(&stream("s", 2), &few);
    let s = strategy(&p);
    assert_eq!(s.type_.as_deref(), Some("RollingUpdate"));
    let ru = s.rolling_update.unwrap();
    assert_eq!(ru.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));

    let mut alpaca = stream("s", 1);
    alpaca.spec.source = crate::resources::fixtures::alpaca(None);
    let s = strategy(&plan(&alpaca, &few));
    assert_eq!(s.type_.as_deref(), Some("Recreate"));
    assert!(s.rolling_update.is_none());
    if let Some(a) = alpaca.spec.source.alpaca.as_mut() {
        a.max_connections = Some(2);
    }
    assert_eq!(
        strategy(&plan(&alpaca, &few)).type_.as_deref(),
        Some("RollingUpdate"),
        "one shard can surge into a second connection"
    );
}

#[test]
fn ticker_changes_leave_the_deployment_unchanged_but_sink_changes_roll_it() {
    let s = stream("s", 2);
    let before = plan(&s, &tickers(&["AAPL", "MSFT", "NVDA", "AMZN"]));
    let after = plan(
        &s,
        &tickers(&["AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "META"]),
    );
    assert_ne!(
        before.shards[0].config.tickers,
        after.shards[0].config.tickers
    );
    assert_eq!(
        deployment(&before, &before.shards[0]),
        deployment(&after, &after.shards[0]),
        "the tickers live only in the ConfigMap"
    );

    let mut with_pg = s.clone();
    with_pg.spec.sinks.postgres = Some(postgres_sink());
    let rolled = plan(&with_pg, &tickers(&["AAPL", "MSFT", "NVDA", "AMZN"]));
    let hash = |p: &StreamPlan| {
        template_meta(&deployment(p, &p.shards[0]))
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    assert_eq!(hash(&before), before.shards[0].config_hash);
    assert_ne!(hash(&before), hash(&rolled));
}

#[test]
fn user_labels_and_annotations_cannot_override_the_operators() {
    let mut s = stream("s", 1);
    s.spec.worker = Some(WorkerTemplate {
        labels: Some(
            [
                ("team".to_owned(), "markets".to_owned()),
                ("quotes.opa.io/stream".to_owned(), "other".to_owned()),
                ("quotes.opa.io/shard".to_owned(), "9".to_owned()),
            ]
            .into(),
        ),
        annotations: Some(
            [
                ("owner".to_owned(), "desk-7".to_owned()),
                (CONFIG_HASH_ANNOTATION.to_owned(), "forged".to_owned()),
            ]
            .into(),
        ),
        ..WorkerTemplate::default()
    });
    let p = plan(&s, &tickers(&["AAPL"]));
    let d = deployment(&p, &p.shards[0]);
    let meta = template_meta(&d);
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "markets");
    assert_eq!(labels["quotes.opa.io/stream"], "s");
    assert_eq!(labels["quotes.opa.io/shard"], "0");
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["owner"], "desk-7");
    assert_eq!(annotations[CONFIG_HASH_ANNOTATION], p.shards[0].config_hash);
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}
