//! `quotestream-operator run` (the default): the controller with leader election
//! ([`crate::leader`]: it leads only while its lease renewals are confirmed, steps down before
//! the lease expires and campaigns again), metrics and health endpoints, stopped cleanly by
//! SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use quotestream_api::QuoteStream;
use tokio_util::sync::CancellationToken;

use crate::controller;
use crate::leader::{self, Elector, StepDown};
use crate::metrics::Metrics;
use crate::policy::{ImageAllowList, Policy, SecretPolicy, SourceHosts};
use crate::resources::meta::FIELD_MANAGER;
use crate::resources::plan::OperatorSettings;
use crate::server::{self, Readiness};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Only manage QuoteStreams in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Worker image for streams that do not set spec.worker.image.
    #[arg(long, env = "QUOTESTREAM_WORKER_IMAGE")]
    pub worker_image: Option<String>,
    /// Elect a leader on a coordination.k8s.io Lease so several replicas can run, one active.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "quotestream-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: the pod's, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "QUOTESTREAM_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,
    /// Server-side apply the QuoteStream CRD at start (needs RBAC on customresourcedefinitions).
    #[arg(long, default_value_t = false)]
    pub apply_crd: bool,
    /// Images spec.worker.image may name (repeat or comma-separate): a repository (any tag),
    /// a glob (registry.corp/quotes/*) or an exact image. Default: the repository of the
    /// worker image.
    #[arg(
        long,
        env = "QUOTESTREAM_ALLOWED_IMAGES",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub allowed_images: Vec<String>,
    /// Hosts a source type may reach, replacing its default (the vendor's official hosts plus
    /// loopback): TYPE=PATTERN[,PATTERN…], e.g. polygon=proxy.corp,loopback (repeat per type;
    /// in the environment, separate entries with ';'). Patterns: a host, *.domain, an IP,
    /// loopback, or * (any host).
    #[arg(
        long,
        env = "QUOTESTREAM_ALLOWED_SOURCE_HOSTS",
        value_delimiter = ';',
        value_name = "TYPE=PATTERNS"
    )]
    pub allowed_source_hosts: Vec<String>,
    /// The label (KEY=VALUE) a Secret must carry for a stream to reference it.
    #[arg(
        long,
        env = "QUOTESTREAM_SECRET_LABEL",
        default_value = crate::policy::secrets::DEFAULT_LABEL,
        value_name = "KEY=VALUE"
    )]
    pub secret_label: String,
    /// Let streams reference any Secret of their namespace (the Secret policy off; the operator
    /// then needs no `get secrets`).
    #[arg(long, env = "QUOTESTREAM_ALLOW_ANY_SECRET", default_value_t = false)]
    pub allow_any_secret: bool,
    /// Writes to the API server in flight at most, across every stream, and streams
    /// reconciled at once (1: one write at a time, the old sequential reconcile).
    #[arg(
        long,
        env = "QUOTESTREAM_API_CONCURRENCY",
        default_value_t = crate::resources::plan::DEFAULT_API_CONCURRENCY,
        value_name = "N"
    )]
    pub api_concurrency: std::num::NonZeroU16,
    /// How long ready shards taking tickers over may leave their new lists unacknowledged on
    /// their pods' /assignment before the old owners let go anyway (a Go duration up to 1h).
    /// 0s: do not ask, release once they are ready (when the operator cannot reach the
    /// workers' port).
    #[arg(long, env = "QUOTESTREAM_HANDOVER_TIMEOUT", default_value = "5m", value_parser = parse_handover_timeout)]
    pub handover_timeout: std::time::Duration,
}

fn parse_handover_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = quotestream_api::duration::parse(s).map_err(|e| e.to_string())?;
    if d > std::time::Duration::from_secs(3600) {
        return Err(format!(
            "{s} is more than 1h: a reshard would wait that long for a worker that cannot answer"
        ));
    }
    Ok(d)
}

impl RunArgs {
    /// The worker image and the admin's policy, or an error naming the flag to fix.
    pub fn settings(&self) -> anyhow::Result<OperatorSettings> {
        let worker_image = self
            .worker_image
            .clone()
            .unwrap_or_else(OperatorSettings::default_worker_image);
        let mut policy = Policy::defaults_for(&worker_image);
        if !self.allowed_images.is_empty() {
            policy.images = ImageAllowList::new(self.allowed_images.iter().cloned())
                .context("--allowed-images")?;
        }
        policy.source_hosts =
            SourceHosts::parse(&self.allowed_source_hosts).context("--allowed-source-hosts")?;
        policy.secrets = if self.allow_any_secret {
            SecretPolicy::off()
        } else {
            SecretPolicy::parse(&self.secret_label).context("--secret-label")?
        };
        Ok(OperatorSettings {
            worker_image,
            policy,
            api_concurrency: self.api_concurrency,
            handover_timeout: self.handover_timeout,
        })
    }
}

