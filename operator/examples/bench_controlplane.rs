//! Control-plane benchmark: how fast the operator turns a QuoteStream into ready shards, how
//! long one reconcile takes, and how long a reshard takes to converge — on a real
//! kube-apiserver + etcd (`tests/controlplane`), with the release operator binary as a process.
//!
//! There is no kubelet: the harness plays the Deployment controller and kubelet by reporting
//! every shard Deployment ready for its current generation as soon as it sees it (as
//! `operator/tests/reconcile_on_apiserver.rs` does by hand), so the times are the control
//! plane's alone (the API server, etcd and the operator), not image pulls or pod starts.
//!
//! For each shard count N (4, 16, 64; `--quick`: 4 only), three runs of:
//! 1. create the stream (512 tickers, N shards) through the API; time until its status says
//!    Ready with N ready shards for the current generation;
//! 2. scale to N+1 (the scale subresource); time until Ready with N+1 shards (the hand-over is
//!    complete: the old shards' lists shrink in the same reconcile that reports the new shard);
//! 3. scale back to N; time until Ready with N shards and the removed shard's Deployment gone;
//! 4. delete the stream.
//!
//! A 2-shard stream is created, made ready and deleted first, unmeasured (warm-up).
//!
//! Then the scale table, side by side in the same run: two more operator processes, each
//! confined to a namespace of its own (`--namespace`), one with `--api-concurrency 1` (one
//! write at a time: the sequential reconcile) and one with the default (16). For 64 and 1024
//! shards (`--quick`: 4 and 16), three runs, alternating the two: create a stream of 100 000
//! tickers (`--quick`: 1 000; from a `tickersFrom` ConfigMap, the way a universe that large is
//! given) and time create → Ready as above; then a no-op resync (an annotation on the stream:
//! one reconcile with nothing to change), counting the writes it sends
//! (`quotestream_api_writes_total`); then delete it and wait until the garbage collector has
//! removed its shards. Reconcile p50/p99 come from each operator's histogram over its runs of
//! the smaller size. Before those runs each operator gets 100 streams (`--quick`: 10) of 4
//! shards and 512 tickers; once all are Ready its resident memory (VmRSS, and the peak VmHWM)
//! is read from /proc (they are deleted before the runs); the peak is read again at the end. These operators run as the operator's ServiceAccount (bound to cluster-admin here),
//! so API Priority and Fairness classifies them as it would in a cluster (the `service-accounts`
//! FlowSchema, priority level `workload-low`), and the API server's count of requests APF
//! rejected or queued for that level is printed with the table.
//!
//! Reconcile durations come from the operator's own histogram
//! (`quotestream_reconcile_duration_seconds`), scraped before and after each N, quantiles
//! interpolated within buckets as Prometheus' `histogram_quantile` does. Prints markdown; it
//! asserts no timing.
//!
//! `cargo build --release -p quotestream-operator --bins --examples && target/release/examples/bench_controlplane [--quick]`

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::wait::await_condition;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use quotestream_api::crd::STREAM_LABEL;
use quotestream_api::{QuoteStream, WorkerConfig};
use quotestream_testkit::{ControlPlane, free_port, http_get, wait_until};
use serde_json::json;

