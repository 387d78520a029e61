//! Reconcile decisions at the request level: each scenario runs the real `reconcile` against
//! the scripted API server of [`super::mock_api`] and states every call it must make, in order,
//! with the essentials of each (method, path, field manager, body), then that it makes no more.
//! The objects "already in the cluster" are built with the same `resources` functions a
//! previous reconcile would have used, as it applied them (`applied::stamped`). The scenarios
//! run with `--api-concurrency 1`, so the calls come in a fixed order.

use std::collections::BTreeSet;

use http::Method;
use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::jiff::Timestamp;
use quotestream_api::worker_config::WORKER_CONFIG_KEY;
use quotestream_api::{TickerSet, WorkerConfig};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::mock_api::{self, ApiServer, Call, list};
use super::*;
use crate::resources::applied::stamped;
use crate::resources::fixtures::{sp500, stream};
use crate::resources::previous::previous_assignment;

const CONFIG_MAPS: &str = "/api/v1/namespaces/markets/configmaps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/markets/deployments";
const PODS: &str = "/api/v1/namespaces/markets/pods";
const STATUS: &str = "/apis/quotes.opa.io/v1alpha1/namespaces/markets/quotestreams/sp500/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/markets/events";
const SELECTOR: &str = "quotes.opa.io/stream=sp500";

fn config_map_path(name: &str) -> String {
    format!("{CONFIG_MAPS}/{name}")
}

fn deployment_path(name: &str) -> String {
    format!("{DEPLOYMENTS}/{name}")
}

fn shard(i: usize) -> String {
    format!("sp500-shard-{i}")
}

/// One reconcile of one stream in flight, and the API server it talks to.
struct Reconcile {
    api: ApiServer,
    task: JoinHandle<Result<Action, Error>>,
    metrics: Metrics,
}

impl Reconcile {
    fn start(qs: &QuoteStream) -> Self {
        Self::start_with(qs, sequential())
    }

    fn start_with(qs: &QuoteStream, settings: OperatorSettings) -> Self {
        let (client, api) = mock_api::client();
        let metrics = Metrics::new().unwrap();
        let ctx = Context::new(client, settings, metrics.clone(), Some("operator-0".into()));
        // The task holds the only Context, so the client goes away when reconcile returns.
        let task = tokio::spawn(reconcile(Arc::new(qs.clone()), Arc::new(ctx)));
        Self { api, task, metrics }
    }

    /// The next call, which must be `method path`.
    async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = tokio::select! {
            call = self.api.next() => call,
            done = &mut self.task => panic!("reconcile returned {done:?} where {method} {path} was expected"),
        };
        let call =
            call.unwrap_or_else(|| panic!("no more calls where {method} {path} was expected"));
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "expected {method} {path}, got {call:?}"
        );
        call
    }

    /// A server-side apply of `kind` `name` by the operator, taking over conflicting fields.
    async fn expect_apply(&mut self, path: &str, kind: &str, name: &str) -> Call {
        let call = self.expect(Method::PATCH, path).await;
        assert!(
            call.is_forced_apply_by(FIELD_MANAGER),
            "{call:?} is a forced apply by {FIELD_MANAGER} ({:?})",
            call.content_type
        );
        assert_eq!(call.body["kind"], kind, "{call:?}");
        assert_eq!(call.body["metadata"]["name"], name, "{call:?}");
        assert_eq!(call.body["metadata"]["labels"][STREAM_LABEL], "sp500");
        call
    }

    /// A list of the stream's objects by its label.
    async fn expect_list(&mut self, path: &str) -> Call {
        let call = self.expect(Method::GET, path).await;
        assert_eq!(
            call.query.get("labelSelector").map(String::as_str),
            Some(SELECTOR)
        );
        // The objects the operator writes are read consistently: a cached list could hold an
        // older version than the one it wrote, and the operator would write it again.
        if path != PODS {
            assert_eq!(
                call.query.get("resourceVersion"),
                None,
                "{path} is listed consistently"
            );
        }
        call
    }

    /// The stream's first reads: its ticker ConfigMap (answered with the S&P 500 list), then the
    /// list of its shard ConfigMaps (answered with `stored`).
    async fn expect_reads(&mut self, stored: &[ConfigMap]) {
        self.expect(Method::GET, &config_map_path("sp500"))
            .await
            .ok(&ticker_list());
        self.expect_list(CONFIG_MAPS)
            .await
            .ok(&list("v1", "ConfigMapList", stored));
    }

    /// The apply of shard `i`'s ConfigMap.
    async fn expect_shard_config_map(&mut self, i: usize) -> Call {
        self.expect_apply(&config_map_path(&shard(i)), "ConfigMap", &shard(i))
            .await
    }

    /// The apply of shard `i`'s Deployment.
    async fn expect_shard_deployment(&mut self, i: usize) -> Call {
        self.expect_apply(&deployment_path(&shard(i)), "Deployment", &shard(i))
            .await
    }

    /// The list of the stream's Deployments (before any is applied), answered with `listed`.
    async fn expect_deployments<T: serde::Serialize>(&mut self, listed: &[T]) {
        self.expect_list(DEPLOYMENTS)
            .await
            .ok(&list("apps/v1", "DeploymentList", listed));
    }

    /// The list of the stream's Deployments, answered with `listed`, then of its pods,
    /// answered with `pods`.
    async fn expect_workers<T: serde::Serialize>(&mut self, listed: &[T], pods: &[Value]) {
        self.expect_list(DEPLOYMENTS)
            .await
            .ok(&list("apps/v1", "DeploymentList", listed));
        self.expect_pods(pods).await;
    }

    /// The list of the stream's pods, answered with `listed`: from the API server's cache
    /// (`resourceVersion=0`; why: `list_pods`).
    async fn expect_pods(&mut self, listed: &[Value]) {
        let call = self.expect_list(PODS).await;
        assert_eq!(
            (
                call.query.get("resourceVersion").map(String::as_str),
                call.query.get("resourceVersionMatch").map(String::as_str)
            ),
            (Some("0"), Some("NotOlderThan")),
            "the pods are listed from the cache"
        );
        call.ok(&list("v1", "PodList", listed));
    }

    /// The status merge patch; answered with the stream carrying it. Returns the status.
    async fn expect_status(&mut self, qs: &QuoteStream) -> Value {
        let call = self.expect(Method::PATCH, STATUS).await;
        assert_eq!(
            call.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        let status = call.body["status"].clone();
        let mut answer = serde_json::to_value(qs).unwrap();
        answer["status"] = status.clone();
        call.ok(&answer);
        status
    }

    /// An Event about the stream; returns its body.
    async fn expect_event(&mut self, type_: &str, reason: &str) -> Value {
        let call = self.expect(Method::POST, EVENTS).await;
        let event = call.body.clone();
        assert_eq!(
            (event["type"].as_str(), event["reason"].as_str()),
            (Some(type_), Some(reason)),
            "{event}"
        );
        assert_eq!(event["regarding"]["kind"], "QuoteStream");
        assert_eq!(event["regarding"]["name"], "sp500");
        assert_eq!(event["reportingController"], FIELD_MANAGER);
        call.echo();
        event
    }

    /// Waits for reconcile to return and checks that it made no call the scenario did not take.
    async fn finish(mut self) -> Result<Action, Error> {
        let result = tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("reconcile returns")
            .expect("reconcile does not panic");
        if let Some(call) = self.api.next().await {
            panic!("unexpected call after the scenario: {call:?}");
        }
        result
    }
}

