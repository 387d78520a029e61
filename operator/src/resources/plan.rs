//! The desired state of a stream before it becomes Kubernetes objects: the ticker assignment,
//! each shard's `WorkerConfig` (the exact `worker.json` of its ConfigMap) and the hash that
//! decides whether the shard's pods must be rolled.

use std::num::{NonZeroU16, NonZeroUsize};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use quotestream_api::crd::{Source, SourceType, SpecError, WorkerTemplate};
use quotestream_api::sharding::{Assignment, balanced_split, rebalance};
use quotestream_api::source_hosts::source_urls;
use quotestream_api::{QuoteStream, Ticker, TickerSet, WorkerConfig};

use quotestream_api::worker_config::WORKER_CONFIG_KEY;

use super::env::RESERVED_ENV;
use super::meta::{MAX_LABEL_VALUE, shard_name};
use crate::policy::Policy;

/// Settings of the operator process that shape what it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSettings {
    /// Worker image of streams that do not set `spec.worker.image`.
    pub worker_image: String,
    /// What the cluster admin allows a stream to make the operator do.
    pub policy: Policy,
    /// Writes the operator has in flight at most, and streams it reconciles at once
    /// (`--api-concurrency`; docs/operator.md#scale).
    pub api_concurrency: NonZeroU16,
    /// How long ready shards taking tickers over may leave their new lists unacknowledged
    /// before the old owners are released anyway (`--handover-timeout`); zero releases on
    /// readiness alone (`super::handover`).
    pub handover_timeout: std::time::Duration,
}

/// `--api-concurrency` by default: with as many streams reconciled at once (each with at most
/// two reads or one Event in flight) at most 48 requests, below the 49 seats of the smallest default
/// priority level a client lands in (`global-default`; `workload-low`, where ServiceAccounts
/// land, has 245) with the API server's default 600-request concurrency.
pub const DEFAULT_API_CONCURRENCY: NonZeroU16 = NonZeroU16::new(16).unwrap();

impl OperatorSettings {
    /// The worker image the operator was released with (what `make images` names it).
    pub fn default_worker_image() -> String {
        format!(
            "ghcr.io/quotestream/quotestream-worker:{}",
            env!("CARGO_PKG_VERSION")
        )
    }
}

impl Default for OperatorSettings {
    fn default() -> Self {
        let worker_image = Self::default_worker_image();
        Self {
            policy: Policy::defaults_for(&worker_image),
            worker_image,
            api_concurrency: DEFAULT_API_CONCURRENCY,
            handover_timeout: super::handover::DEFAULT_ACK_TIMEOUT,
        }
    }
}

/// Most bytes of data (keys and values) the API server accepts in one ConfigMap (1 MiB).
pub const MAX_CONFIG_MAP_DATA: usize = 1 << 20;

/// Why a stream cannot be planned. Each message names the field and the fix; [`PlanError::reason`]
/// is the condition reason shown in `kubectl get qs`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(
        "metadata.{field} of the QuoteStream is empty; the operator plans only streams read back from the API server"
    )]
    Metadata { field: &'static str },
    #[error(
        "metadata.name {name:?} is {len} characters; it becomes the label quotes.opa.io/stream, which allows at most 63: recreate the stream under a shorter name"
    )]
    NameTooLong { name: String, len: usize },
    #[error("{}", too_many_connections(.vendor, *.shards, *.max, *.explicit))]
    TooManyConnections {
        vendor: &'static str,
        shards: usize,
        max: usize,
        /// Whether `maxConnections` is set (otherwise `max` is the vendor's default).
        explicit: bool,
    },
    #[error(
        "spec.worker.env[{index}]: {name} is set by the operator; remove it from spec.worker.env"
    )]
    ReservedEnv { index: usize, name: String },
    #[error(
        "shard {shard} would hold {tickers} tickers: its ConfigMap's worker.json would be {bytes} bytes, over the {MAX_CONFIG_MAP_DATA} bytes (1 MiB) Kubernetes allows in a ConfigMap; raise spec.shards (kubectl scale qs/NAME --replicas=N) so each shard holds fewer tickers"
    )]
    ConfigTooLarge {
        shard: u32,
        tickers: usize,
        bytes: usize,
    },
    #[error(
        "spec.worker.image {image:?} is not allowed by the cluster admin's image allow-list ({allowed}): remove spec.worker.image to run the operator's worker image, or ask the admin to allow it (quotestream-operator --allowed-images, chart value policy.allowedImages)"
    )]
    ImageNotAllowed { image: String, allowed: String },
    #[error(
        "{field} {url:?}: {refused}. The worker would connect there{credentials}: use the vendor's URL (or leave {field} unset), or ask the cluster admin to allow the host (quotestream-operator --allowed-source-hosts {kind}=HOST,…; chart value policy.allowedSourceHosts.{kind})"
    )]
    SourceHostNotAllowed {
        field: &'static str,
        /// Redacted: a URL's user-info never reaches a status.
        url: String,
        kind: &'static str,
        credentials: &'static str,
        /// Why (`HostRefused`'s message).
        refused: String,
    },
    #[error("{}", secret_not_allowed(.field, .secret, .label, *.exists))]
    SecretNotAllowed {
        field: String,
        secret: String,
        /// The label the admin requires, KEY=VALUE.
        label: String,
        exists: bool,
    },
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error(transparent)]
    MemoryLimit(#[from] super::queue_budget::BadMemoryLimit),
    #[error("shard {shard}: the worker configuration cannot be serialised: {source}")]
    Serialize {
        shard: u32,
        #[source]
        source: serde_json::Error,
    },
}