const NS: &str = "default";
const TICKERS: usize = 512;
/// The scale table's two operators: (label, namespace, `--api-concurrency`).
const MODES: [(&str, &str, &str); 2] = [
    ("sequential (`--api-concurrency 1`)", "sequential", "1"),
    ("bounded (default, 16)", "bounded", "16"),
];
/// The ConfigMap (in each mode's namespace) holding the scale streams' tickers.
const UNIVERSE: &str = "universe";
/// Shards of each of the many streams whose operator memory is measured.
const MANY_SHARDS: usize = 4;
const RUNS: usize = 3;
/// Bound of every wait: far above any expected time, so that a stuck run fails clearly.
const TIMEOUT: Duration = Duration::from_secs(180);
const HISTOGRAM: &str = "quotestream_reconcile_duration_seconds";
/// Writes in flight of the bare client that measures the API server's floor: the operator's
/// default `--api-concurrency`.
const LIMIT_IN_FLIGHT: usize = 16;

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick { &[4] } else { &[4, 16, 64] };
    let scale = if quick {
        Scale {
            sizes: [4, 16],
            tickers: 1_000,
            streams: 10,
        }
    } else {
        Scale {
            sizes: [64, 1024],
            tickers: 100_000,
            streams: 100,
        }
    };
    let operator_bin = operator_binary()?;
    let load_before = load_average();
    let started = Instant::now();
    let cp = ControlPlane::start().context("starting the control plane (make controlplane)")?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    cp.install_crd(&repo.join("crds/quotestream.yaml"))?;
    // The scale operators run as the operator's ServiceAccount, with every right.
    let bound = cp.kubectl(
        "admin",
        &[
            "create",
            "clusterrolebinding",
            "bench-operator",
            "--clusterrole=cluster-admin",
            "--serviceaccount=quotestream-system:quotestream-operator",
        ],
    )?;
    if !bound.status.success() {
        bail!(
            "binding the operator identity: {}",
            String::from_utf8_lossy(&bound.stderr)
        );
    }
    let operator = OperatorProcess::start(&operator_bin, &cp, "admin", &["--namespace", NS])?;
    let mut modes = Vec::new();
    for (_, namespace, concurrency) in MODES {
        let args = ["--namespace", namespace, "--api-concurrency", concurrency];
        modes.push(Mode {
            namespace,
            operator: OperatorProcess::start(&operator_bin, &cp, "operator", &args)?,
        });
    }
    let setup = started.elapsed();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let client = client(&cp).await?;
        let marker = tokio::spawn(mark_deployments_ready(client.clone()));
        // Unmeasured: the API server's and the operator's first writes of each kind are slower.
        warm_up(&client).await?;
        let mut rows = Vec::new();
        for &n in sizes {
            eprintln!("bench_controlplane: {n} shards ...");
            rows.push(measure(&client, &operator, n).await?);
        }
        let scaled = measure_scale(&client, &modes, &scale).await?;
        marker.abort();
        anyhow::Ok((rows, scaled))
    })?;
    let (rows, scaled) = rows;

    println!(
        "One kube-apiserver + etcd + garbage collector (`tests/controlplane`, Kubernetes {}) and the release operator binary as a process, on this machine ({} cores, load average {} before and {} after the run); no kubelet: the harness reports each shard Deployment ready as soon as it sees it, so the times are the control plane's alone. {TICKERS} tickers per stream; every time is the median of {RUNS} runs (the runs in parentheses), after an unmeasured warm-up stream. Setup (control plane start, CRD, operator ready): {:.1} s. Run: `target/release/examples/bench_controlplane{}`.\n",
        cp.state().kubernetes_version,
        std::thread::available_parallelism().map_or(0, usize::from),
        load_before,
        load_average(),
        setup.as_secs_f64(),
        if quick { " --quick" } else { "" }
    );
    println!(
        "| shards | create → Ready | scale N → N+1 converged | scale N+1 → N converged | reconciles | reconcile p50 | reconcile p99 | reconcile mean |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.shards,
            runs(&r.ready),
            runs(&r.grow),
            runs(&r.shrink),
            r.reconciles.count,
            ms(r.reconciles.quantile(0.5)),
            ms(r.reconciles.quantile(0.99)),
            ms(r.reconciles.mean()),
        );
    }
    println!(
        "\nReconciles: every successful reconcile of the N-shard streams (creation, both reshards, the requeues and the reconciles the operator's own writes trigger), from `{HISTOGRAM}{{result=\"ok\"}}`; p50/p99 are interpolated within the histogram's buckets (5, 10, 25, 50, 100, 150, 200, 300, 500, 750 ms, 1, 1.5, 2, 2.5 s, …), as `histogram_quantile` does, so they are only as fine as those buckets; the mean (sum ÷ count) is exact."
    );
    print_scale(&scale, &scaled);
    Ok(())
}

/// The 1-minute load average (the machine may be shared: numbers drift with it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// `target/release/quotestream-operator`, next to this example's directory.
fn operator_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("quotestream-operator"));
    match bin {
        Some(bin) if bin.is_file() => Ok(bin),
        _ => bail!(
            "build the operator first: cargo build --release -p quotestream-operator --bins --examples (looked for {bin:?})"
        ),
    }
}