/// The operator's defaults with one write at a time (`--api-concurrency 1`).
fn sequential() -> OperatorSettings {
    OperatorSettings {
        api_concurrency: std::num::NonZeroU16::MIN,
        ..OperatorSettings::default()
    }
}

/// `object` as the API server stores it after the operator applied it.
fn as_applied<K: serde::Serialize + serde::de::DeserializeOwned>(object: &K) -> K {
    serde_json::from_value(stamped(object).unwrap()).unwrap()
}

/// The ConfigMap `sp500` key `tickers`: the S&P 500 list the fixture streams name.
fn ticker_list() -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("sp500".into());
    cm.metadata.namespace = Some("markets".into());
    cm.data = Some(
        [(
            "tickers".to_owned(),
            include_str!("../../../api/testdata/sp500.txt").to_owned(),
        )]
        .into(),
    );
    cm
}

fn worker_config(config_map: &Value) -> WorkerConfig {
    let json = config_map["data"][WORKER_CONFIG_KEY].as_str().unwrap();
    serde_json::from_str(json).unwrap()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// What a finished reconcile of `qs` over `tickers` (continuing `previous`) left in the
/// cluster: its shard objects, the workers ready or not, and the status it wrote.
struct Stored {
    config_maps: Vec<ConfigMap>,
    deployments: Vec<Deployment>,
    status: QuoteStreamStatus,
}

fn stored(
    qs: &QuoteStream,
    tickers: &TickerSet,
    previous: Option<&quotestream_api::sharding::Assignment>,
    ready: &[bool],
) -> Stored {
    let plan = StreamPlan::new(qs, tickers, previous, &OperatorSettings::default()).unwrap();
    let observed: Vec<ShardObservation> = ready
        .iter()
        .map(|&r| ShardObservation {
            ready: r,
            rolled_out: r,
            stalled: false,
        })
        .collect();
    let at = Time(Timestamp::from_second(1_780_000_000).unwrap());
    Stored {
        config_maps: plan
            .shards
            .iter()
            .map(|s| as_applied(&config_map(&plan, s)))
            .collect(),
        deployments: plan
            .shards
            .iter()
            .zip(ready)
            .map(|(s, &r)| running(as_applied(&deployment(&plan, s)), r))
            .collect(),
        status: planned_status(qs, &plan, &observed, &at),
    }
}

/// The Deployment as the API server reports it once its pod is (or is not yet) ready.
fn running(mut d: Deployment, ready: bool) -> Deployment {
    let n = i32::from(ready);
    d.metadata.generation = Some(1);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        updated_replicas: Some(1),
        ready_replicas: Some(n),
        available_replicas: Some(n),
        ..DeploymentStatus::default()
    });
    d
}