impl PlanError {
    /// The reason of the Degraded condition this error sets (CamelCase, stable: alerts match it).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Spec(
                SpecError::InlineTickers(_)
                | SpecError::ConfigMapTickers { .. }
                | SpecError::Overlap { .. }
                | SpecError::NoTickers,
            ) => "TickerListInvalid",
            Self::Spec(SpecError::UnsupportedInstrument { .. }) => "UnsupportedInstrument",
            Self::Spec(SpecError::ConfigMapListMissing { .. }) => "MissingConfigMap",
            Self::Spec(SpecError::Shards { .. }) => "InvalidShardCount",
            Self::Spec(SpecError::Interval(_)) => "InvalidInterval",
            Self::Metadata { .. } | Self::NameTooLong { .. } => "InvalidMetadata",
            Self::TooManyConnections { .. } => "TooManyConnections",
            Self::ReservedEnv { .. } | Self::MemoryLimit(_) => "InvalidWorkerTemplate",
            Self::ConfigTooLarge { .. } => "ShardConfigTooLarge",
            Self::ImageNotAllowed { .. } => "ImageNotAllowed",
            Self::SourceHostNotAllowed { .. } => "SourceHostNotAllowed",
            Self::SecretNotAllowed { .. } => "SecretNotAllowed",
            Self::History(_) => "InvalidHistory",
            Self::Serialize { .. } => "InternalError",
        }
    }
}

/// One shard's desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardPlan {
    pub index: u32,
    /// `<stream>-shard-<i>`: the ConfigMap and the Deployment.
    pub name: String,
    pub config: WorkerConfig,
    /// `worker.json` as written to the ConfigMap (serialised once, here).
    pub config_json: String,
    /// Hash of what a running worker cannot pick up by itself (see [`config_hash`]); the
    /// Deployment's pod template carries it, so a change rolls the shard.
    pub config_hash: String,
}

/// The desired state of a whole stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub namespace: String,
    pub stream: String,
    /// The QuoteStream as controlling owner of every shard object.
    pub owner: OwnerReference,
    pub assignment: Assignment,
    /// Assignment epoch: the stored one while the assignment is unchanged, one more otherwise.
    pub epoch: i64,
    /// Fingerprint of the whole assignment (`status.assignment.hash`).
    pub fingerprint: String,
    /// Worker image: `spec.worker.image`, else the operator's default.
    pub image: String,
    /// `spec.worker` (defaults when absent).
    pub worker: WorkerTemplate,
    /// The hosts the source may reach, for the worker's environment (`SOURCE_HOSTS`); None
    /// for sources that reach none (synthetic, replay).
    pub source_hosts: Option<String>,
    pub shards: Vec<ShardPlan>,
}

