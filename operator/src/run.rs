//! `quotestream-operator run` (the default): the controller with leader election, metrics and
//! health endpoints, stopped cleanly by SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use quotestream_api::QuoteStream;
use tokio_util::sync::CancellationToken;

use crate::controller;
use crate::metrics::Metrics;
use crate::policy::{ImageAllowList, Policy};
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
        Ok(OperatorSettings {
            worker_image,
            policy,
        })
    }
}

pub async fn run(args: RunArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = args.settings()?;
    tracing::info!(worker_image = %settings.worker_image, allowed_images = %settings.policy.images, "policy");
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

    let client = Client::try_default().await.context(
        "no Kubernetes client configuration: set KUBECONFIG or run in a pod with a ServiceAccount",
    )?;
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

    let controller_stop = shutdown.child_token();
    if args.leader_election {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("quotestream-operator-{}", std::process::id()));
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&args.lease_namespace)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await
            .context("setting up leader election")?;
        let (mut leader, lease_task) = manager.watch().await;
        tracing::info!(%identity, lease = %args.lease_name, "waiting for the leader lease");
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => { drop(leader); let _ = lease_task.await; server.await.ok(); return Ok(()); }
                changed = leader.changed() => changed.context("leader election stopped")?,
            }
        }
        metrics.leader.set(1);
        tracing::info!(%identity, "leading: starting the controller");
        // Losing the lease stops the controller; the process exits so Kubernetes restarts it as
        // a standby (the usual pattern: never act without the lease).
        let stop = controller_stop.clone();
        let lost = tokio::spawn(async move {
            while leader.changed().await.is_ok() {
                if !*leader.borrow() {
                    tracing::error!("leader lease lost: stopping");
                    stop.cancel();
                    return true;
                }
            }
            false
        });
        controller::run(
            client,
            args.namespace.as_deref(),
            settings,
            metrics.clone(),
            controller_stop,
        )
        .await;
        metrics.leader.set(0);
        // The watcher task owns the last receiver of the leader channel: ending it closes the
        // channel, which makes the lease task release the Lease (holder cleared), so the next
        // replica to look (a restarted pod, a standby waking up) takes it at once instead of
        // waiting for it to expire. Bounded: an unreachable API server must not hold up the
        // exit; the lease then simply expires.
        lost.abort();
        let was_lost = matches!(lost.await, Ok(true));
        match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
            Ok(Ok(Ok(_))) => tracing::info!("leader lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "leader lease not released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "leader lease task failed"),
            Err(_) => tracing::warn!("leader lease not released within 5s: it expires instead"),
        }
        server.await.ok();
        if was_lost {
            anyhow::bail!("leader lease lost");
        }
        return Ok(());
    }
    controller::run(
        client,
        args.namespace.as_deref(),
        settings,
        metrics,
        controller_stop,
    )
    .await;
    server.await.ok();
    Ok(())
}

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