/// A ready worker pod of shard `i` whose `/assignment` reports `config`'s list: a real HTTP
/// server on loopback, where the pod IP and `http` port point (what a worker serves,
/// `quotestream_api::worker_config::AppliedList`).
async fn worker_streaming(i: usize, config: &WorkerConfig) -> Value {
    use quotestream_api::contract::ASSIGNMENT_PATH;
    use quotestream_api::worker_config::AppliedList;
    let report = AppliedList::of(config, Timestamp::now());
    let app = axum::Router::new().route(
        ASSIGNMENT_PATH,
        axum::routing::get(move || {
            let report = report.clone();
            async move { axum::Json(report) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Runs until the test's runtime ends.
    tokio::spawn(async move { axum::serve(listener, app).await });
    serde_json::json!({
        "metadata": {"name": format!("{}-7d9f-x{i}", shard(i)), "namespace": "markets",
                     "labels": {STREAM_LABEL: "sp500", "quotes.opa.io/shard": i.to_string()}},
        "spec": {"containers": [{"name": "worker", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn with_status(mut qs: QuoteStream, status: &QuoteStreamStatus) -> QuoteStream {
    qs.status = Some(status.clone());
    qs
}

fn sorted(tickers: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = tickers.into_iter().collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_new_stream_gets_its_shards_applied_then_its_status_and_a_created_event() {
    let qs = stream("sp500", 3);
    let mut r = Reconcile::start(&qs);

    r.expect_reads(&[]).await;
    // Every shard gains tickers, so every ConfigMap is written before any Deployment.
    let mut assigned = Vec::new();
    for i in 0..3 {
        let call = r.expect_shard_config_map(i).await;
        let config = worker_config(&call.body);
        assert_eq!(
            (config.shard, config.shards, config.epoch),
            (i as u32, 3, 1)
        );
        assert_eq!(call.body["metadata"]["ownerReferences"][0]["name"], "sp500");
        assigned.extend(config.tickers);
        call.echo();
    }
    let all = sorted(sp500().iter().map(|t| t.to_string()));
    assert_eq!(sorted(assigned), all, "each ticker on exactly one shard");
    r.expect_deployments::<Deployment>(&[]).await;
    for i in 0..3 {
        let call = r.expect_shard_deployment(i).await;
        assert_eq!(
            call.body["spec"]["selector"]["matchLabels"]["quotes.opa.io/shard"],
            i.to_string()
        );
        call.echo();
    }
    r.expect_pods(&[]).await;

    let status = r.expect_status(&qs).await;
    assert_eq!(status["readyShards"], 0);
    assert_eq!(status["tickers"], 503);
    assert_eq!(status["selector"], SELECTOR);
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["assignment"]["epoch"], 1);
    assert_eq!(status["shards"].as_array().map(Vec::len), Some(3));
    let ready = condition(&status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&"False".into(), &"ShardsStarting".into())
    );
    let event = r.expect_event("Normal", "Created").await;
    assert_eq!(event["note"], "3 shards for 503 tickers");

    let metrics = r.metrics.clone();
    let action = r.finish().await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(15)),
        "workers are starting"
    );
    let shards = |g: &prometheus::IntGaugeVec| g.with_label_values(&["markets", "sp500"]).get();
    assert_eq!(
        (
            shards(&metrics.shards_desired),
            shards(&metrics.shards_ready)
        ),
        (3, 0)
    );
}

#[tokio::test]
async fn an_unchanged_stream_is_read_and_nothing_is_written() {
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true; 3]);
    let qs = with_status(stream("sp500", 3), &before.status);
    let mut r = Reconcile::start(&qs);

    // Reads only: every shard object and the status already are what this reconcile would
    // write, transition times included.
    r.expect_reads(&before.config_maps).await;
    r.expect_deployments(&before.deployments).await;
    r.expect_pods(&[]).await;

    let metrics = r.metrics.clone();
    let action = r.finish().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let ready = metrics
        .shards_ready
        .with_label_values(&["markets", "sp500"]);
    assert_eq!(ready.get(), 3);
    assert_eq!(metrics.reconciliations(Outcome::Ok).get(), 1);
    let skipped = |w| metrics.unchanged(w).get();
    assert_eq!(
        [Written::ConfigMap, Written::Deployment, Written::Status].map(skipped),
        [3, 3, 1]
    );
    assert!(!metrics.render().contains("quotestream_api_writes_total{"));
}

#[tokio::test]
async fn scale_down_deletes_the_removed_shard_only_after_its_tickers_have_new_owners() {
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true; 3]);
    let old: Vec<WorkerConfig> = before
        .config_maps
        .iter()
        .map(|cm| worker_config(&serde_json::to_value(cm).unwrap()))
        .collect();
    let mut qs = with_status(stream("sp500", 2), &before.status);
    qs.metadata.generation = Some(4);
    let mut r = Reconcile::start(&qs);

    r.expect_reads(&before.config_maps).await;
    // 1. The remaining shards take over shard 2's tickers and keep their own.
    let mut new = Vec::new();
    let mut written = Vec::new();
    for (i, old) in old.iter().take(2).enumerate() {
        let call = r.expect_shard_config_map(i).await;
        written.push(call.body.clone());
        let config = worker_config(&call.body);
        let kept: BTreeSet<_> = config.tickers.iter().collect();
        assert!(
            old.tickers.iter().all(|t| kept.contains(t)),
            "shard {i} keeps its tickers"
        );
        assert_eq!((config.shards, config.epoch), (2, 2));
        new.extend(config.tickers);
        call.echo();
    }
    let all = sorted(sp500().iter().map(|t| t.to_string()));
    assert_eq!(sorted(new), all, "shard 2's tickers moved, none lost");
    // A ticker-only change leaves the Deployments as they are: none is written.
    // Both remaining workers stream their new lists (they read them from the mounted files).
    let mut pods = Vec::new();
    for (i, cm) in written.iter().enumerate() {
        pods.push(worker_streaming(i, &worker_config(cm)).await);
    }
    r.expect_workers(&before.deployments, &pods).await;
    // 2. Only now shard 2 goes: its Deployment, then its ConfigMap, in the background.
    let call = r.expect(Method::DELETE, &deployment_path(&shard(2))).await;
    assert_eq!(call.body["propagationPolicy"], "Background");
    call.ok(&before.deployments[2]);
    let call = r.expect(Method::DELETE, &config_map_path(&shard(2))).await;
    assert_eq!(call.body["propagationPolicy"], "Background");
    call.ok(&before.config_maps[2]);
    let handed = r.expect_event("Normal", "HandedOver").await;
    let moved = old[2].tickers.len();
    assert!(
        handed["note"].as_str().unwrap().starts_with(&format!(
            "{moved} tickers handed to shards {{0, 1}}, acknowledged after "
        )),
        "{handed}"
    );
    assert!(
        handed["note"]
            .as_str()
            .unwrap()
            .ends_with("ownership gap 0.000 s"),
        "{handed}"
    );

    let status = r.expect_status(&qs).await;
    assert_eq!(status["shards"].as_array().map(Vec::len), Some(2));
    assert_eq!(status["readyShards"], 2);
    assert_eq!(status["assignment"]["epoch"], 2);
    let scaled = r.expect_event("Normal", "Scaled").await;
    assert_eq!(scaled["note"], "3 -> 2 shards (1 removed)");
    let resharded = r.expect_event("Normal", "Resharded").await;
    assert_eq!(
        resharded["note"],
        "assignment epoch 2 (503 tickers over 2 shards)"
    );

    let metrics = r.metrics.clone();
    let action = r.finish().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "quotestream_handover_gap_seconds_bucket{{le=\"0\"}} {moved}"
        )),
        "every moved ticker measured, none with a gap:\n{text}"
    );
    assert_eq!(metrics.handed_over("acknowledged").get(), moved as u64);
}