async fn client(cp: &ControlPlane) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(cp.kubeconfig("admin"))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The operator as a process with the admin identity; killed on drop.
struct OperatorProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// The operator as `identity` (a kubeconfig of the control plane) with `args` added.
    fn start(bin: &Path, cp: &ControlPlane, identity: &str, args: &[&str]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let log = File::create(dir.path().join("operator.log"))?;
        let child = Command::new(bin)
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--worker-image", "registry.local/quotestream-worker:bench"])
            // No kubelet, no pods: nothing could acknowledge a hand-over; release on readiness.
            .arg("--handover-timeout=0s")
            .args(args)
            .env("KUBECONFIG", cp.kubeconfig(identity))
            // Per-reconcile info lines would cost the operator time of their own.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the operator")?;
        let mut this = Self {
            child,
            port,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(60), || {
            matches!(this.child.try_wait(), Ok(None))
                && http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)
        });
        if !ready {
            let log =
                std::fs::read_to_string(this._dir.path().join("operator.log")).unwrap_or_default();
            let _ = this.child.kill();
            bail!("the operator did not become ready within 60 s; its log:\n{log}");
        }
        Ok(this)
    }

    fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http_get(self.port, "/metrics").context("no answer on /metrics")?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(body)
    }

    fn histogram(&self) -> anyhow::Result<Histogram> {
        Ok(Histogram::parse(&self.metrics()?, r#"result="ok""#))
    }

    /// The sum of every series of the counter `name`.
    fn counter(&self, name: &str) -> anyhow::Result<f64> {
        let prefix = format!("{name}{{");
        Ok(self
            .metrics()?
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// (VmRSS, VmHWM) in bytes, from /proc.
    fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .with_context(|| format!("{name} in /proc/<pid>/status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plays Deployment controller and kubelet, in every namespace: every shard Deployment that is
/// not reported ready for its current generation is, at once (up to 32 at a time, as many
/// kubelets would).
async fn mark_deployments_ready(client: Client) {
    let all: Api<Deployment> = Api::all(client.clone());
    let config = watcher::Config::default().labels(STREAM_LABEL);
    watcher::watcher(all, config)
        .default_backoff()
        .for_each_concurrent(32, |event| {
            let client = client.clone();
            async move {
                let d = match event {
                    Ok(Event::Apply(d) | Event::InitApply(d)) => d,
                    Ok(_) => return,
                    Err(e) => {
                        eprintln!("bench_controlplane: deployment watch: {e}");
                        return;
                    }
                };
                let generation = d.metadata.generation;
                let status = d.status.as_ref();
                let ready = status.is_some_and(|s| {
                    s.observed_generation == generation && s.ready_replicas == Some(1)
                });
                if ready || d.metadata.deletion_timestamp.is_some() {
                    return;
                }
                let api: Api<Deployment> =
                    Api::namespaced(client, &d.namespace().unwrap_or_default());
                let body = json!({"status": {"observedGeneration": generation, "replicas": 1,
                    "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
                match api
                    .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    // Deleted since the event (a run's stream went): nothing to mark.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => eprintln!("bench_controlplane: marking {} ready: {e}", d.name_any()),
                    Ok(_) => {}
                }
            }
        })
        .await;
}

/// One shard count's results.
struct Row {
    shards: usize,
    ready: Vec<Duration>,
    grow: Vec<Duration>,
    shrink: Vec<Duration>,
    reconciles: Histogram,
}

async fn measure(client: &Client, operator: &OperatorProcess, n: usize) -> anyhow::Result<Row> {
    let streams: Api<QuoteStream> = Api::namespaced(client.clone(), NS);
    let before = operator.histogram()?;
    let mut row = Row {
        shards: n,
        ready: Vec::new(),
        grow: Vec::new(),
        shrink: Vec::new(),
        reconciles: Histogram::default(),
    };
    for run in 0..RUNS {
        let name = format!("bench-{n}-{run}");
        let manifest = stream(&name, n)?;
        let t = Instant::now();
        let uid = streams
            .create(&PostParams::default(), &manifest)
            .await?
            .uid()
            .unwrap_or_default();
        wait_ready(&streams, &name, n).await?;
        row.ready.push(t.elapsed());

        for (to, times) in [(n + 1, &mut row.grow), (n, &mut row.shrink)] {
            let t = Instant::now();
            let scale = json!({"spec": {"replicas": to}});
            streams
                .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&scale))
                .await?;
            wait_ready(&streams, &name, to).await?;
            times.push(t.elapsed());
            check_settled(client, &name, to).await?;
        }

        delete(&streams, &name, &uid).await?;
    }
    row.reconciles = operator.histogram()?.minus(&before);
    Ok(row)
}

/// One stream created, made ready and deleted before anything is measured.
async fn warm_up(client: &Client) -> anyhow::Result<()> {
    let streams: Api<QuoteStream> = Api::namespaced(client.clone(), NS);
    let name = "bench-warm-up";
    let uid = streams
        .create(&PostParams::default(), &stream(name, 2)?)
        .await?
        .uid()
        .unwrap_or_default();
    wait_ready(&streams, name, 2).await?;
    delete(&streams, name, &uid).await
}

/// A stream of [`TICKERS`] tickers over `shards` shards.
fn stream(name: &str, shards: usize) -> anyhow::Result<QuoteStream> {
    stream_in(NS, name, shards)
}

/// A stream of [`TICKERS`] tickers over `shards` shards in `namespace`.
fn stream_in(namespace: &str, name: &str, shards: usize) -> anyhow::Result<QuoteStream> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"tickers": symbols(TICKERS), "shards": shards, "interval": "1s",
                 "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
    }))?)
}

/// Deletes the stream and waits until it is gone.
async fn delete(api: &Api<QuoteStream>, name: &str, uid: &str) -> anyhow::Result<()> {
    api.delete(name, &DeleteParams::default()).await?;
    tokio::time::timeout(
        TIMEOUT,
        await_condition(
            api.clone(),
            name,
            kube::runtime::conditions::is_deleted(uid),
        ),
    )
    .await
    .with_context(|| format!("{name}: deleted within {TIMEOUT:?}"))??;
    Ok(())
}

/// Waits until the stream's status describes its current generation with `shards` ready
/// shards and Ready=True.
async fn wait_ready(api: &Api<QuoteStream>, name: &str, shards: usize) -> anyhow::Result<()> {
    let want = i32::try_from(shards)?;
    let condition = move |qs: Option<&QuoteStream>| {
        qs.and_then(|qs| {
            let status = qs.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            Some(
                ready
                    && status.ready_shards == want
                    && status.observed_generation == qs.metadata.generation,
            )
        })
        .unwrap_or(false)
    };
    tokio::time::timeout(TIMEOUT, await_condition(api.clone(), name, condition))
        .await
        .with_context(|| format!("{name}: Ready with {shards} shards within {TIMEOUT:?}"))??;
    Ok(())
}

/// After convergence every ticker is on exactly one of `shards` shard ConfigMaps and exactly
/// `shards` Deployments exist: the measured time covers the whole hand-over.
async fn check_settled(client: &Client, name: &str, shards: usize) -> anyhow::Result<()> {
    let selector = ListParams::default().labels(&format!("{STREAM_LABEL}={name}"));
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut listed = 0;
    let mut count = 0;
    for cm in maps.list(&selector).await?.items {
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("worker.json"))
            .context("a shard ConfigMap without worker.json")?;
        let config: WorkerConfig = serde_json::from_str(text)?;
        listed += config.tickers.len();
        count += 1;
    }
    let live = deployments
        .list(&selector)
        .await?
        .items
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .count();
    if count != shards || listed != TICKERS || live != shards {
        bail!(
            "{name}: Ready but not settled: {count} ConfigMaps listing {listed} tickers, {live} Deployments (want {shards}, {TICKERS}, {shards})"
        );
    }
    Ok(())
}