impl StreamPlan {
    /// Plans `stream` over `tickers` (its resolved ticker set, see `QuoteStreamSpec::ticker_set`).
    /// With a `previous` assignment (read back from the shard ConfigMaps) it is evolved with
    /// `rebalance`, so a reshard or a list edit moves the fewest tickers; without one the
    /// assignment is `balanced_split`.
    pub fn new(
        stream: &QuoteStream,
        tickers: &TickerSet,
        previous: Option<&Assignment>,
        settings: &OperatorSettings,
    ) -> Result<Self, PlanError> {
        let meta = &stream.metadata;
        let name = non_empty(meta.name.as_deref(), "name")?;
        let namespace = non_empty(meta.namespace.as_deref(), "namespace")?;
        if name.len() > MAX_LABEL_VALUE {
            return Err(PlanError::NameTooLong {
                name: name.to_owned(),
                len: name.len(),
            });
        }
        let owner = stream
            .controller_owner_ref(&())
            .filter(|o| !o.uid.is_empty())
            .ok_or(PlanError::Metadata { field: "uid" })?;
        let owner = OwnerReference {
            block_owner_deletion: Some(true),
            ..owner
        };

        let spec = &stream.spec;
        spec.interval()?;
        let shards = spec.shard_count(tickers)?;
        check_connections(stream, shards)?;
        let worker = spec.worker.clone().unwrap_or_default();
        check_env(&worker)?;
        check_image(&worker, &settings.policy)?;
        let queue_bytes = super::queue_budget::queue_bytes(&worker, &spec.sinks)?;
        let source_hosts = check_source_hosts(&spec.source, &settings.policy)?;
        crate::history::check(spec, &settings.policy)?;

        let assignment = match previous {
            Some(prev) => rebalance(prev, tickers, shards),
            None => balanced_split(tickers, shards),
        };
        let fingerprint = assignment.fingerprint();
        let stored = stream.status.as_ref().and_then(|s| s.assignment.as_ref());
        let epoch = match stored {
            Some(s) if s.hash == fingerprint => s.epoch,
            Some(s) => s.epoch + 1,
            None => 1,
        };

        let count = shards.get();
        // A stream's budget is shared: each shard's token bucket holds an equal share.
        let share = spec.source.rate_limit.requests_per_hour as f64 / count as f64;
        let plans = assignment
            .shards()
            .iter()
            .enumerate()
            .map(|(i, list)| {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                let config = WorkerConfig {
                    namespace: namespace.to_owned(),
                    stream: name.to_owned(),
                    shard: index,
                    shards: u32::try_from(count).unwrap_or(u32::MAX),
                    tickers: list.iter().map(Ticker::to_string).collect(),
                    interval: spec.interval.clone(),
                    requests_per_hour: share,
                    source: spec.source.clone(),
                    sinks: spec.sinks.clone(),
                    schedule: spec.schedule.clone(),
                    epoch,
                    fingerprint: assignment.shard_fingerprint(i),
                    queue_bytes,
                };
                shard_plan(name, index, config)
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            namespace: namespace.to_owned(),
            stream: name.to_owned(),
            owner,
            image: worker
                .image
                .clone()
                .unwrap_or_else(|| settings.worker_image.clone()),
            worker,
            source_hosts,
            assignment,
            epoch,
            fingerprint,
            shards: plans,
        })
    }

    /// The source type of the stream (every shard has the same).
    pub fn source_type(&self) -> Option<SourceType> {
        self.shards.first().map(|s| s.config.source.kind)
    }
}

fn shard_plan(stream: &str, index: u32, config: WorkerConfig) -> Result<ShardPlan, PlanError> {
    let serialise = |c: &WorkerConfig| {
        serde_json::to_string_pretty(c).map_err(|source| PlanError::Serialize {
            shard: index,
            source,
        })
    };
    let config_json = serialise(&config)?;
    let bytes = WORKER_CONFIG_KEY.len() + config_json.len();
    if bytes > MAX_CONFIG_MAP_DATA {
        return Err(PlanError::ConfigTooLarge {
            shard: index,
            tickers: config.tickers.len(),
            bytes,
        });
    }
    let config_hash = hash(&serialise(&config.restart_view())?);
    Ok(ShardPlan {
        index,
        name: shard_name(stream, index),
        config,
        config_json,
        config_hash,
    })
}

/// The hash whose change rolls a shard's pods: hex XXH64 of the JSON of
/// [`WorkerConfig::restart_view`] (stable: serde_json writes struct fields in order), i.e. of
/// everything but what a running worker reloads — its ticker list, the shard count and its
/// rate-limit share, which change on every reshard (SPEC §4 forbids restarting shards whose
/// tickers did not change). The stream's whole budget (`source.rateLimit`) is still in it, so
/// changing that rolls every shard.
pub fn config_hash(config: &WorkerConfig) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&config.restart_view()).map(|json| hash(&json))
}

fn hash(text: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
}

fn non_empty<'a>(value: Option<&'a str>, field: &'static str) -> Result<&'a str, PlanError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(PlanError::Metadata { field })
}

/// Connections a vendor allows per API key when `maxConnections` is unset (Alpaca and
/// Massive/Polygon: one, unless the plan says otherwise).
const DEFAULT_MAX_CONNECTIONS: usize = 1;