#[tokio::test]
async fn a_ready_shard_still_streaming_its_old_list_keeps_the_removed_shard_running() {
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true; 3]);
    let mut qs = with_status(stream("sp500", 2), &before.status);
    qs.metadata.generation = Some(4);
    let mut r = Reconcile::start(&qs);

    r.expect_reads(&before.config_maps).await;
    let mut pods = Vec::new();
    for i in 0..2 {
        r.expect_shard_config_map(i).await.echo();
    }
    // (A ticker-only change writes no Deployment.) Shard 0 acknowledges its new list; shard 1 is ready but kubelet has not refreshed its
    // mounted file: it still streams its old list.
    let new0 = stored(
        &qs,
        &sp500(),
        previous_assignment("sp500", &before.config_maps)
            .map(|p| p.assignment)
            .as_ref(),
        &[true; 2],
    );
    pods.push(
        worker_streaming(
            0,
            &worker_config(&serde_json::to_value(&new0.config_maps[0]).unwrap()),
        )
        .await,
    );
    pods.push(
        worker_streaming(
            1,
            &worker_config(&serde_json::to_value(&before.config_maps[1]).unwrap()),
        )
        .await,
    );
    r.expect_workers(&before.deployments, &pods).await;
    // No DELETE: shard 2 keeps streaming the tickers shard 1 does not stream yet.
    let status = r.expect_status(&qs).await;
    assert_eq!(status["readyShards"], 2);
    r.expect_event("Normal", "Scaled").await;
    r.expect_event("Normal", "Resharded").await;
    let metrics = r.metrics.clone();
    let action = r.finish().await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(1)),
        "asks again in a second: an acknowledgement is no API event"
    );
    let pending = metrics
        .handover_pending
        .with_label_values(&["markets", "sp500"])
        .get();
    let removed = worker_config(&serde_json::to_value(&before.config_maps[2]).unwrap());
    assert_eq!(
        pending as usize,
        removed.tickers.len(),
        "shard 2's tickers are owned twice until shard 1 acknowledges"
    );
}

/// A scale-down 3 → 2 whose remaining shards are ready but whose pods do not answer on
/// `/assignment` (a closed port: a NetworkPolicy without the operator's rule, say), reconciled
/// with `handover_timeout`; returns the Event it recorded about the hand-over and the metrics.
async fn unanswered_scale_down(handover_timeout: Duration) -> (Value, Metrics) {
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true; 3]);
    let mut qs = with_status(stream("sp500", 2), &before.status);
    qs.metadata.generation = Some(4);
    let settings = OperatorSettings {
        handover_timeout,
        ..sequential()
    };
    let mut r = Reconcile::start_with(&qs, settings);
    r.expect_reads(&before.config_maps).await;
    for i in 0..2 {
        r.expect_shard_config_map(i).await.echo();
    }
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let silent: Vec<Value> = (0..2)
        .map(|i| {
            serde_json::json!({
                "metadata": {"name": format!("{}-x", shard(i)), "namespace": "markets",
                             "labels": {STREAM_LABEL: "sp500", "quotes.opa.io/shard": i.to_string()}},
                "spec": {"containers": [{"name": "worker", "ports": [{"name": "http", "containerPort": closed}]}]},
                "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
            })
        })
        .collect();
    r.expect_workers(&before.deployments, &silent).await;
    r.expect(Method::DELETE, &deployment_path(&shard(2)))
        .await
        .ok(&before.deployments[2]);
    r.expect(Method::DELETE, &config_map_path(&shard(2)))
        .await
        .ok(&before.config_maps[2]);
    let event = r.expect(Method::POST, EVENTS).await;
    let body = event.body.clone();
    event.echo();
    r.expect_status(&qs).await;
    r.expect_event("Normal", "Scaled").await;
    r.expect_event("Normal", "Resharded").await;
    let metrics = r.metrics.clone();
    r.finish().await.unwrap();
    (body, metrics)
}

#[tokio::test]
async fn ready_shards_that_never_acknowledge_are_released_after_the_timeout_with_a_warning() {
    let (event, metrics) = unanswered_scale_down(Duration::from_nanos(1)).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("HandoverUnacknowledged")),
        "{event}"
    );
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("shards {0, 1} ready but did not acknowledge"),
        "{note}"
    );
    assert!(note.contains("port 8080"), "names the likely cause: {note}");
    assert!(metrics.handed_over("unacknowledged").get() > 0);
    assert_eq!(metrics.handed_over("acknowledged").get(), 0);
    assert!(
        metrics
            .render()
            .contains("quotestream_handover_gap_seconds_count 0"),
        "no gap is claimed for an unacknowledged release"
    );

    // --handover-timeout=0s: acknowledgement off, nobody asked, a Normal Event.
    let (event, _) = unanswered_scale_down(Duration::ZERO).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("HandedOver")),
        "{event}"
    );
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("--handover-timeout=0s"),
        "{event}"
    );
}

#[tokio::test]
async fn scale_up_keeps_the_losing_shards_lists_until_the_new_shard_is_ready() {
    let two = stored(&stream("sp500", 2), &sp500(), None, &[true; 2]);
    let qs = with_status(stream("sp500", 3), &two.status);
    let mut r = Reconcile::start(&qs);

    r.expect_reads(&two.config_maps).await;
    // Only the new shard gains; its list is written first.
    let call = r.expect_shard_config_map(2).await;
    let moved = worker_config(&call.body).tickers;
    assert!(!moved.is_empty());
    call.echo();
    // Only the new shard's Deployment is written (the others are unchanged); it exists but
    // its worker is not ready yet…
    r.expect_deployments(&two.deployments).await;
    r.expect_shard_deployment(2).await.echo();
    r.expect_pods(&[]).await;
    // …so shards 0 and 1 are not written: they keep streaming the moving tickers.
    let status = r.expect_status(&qs).await;
    assert_eq!(status["readyShards"], 2);
    assert_eq!(condition(&status, "Ready")["reason"], "ShardsStarting");
    // The waiting hand-over, as `kubectl get qs -o yaml` shows it.
    let handover = &status["handover"];
    assert_eq!(handover["movingTickers"], moved.len(), "{handover}");
    assert_eq!(handover["receivers"], json!([2]), "{handover}");
    assert_eq!(handover["notReady"], json!([2]), "{handover}");
    assert_eq!(handover["unacknowledged"], json!([]), "{handover}");
    let since: jiff::Timestamp = handover["since"].as_str().unwrap().parse().unwrap();
    let release_by: jiff::Timestamp = handover["releaseBy"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        release_by.duration_since(since),
        jiff::SignedDuration::from_secs(300),
        "--handover-timeout's default"
    );
    let scaled = r.expect_event("Normal", "Scaled").await;
    assert_eq!(scaled["note"], "2 -> 3 shards (0 removed)");
    r.expect_event("Normal", "Resharded").await;

    let action = r.finish().await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(1)),
        "polls the hand-over"
    );
}