/// `n` distinct valid symbols: AAA, AAB, … (three letters, up to 17 576), then AAAA, AAAB, ….
fn symbols(n: usize) -> Vec<String> {
    let letters: Vec<char> = ('A'..='Z').collect();
    let mut out = Vec::with_capacity(n);
    for len in [3u32, 4, 5] {
        for i in 0..26usize.pow(len) {
            if out.len() == n {
                return out;
            }
            let mut rest = i;
            let mut symbol = String::with_capacity(len as usize);
            for _ in 0..len {
                symbol.insert(0, letters[rest % 26]);
                rest /= 26;
            }
            out.push(symbol);
        }
    }
    out
}

/// A Prometheus histogram's cumulative buckets (upper bound → count), count and sum.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: BTreeMap<u64, (f64, u64)>,
    count: u64,
    sum: f64,
}

impl Histogram {
    /// The series of [`HISTOGRAM`] whose labels contain `labels`.
    fn parse(text: &str, labels: &str) -> Self {
        let mut h = Self::default();
        for line in text.lines().filter(|l| l.contains(labels)) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if series.starts_with(&format!("{HISTOGRAM}_bucket")) {
                let le = series
                    .split("le=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default();
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                // Keyed by the bound's bits (positive floats order like their bits).
                h.buckets.insert(bound.to_bits(), (bound, value as u64));
            } else if series.starts_with(&format!("{HISTOGRAM}_count")) {
                h.count = value as u64;
            } else if series.starts_with(&format!("{HISTOGRAM}_sum")) {
                h.sum = value;
            }
        }
        h
    }