/// WebSocket vendors limit concurrent connections per account; each shard holds one, so more
/// shards than that cannot all connect.
fn check_connections(stream: &QuoteStream, shards: NonZeroUsize) -> Result<(), PlanError> {
    let Some((vendor, set)) = vendor_max_connections(&stream.spec.source) else {
        return Ok(());
    };
    let max = set.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if shards.get() > max {
        return Err(PlanError::TooManyConnections {
            vendor,
            shards: shards.get(),
            max,
            explicit: set.is_some(),
        });
    }
    Ok(())
}

/// The connection limit of a source and the field it comes from, if it has one.
pub fn connection_limit(source: &Source) -> Option<(&'static str, usize)> {
    let (name, max) = vendor_max_connections(source)?;
    Some((name, max.unwrap_or(DEFAULT_MAX_CONNECTIONS)))
}

/// The vendor of a connection-limited source and its `maxConnections`, if set.
fn vendor_max_connections(source: &Source) -> Option<(&'static str, Option<usize>)> {
    let (name, max) = match source.kind {
        SourceType::Alpaca => ("alpaca", source.alpaca.as_ref()?.max_connections),
        SourceType::Polygon => ("polygon", source.polygon.as_ref()?.max_connections),
        _ => return None,
    };
    Some((name, max.and_then(|m| usize::try_from(m).ok())))
}

/// The message of [`PlanError::SecretNotAllowed`]: the field, the Secret, and the command that
/// fixes it.
fn secret_not_allowed(field: &str, secret: &str, label: &str, exists: bool) -> String {
    if exists {
        format!(
            "{field} names Secret {secret:?}, which does not carry the label {label} that the cluster admin requires of Secrets a QuoteStream may use: if this stream may read it, label it (kubectl label secret {secret} {label}), or reference another Secret"
        )
    } else {
        format!(
            "{field} names Secret {secret:?}, which does not exist: create it in the stream's namespace with the label {label} that the cluster admin requires of Secrets a QuoteStream may use (kubectl create secret generic {secret} … && kubectl label secret {secret} {label})"
        )
    }
}

/// The message of [`PlanError::TooManyConnections`]: an unset limit is the vendor's default
/// (Alpaca and Massive/Polygon: one connection per API key), which users may not know applies.
fn too_many_connections(vendor: &str, shards: usize, max: usize, explicit: bool) -> String {
    let field = format!("spec.source.{vendor}.maxConnections");
    if explicit {
        format!(
            "spec.shards ({shards}) needs {shards} connections but {field} allows {max}: lower spec.shards to {max} or raise maxConnections if the account allows more"
        )
    } else {
        format!(
            "spec.shards ({shards}) needs {shards} connections but {vendor} allows {max} per API key unless the plan says otherwise ({field} is unset): lower spec.shards to {max}, or set {field} to what the account allows"
        )
    }
}

/// A stream may only pick an image the admin allows (unset: the operator's worker image).
fn check_image(worker: &WorkerTemplate, policy: &Policy) -> Result<(), PlanError> {
    match &worker.image {
        Some(image) if !policy.images.allows(image) => Err(PlanError::ImageNotAllowed {
            image: image.clone(),
            allowed: policy.images.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Every source URL the author set must name an allowed host for its source type. Returns the
/// list the worker enforces again, for sources that reach a host.
fn check_source_hosts(source: &Source, policy: &Policy) -> Result<Option<String>, PlanError> {
    let kind = source.kind;
    let allowed = policy.source_hosts.for_type(kind);
    for (field, url) in source_urls(source) {
        check_host(policy, kind, field, url)?;
    }
    let reaches_a_host = !matches!(kind, SourceType::Synthetic | SourceType::Replay);
    Ok(reaches_a_host.then(|| allowed.to_string()))
}

/// `url` (set in `field`) must name a host the admin allows for sources of `kind`.
pub(crate) fn check_host(
    policy: &Policy,
    kind: SourceType,
    field: &'static str,
    url: &str,
) -> Result<(), PlanError> {
    policy
        .source_hosts
        .for_type(kind)
        .check(url)
        .map_err(|refused| PlanError::SourceHostNotAllowed {
            field,
            url: quotestream_runtime::redact_url(url),
            kind: kind.name(),
            credentials: match kind {
                SourceType::Alpaca | SourceType::Polygon => " and send it the API key",
                _ => "",
            },
            refused: refused.to_string(),
        })
}

fn check_env(worker: &WorkerTemplate) -> Result<(), PlanError> {
    let env = worker.env.as_deref().unwrap_or_default();
    match env
        .iter()
        .enumerate()
        .find(|(_, e)| RESERVED_ENV.contains(&e.name.as_str()))
    {
        Some((index, e)) => Err(PlanError::ReservedEnv {
            index,
            name: e.name.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