#[tokio::test]
async fn the_losing_shards_let_go_once_the_new_shard_is_ready() {
    // The state the scale-up above left: shards 0 and 1 still on their old lists (epoch 1),
    // shard 2 on its new one (epoch 2), and now every worker ready.
    let two = stored(&stream("sp500", 2), &sp500(), None, &[true; 2]);
    let previous = previous_assignment("sp500", &two.config_maps).unwrap();
    let qs2 = with_status(stream("sp500", 3), &two.status);
    let three = stored(&qs2, &sp500(), Some(&previous.assignment), &[true; 3]);
    let mut config_maps = two.config_maps.clone();
    config_maps.push(three.config_maps[2].clone());
    let qs = with_status(stream("sp500", 3), &three.status);
    let mut r = Reconcile::start(&qs);

    r.expect_reads(&config_maps).await;
    // Shard 2 still takes tickers the stored lists of 0 and 1 hold: it would be written first,
    // but already has its list; the Deployments too are as they should be. Its worker
    // streams that list.
    let config2 = worker_config(&serde_json::to_value(&config_maps[2]).unwrap());
    let mut owned = config2.tickers.clone();
    let pod2 = worker_streaming(2, &config2).await;
    r.expect_workers(&three.deployments, &[pod2]).await;
    // Now the shrinking lists are written: every ticker has exactly one owner again.
    for i in 0..2 {
        let call = r.expect_shard_config_map(i).await;
        let config = worker_config(&call.body);
        assert_eq!(config.epoch, 2, "same assignment as the scale-up's");
        owned.extend(config.tickers);
        call.echo();
    }
    assert_eq!(sorted(owned), sorted(sp500().iter().map(|t| t.to_string())));
    let handed = r.expect_event("Normal", "HandedOver").await;
    assert!(
        handed["note"].as_str().unwrap().starts_with(&format!(
            "{} tickers handed to shards {{2}}",
            config2.tickers.len()
        )),
        "{handed}"
    );
    // The status (3 of 3 ready) is already the stored one: not written again.
    assert_eq!(three.status.ready_shards, 3);

    let action = r.finish().await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(300)),
        "no other event: nothing else new"
    );
}

#[tokio::test]
async fn a_missing_ticker_config_map_degrades_the_stream_and_touches_no_shard() {
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true; 3]);
    let qs = with_status(stream("sp500", 3), &before.status);
    let mut r = Reconcile::start(&qs);

    r.expect(Method::GET, &config_map_path("sp500"))
        .await
        .not_found();
    let status = r.expect_status(&qs).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (&degraded["status"], &degraded["reason"]),
        (&"True".into(), &"MissingConfigMap".into())
    );
    let message = degraded["message"].as_str().unwrap();
    assert!(message.contains("ConfigMap sp500 key tickers"), "{message}");
    assert_eq!(condition(&status, "Ready")["reason"], "MissingConfigMap");
    // The shards keep streaming their last lists, and the status still shows them.
    assert_eq!(status["shards"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        status["assignment"],
        serde_json::to_value(&before.status.assignment).unwrap()
    );
    let event = r.expect_event("Warning", "MissingConfigMap").await;
    assert_eq!(event["note"].as_str(), Some(message));

    let metrics = r.metrics.clone();
    let action = r.finish().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let errors = metrics.reconcile_errors("MissingConfigMap");
    assert_eq!(errors.get(), 1);
}

#[tokio::test]
async fn more_shards_than_the_vendor_allows_connections_degrades_the_stream() {
    let mut qs = stream("sp500", 3);
    qs.spec.source = crate::resources::fixtures::alpaca(Some(2));
    let mut r = Reconcile::start(&qs);

    r.expect_reads(&[]).await;
    // No ConfigMap, no Deployment: three workers could not all connect.
    let status = r.expect_status(&qs).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (&degraded["status"], &degraded["reason"]),
        (&"True".into(), &"TooManyConnections".into())
    );
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("spec.shards (3)") && message.contains("maxConnections allows 2"),
        "{message}"
    );
    r.expect_event("Warning", "TooManyConnections").await;

    let action = r.finish().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

/// A new stream's reconcile up to its first write (shard 0's ConfigMap), left unanswered.
async fn up_to_the_first_write(qs: &QuoteStream) -> (Reconcile, Call) {
    let mut r = Reconcile::start(qs);
    r.expect_reads(&[]).await;
    let call = r.expect_shard_config_map(0).await;
    (r, call)
}

#[tokio::test]
async fn a_refused_write_ends_the_reconcile_with_an_api_error() {
    let (r, first_write) = up_to_the_first_write(&stream("sp500", 2)).await;
    first_write.internal_error();
    // Nothing after the failed call: no Deployment, no status, no Event.
    let metrics = r.metrics.clone();
    let error = r.finish().await.unwrap_err();
    assert_eq!(error.reason(), "ApiError");
    assert_eq!(metrics.reconciliations(Outcome::Error).get(), 1);
}