    /// What was observed between `earlier` and `self`.
    fn minus(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(key, (bound, count))| {
                let before = earlier.buckets.get(key).map_or(0, |(_, c)| *c);
                (*key, (*bound, count.saturating_sub(before)))
            })
            .collect();
        Histogram {
            buckets,
            count: self.count.saturating_sub(earlier.count),
            sum: self.sum - earlier.sum,
        }
    }

    /// The `q` quantile in seconds, linearly interpolated within its bucket.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for (bound, cumulative) in self.buckets.values() {
            if *cumulative as f64 >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = (cumulative - lower.1) as f64;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * fraction);
            }
            lower = (*bound, *cumulative);
        }
        Some(lower.0)
    }

    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

fn ms(seconds: Option<f64>) -> String {
    seconds.map_or("—".into(), |s| format!("{:.1} ms", s * 1000.0))
}

/// "median (run / run / run)".
fn runs(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let each: Vec<String> = times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect();
    format!("{:.2} s ({})", median.as_secs_f64(), each.join(" / "))
}

/// The sizes of the scale table.
struct Scale {
    /// Shard counts; reconcile quantiles are of the first.
    sizes: [usize; 2],
    /// Tickers of each scale stream (its `tickersFrom` ConfigMap).
    tickers: usize,
    /// Streams at once for the memory column.
    streams: usize,
}

/// One operator of the scale table, alone in its namespace.
struct Mode {
    namespace: &'static str,
    operator: OperatorProcess,
}

/// One operator's results in the scale table.
#[derive(Default)]
struct ScaleRow {
    /// create → Ready per size.
    ready: [Vec<Duration>; 2],
    /// Writes of each no-op resync, per size.
    resync_writes: [Vec<f64>; 2],
    /// Reconciles during the runs of the first size.
    reconciles: Histogram,
    /// Time until all of the many streams were Ready.
    many_ready: Duration,
    /// (VmRSS, VmHWM) with the many streams Ready.
    memory: (u64, u64),
    /// VmHWM after every run (the largest stream included).
    peak: u64,
}

/// What the API server's flow control did with the operators' requests (priority level
/// `workload-low`, where the `service-accounts` FlowSchema puts them).
struct Flow {
    dispatched: f64,
    rejected: f64,
    waited: f64,
    seats: f64,
    /// The API server's floor per size: the same objects written by a bare client.
    floor: Vec<Vec<Duration>>,
}

const LEVEL: &str = r#"priority_level="workload-low""#;

