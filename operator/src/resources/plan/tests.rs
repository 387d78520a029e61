use std::num::NonZeroUsize;

use k8s_openapi::api::core::v1::EnvVar;
use quotestream_api::crd::{
    AssignmentStatus, PolygonSource, QuoteStreamStatus, SourceType, WorkerTemplate,
};
use quotestream_api::sharding::balanced_split;

use super::*;
use crate::resources::fixtures::{plan, postgres_sink, sp500, stream, tickers};

#[test]
fn worker_configs_carry_the_shard_its_tickers_and_its_budget_share() {
    let s = stream("sp500", 4);
    let p = plan(&s, &sp500());
    assert_eq!(p.shards.len(), 4);
    assert_eq!(
        (p.namespace.as_str(), p.stream.as_str()),
        ("markets", "sp500")
    );
    let total: usize = p.shards.iter().map(|sh| sh.config.tickers.len()).sum();
    assert_eq!(total, 503);
    for (i, sh) in p.shards.iter().enumerate() {
        assert_eq!(sh.index as usize, i);
        assert_eq!(sh.name, format!("sp500-shard-{i}"));
        let c = &sh.config;
        assert_eq!((c.shard, c.shards), (i as u32, 4));
        assert_eq!(
            c.requests_per_hour, 500.0,
            "2000 per hour shared by 4 shards"
        );
        assert_eq!(c.interval, "5s");
        assert_eq!(c.epoch, 1, "a stream without status starts at epoch 1");
        assert_eq!(c.fingerprint, p.assignment.shard_fingerprint(i));
        let back: WorkerConfig = serde_json::from_str(&sh.config_json).unwrap();
        assert_eq!(&back, c, "worker.json round-trips to the plan's config");
    }
    assert_eq!(p.image, OperatorSettings::default().worker_image);
    assert_eq!(p.owner.controller, Some(true));
    assert_eq!(p.owner.block_owner_deletion, Some(true));
    assert_eq!(p.owner.kind, "QuoteStream");
    assert_eq!(p.owner.api_version, "quotes.opa.io/v1alpha1");
}

#[test]
fn resharding_503_tickers_from_4_to_5_moves_only_the_minimum() {
    let all = sp500();
    let four = plan(&stream("sp500", 4), &all);
    let five = StreamPlan::new(
        &stream("sp500", 5),
        &all,
        Some(&four.assignment),
        &OperatorSettings::default(),
    )
    .unwrap();
    assert_eq!(four.assignment.moved_to(&five.assignment), 503 / 5);
    let sizes = five.assignment.sizes();
    assert!(sizes.iter().all(|&n| n == 100 || n == 101), "{sizes:?}");
    // Shards 0..4 only lose tickers: their rollout hash is unchanged, so they are not restarted.
    for i in 0..4 {
        assert_eq!(four.shards[i].config_hash, five.shards[i].config_hash);
    }
}

#[test]
fn config_hash_ignores_tickers_and_shard_count_but_not_sinks() {
    let few = tickers(&["AAPL", "MSFT", "NVDA", "AMZN"]);
    let s = stream("s", 2);
    let base = plan(&s, &few);
    let more = plan(
        &s,
        &tickers(&["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META"]),
    );
    assert_ne!(base.shards[0].config.tickers, more.shards[0].config.tickers);
    assert_eq!(base.shards[0].config_hash, more.shards[0].config_hash);

    let three = plan(&stream("s", 3), &few);
    assert_eq!(base.shards[0].config_hash, three.shards[0].config_hash);

    let mut with_pg = s.clone();
    with_pg.spec.sinks.postgres = Some(postgres_sink());
    let changed = plan(&with_pg, &few);
    assert_ne!(base.shards[0].config_hash, changed.shards[0].config_hash);

    let mut budget = s.clone();
    budget.spec.source.rate_limit.requests_per_hour = 1000;
    assert_ne!(
        base.shards[0].config_hash,
        plan(&budget, &few).shards[0].config_hash
    );
    assert_ne!(
        base.shards[0].config_hash, base.shards[1].config_hash,
        "per shard"
    );
    assert_eq!(
        config_hash(&base.shards[0].config).unwrap(),
        base.shards[0].config_hash
    );
}

#[test]
fn epoch_stays_while_the_assignment_is_unchanged_and_grows_when_it_changes() {
    let few = tickers(&["AAPL", "MSFT", "NVDA"]);
    let mut s = stream("s", 2);
    let first = plan(&s, &few);
    s.status = Some(QuoteStreamStatus {
        assignment: Some(AssignmentStatus {
            epoch: 7,
            hash: first.fingerprint.clone(),
        }),
        ..QuoteStreamStatus::default()
    });
    assert_eq!(plan(&s, &few).epoch, 7);
    let grown = plan(&s, &tickers(&["AAPL", "MSFT", "NVDA", "TSLA"]));
    assert_eq!(grown.epoch, 8);
    assert!(grown.shards.iter().all(|sh| sh.config.epoch == 8));
}