#[tokio::test]
async fn a_stream_deleted_during_its_reconcile_is_not_a_failure() {
    let (r, first_write) = up_to_the_first_write(&stream("sp500", 1)).await;
    // The stream and its namespace go while its shard is being written.
    first_write.not_found();
    let metrics = r.metrics.clone();
    let action = r.finish().await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(metrics.reconciliations(Outcome::Error).get(), 0);
    assert_eq!(metrics.reconcile_errors("ApiError").get(), 0);
}

#[tokio::test]
async fn failures_back_off_per_stream_and_reset_on_success() {
    let (client, mut api) = mock_api::client();
    let ctx = Arc::new(Context::new(
        client,
        OperatorSettings::default(),
        Metrics::new().unwrap(),
        None,
    ));
    let a = Arc::new(stream("sp500", 1));
    let b = Arc::new(stream("other", 1));
    let error = Error::Metadata("namespace");
    let secs = |s: u64| Action::requeue(Duration::from_secs(s));
    let delays: Vec<_> = (0..10)
        .map(|_| error_policy(a.clone(), &error, ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [1, 2, 4, 8, 16, 32, 64, 128, 128, 128].map(secs),
        "doubling, capped"
    );
    assert_eq!(error_policy(b, &error, ctx.clone()), secs(1), "per stream");

    // A successful reconcile (here: one that reports a missing ConfigMap) resets the count.
    let task = tokio::spawn(reconcile(a.clone(), ctx.clone()));
    let call = api.next().await.unwrap();
    assert_eq!(call.path, config_map_path("sp500"));
    call.not_found();
    api.next().await.unwrap().ok(&*a); // status
    api.next().await.unwrap().echo(); // Event
    task.await.unwrap().unwrap();
    assert_eq!(error_policy(a, &error, ctx.clone()), secs(1), "reset");
    let errors = ctx.metrics.reconcile_errors("InvalidMetadata");
    assert_eq!(errors.get(), 12);
}

#[tokio::test]
async fn a_secret_is_read_as_metadata_only_and_one_without_the_label_degrades_the_stream() {
    let mut qs = stream("sp500", 2);
    qs.spec.sinks.postgres = Some(crate::resources::fixtures::postgres_sink());
    let mut r = Reconcile::start(&qs);
    r.expect(Method::GET, &config_map_path("sp500"))
        .await
        .ok(&ticker_list());
    r.expect_list(CONFIG_MAPS)
        .await
        .ok(&list::<ConfigMap>("v1", "ConfigMapList", &[]));
    // The Secret's labels, never its data: a metadata-only request.
    let get = r
        .expect(Method::GET, "/api/v1/namespaces/markets/secrets/quotes-db")
        .await;
    let accept = get.accept.clone().unwrap_or_default();
    assert!(accept.contains("as=PartialObjectMetadata"), "{accept}");
    get.ok(&serde_json::json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "quotes-db", "namespace": "markets", "labels": {"team": "db"}}
    }));
    // No ConfigMap, no Deployment.
    let status = r.expect_status(&qs).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["reason"], "SecretNotAllowed");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("spec.sinks.postgres.dsnSecretRef")
            && message.contains("kubectl label secret quotes-db quotes.opa.io/stream-access=true"),
        "{message}"
    );
    r.expect_event("Warning", "SecretNotAllowed").await;
    // Secrets are not watched: the stream is looked at again soon.
    let action = r.finish().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

/// Shard 1's worker pod crash-looping: its last run exited 1 with a sink failure line.
fn crash_looping_pod(line: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sp500-shard-1-7f9c", "namespace": "markets",
                     "labels": {STREAM_LABEL: "sp500", "quotes.opa.io/shard": "1"}},
        "spec": {"containers": [{"name": "worker", "image": "w"}]},
        "status": {"containerStatuses": [{
            "name": "worker", "ready": false, "restartCount": 3, "image": "w", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": line}},
        }]},
    })
}

/// One reconcile of an unchanged stream whose pods are `pods` (its shard objects are as
/// applied: only reads); returns the status it wrote.
async fn reconcile_with_pods(
    qs: &QuoteStream,
    before: &Stored,
    pods: &[Value],
) -> (Reconcile, Value) {
    let r = reads_with_pods(qs, before, pods).await;
    with_status_written(r, qs).await
}

async fn reads_with_pods(qs: &QuoteStream, before: &Stored, pods: &[Value]) -> Reconcile {
    let mut r = Reconcile::start(qs);
    r.expect_reads(&before.config_maps).await;
    r.expect_deployments(&before.deployments).await;
    r.expect_pods(pods).await;
    r
}

async fn with_status_written(mut r: Reconcile, qs: &QuoteStream) -> (Reconcile, Value) {
    let status = r.expect_status(qs).await;
    (r, status)
}

#[tokio::test]
async fn a_worker_that_cannot_start_degrades_the_stream_naming_the_sink_once() {
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true, false, true]);
    let qs = with_status(stream("sp500", 3), &before.status);
    let line = "sink postgres failed [spec.sinks.postgres.dsnSecretRef]: cannot connect to PostgreSQL feeder@db:5432/market: 28P01 password authentication failed for user \"feeder\"";
    let (mut r, status) = reconcile_with_pods(&qs, &before, &[crash_looping_pod(line)]).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "SinkFailed");
    let message = degraded["message"].as_str().unwrap().to_owned();
    for part in [
        "shard 1",
        "sink postgres",
        "spec.sinks.postgres.dsnSecretRef",
        "28P01",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    assert_eq!(condition(&status, "Ready")["status"], "False");
    let event = r.expect_event("Warning", "SinkFailed").await;
    assert_eq!(event["note"], message);
    r.finish().await.unwrap();

    // The next reconcile sees the same failure: the status stays (not even written again),
    // no second Event.
    let stored_status: QuoteStreamStatus = serde_json::from_value(status).unwrap();
    let qs = with_status(stream("sp500", 3), &stored_status);
    let r = reads_with_pods(&qs, &before, &[crash_looping_pod(line)]).await;
    let metrics = r.metrics.clone();
    r.finish().await.unwrap();
    assert_eq!(metrics.unchanged(Written::Status).get(), 1);

    // Fixed: the pod runs and is ready; the old message in lastState no longer counts.
    let mut fixed = crash_looping_pod(line);
    fixed["status"]["containerStatuses"][0]["ready"] = true.into();
    fixed["status"]["containerStatuses"][0]["state"] = serde_json::json!({"running": {}});
    let (r, cleared) = reconcile_with_pods(&qs, &before, &[fixed]).await;
    assert_eq!(condition(&cleared, "Degraded")["status"], "False");
    r.finish().await.unwrap();
}