async fn measure_scale(
    client: &Client,
    modes: &[Mode],
    scale: &Scale,
) -> anyhow::Result<(Vec<ScaleRow>, Flow)> {
    let universe = symbols(scale.tickers).join("\n");
    for mode in modes {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": mode.namespace}}))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), mode.namespace);
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": UNIVERSE, "namespace": mode.namespace},
            "data": {"tickers": universe}
        }))?;
        maps.create(&PostParams::default(), &cm).await?;
    }
    let flow_before = flow_control(client).await?;
    let mut rows: Vec<ScaleRow> = modes.iter().map(|_| ScaleRow::default()).collect();
    // Memory first, while the operators have seen nothing larger than these streams.
    for (mode, row) in modes.iter().zip(rows.iter_mut()) {
        eprintln!(
            "bench_controlplane: {} streams, {} ...",
            scale.streams, mode.namespace
        );
        let (ready, memory) = many_streams(client, mode, scale.streams).await?;
        row.many_ready = ready;
        row.memory = memory;
    }
    for (k, &n) in scale.sizes.iter().enumerate() {
        let before = modes
            .iter()
            .map(|m| m.operator.histogram())
            .collect::<anyhow::Result<Vec<_>>>()?;
        for run in 0..RUNS {
            for (mode, row) in modes.iter().zip(rows.iter_mut()) {
                eprintln!(
                    "bench_controlplane: scale {n} shards, {}, run {run} ...",
                    mode.namespace
                );
                let (ready, writes) = scale_run(client, mode, n, run).await?;
                row.ready[k].push(ready);
                row.resync_writes[k].push(writes);
            }
        }
        if k == 0 {
            for ((mode, row), before) in modes.iter().zip(rows.iter_mut()).zip(&before) {
                row.reconciles = mode.operator.histogram()?.minus(before);
            }
        }
    }
    for (mode, row) in modes.iter().zip(rows.iter_mut()) {
        row.peak = mode.operator.memory()?.1;
    }
    let flow = flow_control(client).await?;
    // The floor, after the operators' runs (its writes are not theirs to count).
    let mut floor = Vec::new();
    if let Some(bounded) = modes.last() {
        for &n in &scale.sizes {
            eprintln!("bench_controlplane: API server floor, {n} shards ...");
            floor.push(api_server_floor(client, bounded, n).await?);
        }
    }
    Ok((
        rows,
        Flow {
            dispatched: flow.dispatched - flow_before.dispatched,
            rejected: flow.rejected - flow_before.rejected,
            waited: flow.waited - flow_before.waited,
            seats: flow.seats,
            floor,
        },
    ))
}

/// A stream of `shards` shards over the [`UNIVERSE`] ConfigMap's tickers.
fn scale_manifest(namespace: &str, name: &str, shards: usize) -> anyhow::Result<QuoteStream> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"tickersFrom": {"configMapKeyRef": {"name": UNIVERSE, "key": "tickers"}},
                 "shards": shards, "interval": "1s", "source": {"type": "synthetic"},
                 "sinks": {"redis": {"url": "redis://redis:6379/0"}}}
    }))?)
}