#[test]
fn previous_assignment_is_evolved_not_recomputed() {
    let all = sp500();
    let n = NonZeroUsize::new(4).unwrap();
    let before = balanced_split(&all, n);
    let mut fewer: Vec<&str> = all.iter().map(|t| t.as_str()).collect();
    fewer.retain(|t| *t != "AAPL");
    let fewer = tickers(&fewer);
    let p = StreamPlan::new(
        &stream("sp500", 4),
        &fewer,
        Some(&before),
        &OperatorSettings::default(),
    )
    .unwrap();
    assert!(
        before.moved_to(&p.assignment) <= 1,
        "a removal moves at most one other ticker"
    );
}

/// Massive (Polygon) allows one connection per cluster and API key: without `maxConnections`
/// a polygon stream runs one shard, and the message says why and what to set.
#[test]
fn polygon_streams_are_limited_to_the_connections_the_account_allows() {
    let few = tickers(&["AAPL", "MSFT", "NVDA"]);
    let mut s = stream("live", 2);
    s.spec.source = crate::resources::fixtures::source(SourceType::Polygon);
    s.spec.source.polygon = Some(PolygonSource {
        api_key_secret_ref: crate::resources::fixtures::secret("massive", "apiKey"),
        url: None,
        max_connections: None,
    });
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "TooManyConnections");
    assert_eq!(
        err.to_string(),
        "spec.shards (2) needs 2 connections but polygon allows 1 per API key unless the plan says otherwise (spec.source.polygon.maxConnections is unset): lower spec.shards to 1, or set spec.source.polygon.maxConnections to what the account allows"
    );
    s.spec.shards = 1;
    assert!(StreamPlan::new(&s, &few, None, &OperatorSettings::default()).is_ok());

    s.spec.shards = 3;
    if let Some(p) = s.spec.source.polygon.as_mut() {
        p.max_connections = Some(2);
    }
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.shards (3) needs 3 connections but spec.source.polygon.maxConnections allows 2: lower spec.shards to 2 or raise maxConnections if the account allows more"
    );
    if let Some(p) = s.spec.source.polygon.as_mut() {
        p.max_connections = Some(3);
    }
    assert!(StreamPlan::new(&s, &few, None, &OperatorSettings::default()).is_ok());
}

#[test]
fn errors_name_the_field_and_carry_a_condition_reason() {
    let few = tickers(&["AAPL", "MSFT"]);
    let err =
        StreamPlan::new(&stream("s", 3), &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "InvalidShardCount");
    assert!(err.to_string().starts_with("spec.shards (3)"), "{err}");

    let mut s = stream("s", 2);
    s.spec.source = crate::resources::fixtures::alpaca(None);
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "TooManyConnections");
    assert_eq!(
        err.to_string(),
        "spec.shards (2) needs 2 connections but alpaca allows 1 per API key unless the plan says otherwise (spec.source.alpaca.maxConnections is unset): lower spec.shards to 1, or set spec.source.alpaca.maxConnections to what the account allows"
    );
    if let Some(a) = s.spec.source.alpaca.as_mut() {
        a.max_connections = Some(2);
    }
    assert!(StreamPlan::new(&s, &few, None, &OperatorSettings::default()).is_ok());

    let mut s = stream("s", 1);
    s.spec.worker = Some(WorkerTemplate {
        env: Some(vec![
            EnvVar {
                name: "RUST_LOG".into(),
                value: Some("debug".into()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "REDIS_URL".into(),
                value: Some("redis://x".into()),
                ..EnvVar::default()
            },
        ]),
        ..WorkerTemplate::default()
    });
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.worker.env[1]: REDIS_URL is set by the operator; remove it from spec.worker.env"
    );
    // The CA file is the operator's mount (caSecretRef): a stream cannot point it elsewhere.
    s.spec.worker = Some(WorkerTemplate {
        env: Some(vec![EnvVar {
            name: "QUOTESTREAM_REDIS_CA_FILE".into(),
            value: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            ..EnvVar::default()
        }]),
        ..WorkerTemplate::default()
    });
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.worker.env[0]: QUOTESTREAM_REDIS_CA_FILE is set by the operator; remove it from spec.worker.env"
    );

    let mut s = stream("s", 1);
    s.metadata.uid = None;
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert!(matches!(err, PlanError::Metadata { field: "uid" }), "{err}");

    let s = stream(&"x".repeat(64), 1);
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "InvalidMetadata");

    let mut s = stream("s", 1);
    s.spec.interval = "soon".into();
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "InvalidInterval");
}