pub async fn run(args: RunArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = args.settings()?;
    tracing::info!(worker_image = %settings.worker_image, allowed_images = %settings.policy.images, secret_label = ?settings.policy.secrets.label(), "policy");
    let metrics = Metrics::new()?;
    let ready = Readiness::default();
    let (bound, server) = server::serve(
        args.listen,
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");

    let config = kube::Config::infer().await.context(
        "no Kubernetes client configuration: set KUBECONFIG or run in a pod with a ServiceAccount",
    )?;
    let client = Client::try_from(config.clone()).context("building the Kubernetes client")?;
    if args.apply_crd {
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
        crds.patch(
            "quotestreams.quotes.opa.io",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(QuoteStream::crd()),
        )
        .await
        .context(
            "applying the QuoteStream CRD (--apply-crd needs RBAC on customresourcedefinitions)",
        )?;
    }
    check_crd(&client, args.namespace.as_deref()).await?;
    ready.set(true);

    if !args.leader_election {
        // The only replica runs the controller: it leads (alerts and dashboards read
        // `quotestream_leader` to know that some replica reconciles).
        metrics.leader.set(1);
        controller::run(
            client,
            args.namespace.as_deref(),
            settings,
            metrics,
            shutdown.child_token(),
        )
        .await;
        server.await.ok();
        return Ok(());
    }

    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("quotestream-operator-{}", std::process::id()));
    // The Lease's own client: a request the API server never answers times out instead of
    // holding up renewals and checks (the controller's client has no read timeout: its watches
    // are long-lived).
    let mut lease_config = config;
    lease_config.read_timeout = Some(leader::LEASE_REQUEST_TIMEOUT);
    let lease_client = Client::try_from(lease_config).context("building the Lease client")?;
    let mut elector = Elector::start(
        lease_client,
        &args.lease_name,
        &args.lease_namespace,
        &identity,
    )
    .await?;
    tracing::info!(%identity, lease = %args.lease_name, "waiting for the leader lease");
    let result =
        lead_while_elected(&mut elector, &args, client, settings, &metrics, &shutdown).await;
    elector.release().await;
    server.await.ok();
    result
}

/// Runs the controller whenever this replica is the confirmed leader, stops it when the lease
/// is lost or cannot be renewed in time, and campaigns again; returns on shutdown.
async fn lead_while_elected(
    elector: &mut Elector,
    args: &RunArgs,
    client: Client,
    settings: OperatorSettings,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if !elector.wait_to_lead(shutdown).await? {
            return Ok(());
        }
        metrics.leader.set(1);
        tracing::info!("leading: starting the controller");
        let stop = shutdown.child_token();
        let mut running = tokio::spawn({
            let (client, settings, metrics, stop) = (
                client.clone(),
                settings.clone(),
                metrics.clone(),
                stop.clone(),
            );
            let namespace = args.namespace.clone();
            async move {
                controller::run(client, namespace.as_deref(), settings, metrics, stop).await;
            }
        });
        let why = elector.wait_to_step_down(shutdown).await;
        stop.cancel();
        // On shutdown running reconciles may finish; on a step-down the controller must be
        // gone before the lease expires (its requests may hang on an unreachable API server).
        let bound = match why {
            StepDown::Shutdown => SHUTDOWN_WAIT,
            _ => STEP_DOWN_WAIT,
        };
        if tokio::time::timeout(bound, &mut running).await.is_err() {
            running.abort();
            // Until the aborted task is gone, a reconcile polled on another thread could still
            // set a stream's gauges after `forget_streams` below.
            let _ = (&mut running).await;
            tracing::warn!(
                seconds = bound.as_secs(),
                "the controller did not stop in time: aborted"
            );
        }
        // The new leader reports the streams from now on (`Metrics::forget_streams`).
        metrics.forget_streams();
        metrics.leader.set(0);
        match why {
            StepDown::Shutdown => return Ok(()),
            StepDown::Lost => tracing::error!(
                "leader lease taken by another replica: controller stopped; standing by"
            ),
            StepDown::NotRenewed { last } => tracing::error!(
                last_renewal = %at(last.map(|h| h.renewed)),
                lease_expires = %at(last.map(|h| h.expires)),
                margin_seconds = leader::STEP_DOWN_MARGIN.as_secs(),
                "leader lease not renewed (API server unreachable?): controller stopped before the lease expires; campaigning again"
            ),
        }
        metrics.leader_step_downs(why.reason()).inc();
    }
}

/// A time for a log line (RFC 3339), or `none`.
fn at(t: Option<std::time::SystemTime>) -> String {
    t.and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map_or_else(|| "none".into(), |t| t.to_string())
}

/// How long a stopping controller may finish its running reconciles on SIGTERM.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// How long a controller may take to stop on a step-down (within the lease's margin).
const STEP_DOWN_WAIT: Duration = Duration::from_secs(1);

/// Fails with an install hint when the CRD is missing.
async fn check_crd(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api: Api<QuoteStream> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let probe = tokio::time::timeout(
        Duration::from_secs(30),
        api.list(&ListParams::default().limit(1)),
    )
    .await;
    match probe {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => anyhow::bail!(
            "the QuoteStream CRD is not installed: kubectl apply --server-side -f crds/quotestream.yaml (or install the Helm chart)"
        ),
        Ok(Err(e)) => Err(e).context("listing QuoteStreams (check the operator's RBAC)"),
        Err(_) => anyhow::bail!("the API server did not answer within 30s"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_handover_timeout;

    #[test]
    fn the_handover_timeout_is_a_go_duration_up_to_an_hour() {
        assert_eq!(parse_handover_timeout("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_handover_timeout("0s"), Ok(Duration::ZERO));
        let long = parse_handover_timeout("2h").unwrap_err();
        assert!(long.contains("more than 1h"), "{long}");
        assert!(parse_handover_timeout("5 minutes").is_err());
    }
}