/// One run: create → Ready, a no-op resync (returns its writes), delete and wait until the
/// shards are gone.
async fn scale_run(
    client: &Client,
    mode: &Mode,
    shards: usize,
    run: usize,
) -> anyhow::Result<(Duration, f64)> {
    let streams: Api<QuoteStream> = Api::namespaced(client.clone(), mode.namespace);
    let name = format!("scale-{shards}-{run}");
    let manifest = scale_manifest(mode.namespace, &name, shards)?;
    let t = Instant::now();
    let uid = streams
        .create(&PostParams::default(), &manifest)
        .await?
        .uid()
        .unwrap_or_default();
    wait_ready(&streams, &name, shards).await?;
    let ready = t.elapsed();

    // A no-op resync: a change of the stream that is no change of its spec.
    let reconciled = mode.operator.histogram()?.count;
    let writes = mode.operator.counter("quotestream_api_writes_total")?;
    let annotate =
        json!({"metadata": {"annotations": {"bench.quotes.opa.io/resync": run.to_string()}}});
    streams
        .patch(&name, &PatchParams::default(), &Patch::Merge(&annotate))
        .await?;
    let deadline = Instant::now() + TIMEOUT;
    while mode.operator.histogram()?.count <= reconciled {
        if Instant::now() > deadline {
            bail!("{name}: no reconcile within {TIMEOUT:?} of the resync");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = mode.operator.counter("quotestream_api_writes_total")? - writes;
    if written > 0.0 {
        let counters: Vec<String> = mode
            .operator
            .metrics()?
            .lines()
            .filter(|l| l.starts_with("quotestream_api_writes_total{"))
            .map(str::to_owned)
            .collect();
        eprintln!(
            "bench_controlplane: {name}: {written} writes in a no-op resync; now {counters:?}"
        );
    }

    delete(&streams, &name, &uid).await?;
    wait_gone(client, mode.namespace, &format!("{STREAM_LABEL}={name}")).await?;
    Ok((ready, written))
}

/// The API server's floor for one stream's shards: the ConfigMaps and Deployments the bounded
/// operator made for a `shards`-shard stream, replayed by a bare client (server-side apply,
/// ConfigMaps then Deployments, [`LIMIT_IN_FLIGHT`] in flight like the operator) and reported
/// ready by the harness; the time until every Deployment is ready, per run. No plan, no reads,
/// no status: what any client would need to create these objects on this API server.
async fn api_server_floor(
    client: &Client,
    mode: &Mode,
    shards: usize,
) -> anyhow::Result<Vec<Duration>> {
    let namespace = mode.namespace;
    let streams: Api<QuoteStream> = Api::namespaced(client.clone(), namespace);
    let name = format!("floor-{shards}");
    let manifest = scale_manifest(namespace, &name, shards)?;
    let uid = streams
        .create(&PostParams::default(), &manifest)
        .await?
        .uid()
        .unwrap_or_default();
    wait_ready(&streams, &name, shards).await?;
    let selector = format!("{STREAM_LABEL}={name}");
    let params = ListParams::default().labels(&selector);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut cms = maps.list(&params).await?.items;
    let mut ds = deployments.list(&params).await?.items;
    delete(&streams, &name, &uid).await?;
    wait_gone(client, namespace, &selector).await?;
    // As a client would send them: no server fields, no owner (the stream is gone).
    let strip = |m: &mut kube::api::ObjectMeta| {
        *m = kube::api::ObjectMeta {
            name: m.name.take(),
            namespace: m.namespace.take(),
            labels: m.labels.take(),
            annotations: m.annotations.take(),
            ..Default::default()
        };
    };
    cms.iter_mut().for_each(|c| strip(&mut c.metadata));
    ds.iter_mut().for_each(|d| {
        strip(&mut d.metadata);
        d.status = None;
    });
    let apply = &PatchParams::apply("bench-floor").force();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        // Readiness is watched, not polled: a LIST of 1024 Deployments every few milliseconds
        // would load the API server with work the operator's runs do not have. The watch's
        // initial list and its events cover every object, whenever it turned ready.
        let mut ready_watch = {
            let config = watcher::Config::default().labels(&selector);
            let mut events = watcher::watcher(deployments.clone(), config)
                .default_backoff()
                .boxed();
            tokio::spawn(async move {
                let mut ready = std::collections::HashSet::new();
                while let Some(event) = events.next().await {
                    if let Ok(Event::Apply(d) | Event::InitApply(d)) = event
                        && d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1)
                    {
                        ready.insert(d.name_any());
                        if ready.len() == shards {
                            return true;
                        }
                    }
                }
                false
            })
        };
        let t = Instant::now();
        apply_all(&maps, &cms, apply).await?;
        apply_all(&deployments, &ds, apply).await?;
        let seen = tokio::time::timeout(TIMEOUT, &mut ready_watch).await;
        ready_watch.abort();
        if !matches!(seen, Ok(Ok(true))) {
            bail!("{name}: the replayed Deployments were not all ready within {TIMEOUT:?}");
        }
        times.push(t.elapsed());
        maps.delete_collection(&DeleteParams::default(), &params)
            .await?;
        deployments
            .delete_collection(&DeleteParams::default(), &params)
            .await?;
        wait_gone(client, namespace, &selector).await?;
    }
    Ok(times)
}