/// Shard 1's worker pod running but not ready because its PostgreSQL sink failed while
/// running: a real HTTP server on loopback answers `/ready` with 503 and the worker's report
/// (`quotestream_api::readiness::ReadyReport`), where the pod IP and `http` port point.
async fn worker_with_a_failed_sink(setting: &str, reason: &str) -> Value {
    use quotestream_api::readiness::{ReadyReport, SinkState};
    let sinks = std::collections::BTreeMap::from([
        ("redis".to_owned(), SinkState::Up),
        (
            "postgres".to_owned(),
            SinkState::Failed {
                setting: setting.into(),
                reason: reason.into(),
            },
        ),
    ]);
    worker_not_ready(ReadyReport::new(sinks, true)).await
}

/// Shard 1's worker pod running but not ready, its `/ready` answering 503 with `report`.
async fn worker_not_ready(report: quotestream_api::readiness::ReadyReport) -> Value {
    use quotestream_api::contract::READY_PATH;
    let app = axum::Router::new().route(
        READY_PATH,
        axum::routing::get(move || {
            let report = report.clone();
            async move { (http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(report)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Runs until the test's runtime ends.
    tokio::spawn(async move { axum::serve(listener, app).await });
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sp500-shard-1-7f9c", "namespace": "markets",
                     "labels": {STREAM_LABEL: "sp500", "quotes.opa.io/shard": "1"}},
        "spec": {"containers": [{"name": "worker", "image": "w",
                                 "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [{
            "name": "worker", "ready": false, "restartCount": 0, "image": "w", "imageID": "",
            "state": {"running": {"startedAt": "2026-12-06T14:30:00Z"}},
        }]},
    })
}

#[tokio::test]
async fn a_sink_that_fails_while_its_worker_runs_degrades_the_stream_naming_the_sink() {
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true, false, true]);
    let qs = with_status(stream("sp500", 3), &before.status);
    let pod = worker_with_a_failed_sink(
        "spec.sinks.postgres.dsnSecretRef",
        "42501 permission denied for table real_time: grant INSERT to the sink's user",
    )
    .await;
    let (mut r, status) = reconcile_with_pods(&qs, &before, &[pod]).await;
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True", "{status}");
    assert_eq!(degraded["reason"], "SinkFailed");
    let message = degraded["message"].as_str().unwrap().to_owned();
    for part in [
        "shard 1",
        "sink postgres",
        "spec.sinks.postgres.dsnSecretRef",
        "42501",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let event = r.expect_event("Warning", "SinkFailed").await;
    assert_eq!(event["note"], message);
    r.finish().await.unwrap();
}

#[tokio::test]
async fn a_worker_that_is_not_ready_for_another_reason_is_no_failure() {
    use quotestream_api::readiness::{ReadyReport, SinkState};
    let before = stored(&stream("sp500", 3), &sp500(), None, &[true, false, true]);
    let qs = with_status(stream("sp500", 3), &before.status);
    // Starting: its /ready names no failed sink (an outage is `retrying`, not a failure).
    let sinks = std::collections::BTreeMap::from([(
        "postgres".to_owned(),
        SinkState::Retrying {
            reason: "connection refused".into(),
        },
    )]);
    let starting = worker_not_ready(ReadyReport::new(sinks, false)).await;
    // And one whose port is closed: it says nothing.
    let mut silent = worker_with_a_failed_sink("spec.sinks.postgres.table", "gone").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    silent["metadata"]["name"] = "sp500-shard-1-8a2b".into();
    silent["spec"]["containers"][0]["ports"][0]["containerPort"] =
        closed.local_addr().unwrap().port().into();
    drop(closed);
    // Nothing to report: the status (not Degraded before) is not even written.
    let r = reads_with_pods(&qs, &before, &[starting, silent]).await;
    let metrics = r.metrics.clone();
    r.finish().await.unwrap();
    assert_eq!(metrics.unchanged(Written::Status).get(), 1);
}

#[tokio::test]
async fn with_concurrency_a_groups_writes_are_in_flight_together_and_the_next_group_waits() {
    let qs = stream("sp500", 3);
    let settings = OperatorSettings {
        api_concurrency: std::num::NonZeroU16::new(3).unwrap(),
        ..OperatorSettings::default()
    };
    let mut r = Reconcile::start_with(&qs, settings);
    r.expect_reads(&[]).await;
    // All three ConfigMap applies arrive before any is answered (one at a time, the second
    // would wait for the first's answer)…
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let call = r.api.next().await.expect("a ConfigMap apply");
        assert_eq!(call.method, Method::PATCH, "{call:?}");
        assert_eq!(call.body["kind"], "ConfigMap", "{call:?}");
        in_flight.push(call);
    }
    let mut names: Vec<String> = in_flight
        .iter()
        .map(|c| c.body["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, [shard(0), shard(1), shard(2)]);
    // …and the Deployments (make before break) come only once every one is answered, in
    // whatever order.
    for call in in_flight.into_iter().rev() {
        call.echo();
    }
    r.expect_deployments::<Deployment>(&[]).await;
    let mut deployments = Vec::new();
    for _ in 0..3 {
        let call = r.api.next().await.expect("a Deployment apply");
        assert_eq!(call.body["kind"], "Deployment", "{call:?}");
        deployments.push(call);
    }
    for call in deployments {
        call.echo();
    }
    r.expect_pods(&[]).await;
    r.expect_status(&qs).await;
    r.expect_event("Normal", "Created").await;
    let metrics = r.metrics.clone();
    r.finish().await.unwrap();
    assert_eq!(metrics.writes(Written::ConfigMap, "apply").get(), 3);
    assert_eq!(metrics.writes(Written::Deployment, "apply").get(), 3);
}

#[tokio::test]
async fn a_status_just_written_is_not_written_again_while_the_cache_lags_behind_it() {
    let now = stored(&stream("sp500", 3), &sp500(), None, &[true; 3]);
    // The stream as the watch cache has it: from before the operator's next status write
    // (shard 1 not ready yet).
    let starting = stored(&stream("sp500", 3), &sp500(), None, &[true, false, true]);
    let mut qs = with_status(stream("sp500", 3), &starting.status);
    qs.metadata.resource_version = Some("41".into());
    let (client, api) = mock_api::client();
    let metrics = Metrics::new().unwrap();
    let ctx = Arc::new(Context::new(client, sequential(), metrics.clone(), None));

    // Shard 1 became ready: the status says so.
    let task = tokio::spawn(reconcile(Arc::new(qs.clone()), ctx.clone()));
    let mut r = Reconcile {
        api,
        task,
        metrics: metrics.clone(),
    };
    r.expect_reads(&now.config_maps).await;
    r.expect_deployments(&now.deployments).await;
    r.expect_pods(&[]).await;
    let status = r.expect_status(&qs).await;
    assert_eq!(status["readyShards"], 3);
    (&mut r.task).await.unwrap().unwrap();

    // The next event comes before the cache has that write (same resourceVersion, old
    // status): the status written is what counts, and it is not sent again.
    r.task = tokio::spawn(reconcile(Arc::new(qs.clone()), ctx.clone()));
    r.expect_reads(&now.config_maps).await;
    r.expect_deployments(&now.deployments).await;
    r.expect_pods(&[]).await;
    drop(ctx); // the client goes with the task, so finish sees the end of the calls
    r.finish().await.unwrap();
    assert_eq!(metrics.writes(Written::Status, "patch").get(), 1);
    assert_eq!(metrics.unchanged(Written::Status).get(), 1);
}

/// Whether `call` asked for metadata only (`as=PartialObjectMetadata[List]`).
fn is_metadata_only(call: &Call) -> bool {
    call.accept
        .as_deref()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

#[tokio::test]
async fn a_settled_plan_is_reused_while_its_inputs_keep_their_versions() {
    let mut before = stored(&stream("sp500", 3), &sp500(), None, &[true; 3]);
    for (i, cm) in before.config_maps.iter_mut().enumerate() {
        cm.metadata.resource_version = Some(format!("{}", 10 + i));
    }
    let mut tickers = ticker_list();
    tickers.metadata.resource_version = Some("9".into());
    let qs = with_status(stream("sp500", 3), &before.status);
    let (client, api) = mock_api::client();
    let metrics = Metrics::new().unwrap();
    let ctx = Arc::new(Context::new(client, sequential(), metrics.clone(), None));
    let run = |ctx: &Arc<Context>| tokio::spawn(reconcile(Arc::new(qs.clone()), ctx.clone()));

    // 1. Nothing remembered: the whole ticker list and shard ConfigMaps are read and planned.
    let mut r = Reconcile {
        api,
        task: run(&ctx),
        metrics: metrics.clone(),
    };
    let get = r.expect(Method::GET, &config_map_path("sp500")).await;
    assert!(!is_metadata_only(&get));
    get.ok(&tickers);
    r.expect_list(CONFIG_MAPS)
        .await
        .ok(&list("v1", "ConfigMapList", &before.config_maps));
    r.expect_workers(&before.deployments, &[]).await;
    (&mut r.task).await.unwrap().unwrap();

    // 2. The same versions: metadata only, and the plan is the last one (nothing written).
    r.task = run(&ctx);
    let get = r.expect(Method::GET, &config_map_path("sp500")).await;
    assert!(is_metadata_only(&get), "{:?}", get.accept);
    get.ok(&tickers);
    let listed = r.expect_list(CONFIG_MAPS).await;
    assert!(is_metadata_only(&listed), "{:?}", listed.accept);
    listed.ok(&list("v1", "ConfigMapList", &before.config_maps));
    r.expect_workers(&before.deployments, &[]).await;
    (&mut r.task).await.unwrap().unwrap();
    let skipped = |w| metrics.unchanged(w).get();
    assert_eq!(
        skipped(Written::ConfigMap),
        6,
        "3 compared, then 3 known unchanged"
    );

    // 3. Shard 1's ConfigMap edited by hand (a new version): planned afresh, and put back.
    let mut edited = before.config_maps.clone();
    edited[1].metadata.resource_version = Some("20".into());
    let mut config = worker_config(&serde_json::to_value(&edited[1]).unwrap());
    config.interval = "5s".into();
    let json = serde_json::to_string(&config).unwrap();
    edited[1].data = Some([(WORKER_CONFIG_KEY.to_owned(), json)].into());
    r.task = run(&ctx);
    r.expect(Method::GET, &config_map_path("sp500"))
        .await
        .ok(&tickers);
    r.expect_list(CONFIG_MAPS)
        .await
        .ok(&list("v1", "ConfigMapList", &edited));
    let get = r.expect(Method::GET, &config_map_path("sp500")).await;
    assert!(!is_metadata_only(&get));
    get.ok(&tickers);
    r.expect_list(CONFIG_MAPS)
        .await
        .ok(&list("v1", "ConfigMapList", &edited));
    // Its list did not change, so it is written with the shards that keep theirs: after the
    // Deployments.
    r.expect_workers(&before.deployments, &[]).await;
    r.expect_shard_config_map(1).await.echo();
    drop(ctx); // the client goes with the task, so finish sees the end of the calls
    r.finish().await.unwrap();
    assert_eq!(metrics.writes(Written::ConfigMap, "apply").get(), 1);
    assert_eq!(metrics.writes(Written::Status, "patch").get(), 0);
}