#[test]
fn worker_json_carries_the_queue_budget_derived_from_the_memory_limit() {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    const MI: u64 = 1 << 20;
    let few = tickers(&["AAPL", "MSFT"]);
    let budget = |s: &QuoteStream| {
        let p = plan(s, &few);
        let json: serde_json::Value = serde_json::from_str(&p.shards[0].config_json).unwrap();
        (json["queueBytes"].as_u64(), p.shards[0].config_hash.clone())
    };
    // The default pod (128Mi) with Redis alone: a sixteenth of the limit for its one queue.
    let mut s = stream("s", 1);
    let (default, default_hash) = budget(&s);
    assert_eq!(default, Some(8 * MI));
    // Redis + PostgreSQL in 1Gi: a sixteenth split across the two queues.
    s.spec.sinks.postgres = Some(postgres_sink());
    s.spec.worker = Some(WorkerTemplate {
        resources: Some(ResourceRequirements {
            limits: Some(std::collections::BTreeMap::from([(
                "memory".to_owned(),
                Quantity("1Gi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        ..WorkerTemplate::default()
    });
    let (big, big_hash) = budget(&s);
    assert_eq!(big, Some(32 * MI));
    assert_ne!(big_hash, default_hash, "a new budget rolls the pods");
    if let Some(r) = s.spec.worker.as_mut().and_then(|w| w.resources.as_mut()) {
        r.limits = Some(std::collections::BTreeMap::from([(
            "memory".to_owned(),
            Quantity("plenty".into()),
        )]));
    }
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "InvalidWorkerTemplate");
    assert!(
        err.to_string()
            .starts_with("spec.worker.resources.limits.memory \"plenty\""),
        "{err}"
    );
}

#[test]
fn spec_worker_image_overrides_the_default() {
    let mut s = stream("s", 1);
    s.spec.worker = Some(WorkerTemplate {
        image: Some("ghcr.io/quotestream/quotestream-worker:1.2".into()),
        ..WorkerTemplate::default()
    });
    assert_eq!(
        plan(&s, &tickers(&["AAPL"])).image,
        "ghcr.io/quotestream/quotestream-worker:1.2"
    );
}

#[test]
fn an_image_outside_the_allow_list_is_refused_naming_the_field() {
    let mut s = stream("s", 1);
    s.spec.worker = Some(WorkerTemplate {
        image: Some("docker.io/library/busybox:latest".into()),
        ..WorkerTemplate::default()
    });
    let few = tickers(&["AAPL"]);
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "ImageNotAllowed");
    let msg = err.to_string();
    assert!(
        msg.contains("spec.worker.image")
            && msg.contains("docker.io/library/busybox:latest")
            && msg.contains("ghcr.io/quotestream/quotestream-worker")
            && msg.contains("--allowed-images"),
        "{msg}"
    );
    let mut admin = OperatorSettings::default();
    admin.policy.images =
        crate::policy::ImageAllowList::new(["docker.io/library/*".to_owned()]).unwrap();
    assert!(StreamPlan::new(&s, &few, None, &admin).is_ok());
}

#[test]
fn a_source_url_outside_the_host_list_is_refused_naming_the_field() {
    let mut s = stream("s", 1);
    s.spec.source.kind = SourceType::Polygon;
    s.spec.source.polygon = Some(PolygonSource {
        api_key_secret_ref: quotestream_api::crd::SecretKeyRef {
            name: "massive".into(),
            key: "apiKey".into(),
        },
        url: Some("ws://attacker.example/stocks".into()),
        max_connections: None,
    });
    let few = tickers(&["AAPL"]);
    let err = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap_err();
    assert_eq!(err.reason(), "SourceHostNotAllowed");
    let msg = err.to_string();
    for needle in [
        "spec.source.polygon.url",
        "attacker.example",
        "socket.massive.com",
        "API key",
        "--allowed-source-hosts polygon=",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    // The vendor's host passes, and the worker is told the list it must enforce.
    if let Some(p) = s.spec.source.polygon.as_mut() {
        p.url = Some("wss://delayed.massive.com/stocks".into());
    }
    let p = StreamPlan::new(&s, &few, None, &OperatorSettings::default()).unwrap();
    assert_eq!(
        p.source_hosts.as_deref(),
        Some(
            "socket.massive.com,delayed.massive.com,socket.polygon.io,delayed.polygon.io,api.massive.com,api.polygon.io,loopback"
        )
    );
    // A source that reaches no host gets no list.
    let p = StreamPlan::new(&stream("s", 1), &few, None, &OperatorSettings::default()).unwrap();
    assert_eq!(p.source_hosts, None);
}