/// Server-side applies `objects` through `api`, [`LIMIT_IN_FLIGHT`] at once; stops at the first
/// failure.
async fn apply_all<K>(api: &Api<K>, objects: &[K], params: &PatchParams) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures_util::stream::iter(objects)
        .map(|object| async move {
            let name = object.meta().name.as_deref().unwrap_or_default();
            api.patch(name, params, &Patch::Apply(object)).await
        })
        .buffer_unordered(LIMIT_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// `count` streams of [`MANY_SHARDS`] shards at once: the time until all are Ready and the
/// operator's memory then; deletes them afterwards.
async fn many_streams(
    client: &Client,
    mode: &Mode,
    count: usize,
) -> anyhow::Result<(Duration, (u64, u64))> {
    let streams: Api<QuoteStream> = Api::namespaced(client.clone(), mode.namespace);
    let t = Instant::now();
    for i in 0..count {
        let manifest = stream_in(mode.namespace, &format!("many-{i}"), MANY_SHARDS)?;
        streams.create(&PostParams::default(), &manifest).await?;
    }
    for i in 0..count {
        wait_ready(&streams, &format!("many-{i}"), MANY_SHARDS).await?;
    }
    let ready = t.elapsed();
    let memory = mode.operator.memory()?;
    streams
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    wait_gone(client, mode.namespace, STREAM_LABEL).await?;
    Ok((ready, memory))
}

/// Waits until no Deployment or ConfigMap in `namespace` matches `selector` (the garbage
/// collector has removed a deleted stream's shards), so the next run starts on a quiet API
/// server.
async fn wait_gone(client: &Client, namespace: &str, selector: &str) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(selector).limit(1);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deployments.list_metadata(&params).await?.items.len()
            + maps.list_metadata(&params).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{namespace}: objects labelled {selector} still there after {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API server's flow-control counters for [`LEVEL`].
async fn flow_control(client: &Client) -> anyhow::Result<Flow> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(LEVEL))
            .filter(|l| l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok(Flow {
        dispatched: sum("apiserver_flowcontrol_request_wait_duration_seconds_count"),
        rejected: sum("apiserver_flowcontrol_rejected_requests_total"),
        waited: sum("apiserver_flowcontrol_request_wait_duration_seconds_sum"),
        seats: sum("apiserver_flowcontrol_nominal_limit_seats"),
        floor: Vec::new(),
    })
}

fn print_scale(scale: &Scale, (rows, flow): &(Vec<ScaleRow>, Flow)) {
    let [small, large] = scale.sizes;
    println!(
        "\n### Scale: sequential and bounded reconcile side by side\n\nThe same control plane, two more operator processes, each alone in its namespace and running as the operator's ServiceAccount; the runs alternate between them. Streams of {} tickers (a `tickersFrom` ConfigMap); every time is the median of {RUNS} runs (in parentheses). The Deployments are reported ready by the harness as above (up to 32 at once).\n",
        scale.tickers
    );
    println!(
        "| operator | create → Ready, {small} shards | create → Ready, {large} shards | writes of a no-op resync ({small} / {large} shards) | reconcile p50 / p99 / mean, {small} shards | {} streams × {MANY_SHARDS} shards: all Ready | operator RSS with them (peak) | operator peak RSS after the {large}-shard runs |",
        scale.streams
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for ((label, _, _), r) in MODES.iter().zip(rows) {
        let writes = |w: &[f64]| {
            w.iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {label} | {} | {} | {} / {} | {} / {} / {} ({} reconciles) | {:.2} s | {:.1} MB ({:.1} MB) | {:.1} MB |",
            runs(&r.ready[0]),
            runs(&r.ready[1]),
            writes(&r.resync_writes[0]),
            writes(&r.resync_writes[1]),
            ms(r.reconciles.quantile(0.5)),
            ms(r.reconciles.quantile(0.99)),
            ms(r.reconciles.mean()),
            r.reconciles.count,
            r.many_ready.as_secs_f64(),
            r.memory.0 as f64 / 1e6,
            r.memory.1 as f64 / 1e6,
            r.peak as f64 / 1e6,
        );
    }
    if let [small_floor, large_floor] = flow.floor.as_slice() {
        println!(
            "| the API server's floor: the bounded operator's ConfigMaps and Deployments of such a stream replayed by a bare client ({LIMIT_IN_FLIGHT} in flight), until all ready | {} | {} | | | | | |",
            runs(small_floor),
            runs(large_floor)
        );
    }
    let mean_wait = if flow.dispatched > 0.0 {
        flow.waited / flow.dispatched * 1000.0
    } else {
        0.0
    };
    println!(
        "\nAPI Priority and Fairness, priority level `workload-low` ({:.0} nominal seats on this API server), over the scale runs: {:.0} requests dispatched, {:.0} rejected, mean wait in the queue {mean_wait:.2} ms (`apiserver_flowcontrol_*`). Writes: `quotestream_api_writes_total`, every write request a reconcile sends; a no-op resync is a change of the stream's metadata (an annotation), which makes one reconcile with nothing to write.",
        flow.seats, flow.dispatched, flow.rejected
    );
}
