//! The operator ↔ worker contract outside `worker.json` ([`crate::WorkerConfig`]): the
//! environment variables the Deployment sets and the worker reads, the paths it mounts, the
//! port and the probe paths. The operator writes these names (operator/src/resources/env.rs,
//! pod.rs) and the worker reads them (its source and sink settings, `run`'s flags): both take
//! them from here, so they cannot drift apart.
//!
//! A setting both the spec and the environment can give (a sink's URL) follows one rule,
//! [`env_or_spec`]: a non-blank variable wins, else the spec.

use std::collections::HashMap;

/// The environment variables of the worker container.
pub mod env {
    /// Path of the worker configuration (`run --config`).
    pub const CONFIG: &str = "QUOTESTREAM_CONFIG";
    /// Address of the HTTP endpoints (`run --listen`).
    pub const LISTEN: &str = "QUOTESTREAM_LISTEN";
    /// Drain budget on SIGTERM (`run --grace`).
    pub const GRACE: &str = "QUOTESTREAM_GRACE";
    /// How far ahead of the node's clock a quote may be dated (`run --max-clock-skew`, default
    /// 5s); set it through `spec.worker.env` for a vendor whose clock runs ahead.
    pub const MAX_CLOCK_SKEW: &str = "QUOTESTREAM_MAX_CLOCK_SKEW";
    /// Bytes each sink queue may hold (`run --queue-bytes`, a Kubernetes quantity such as
    /// `16Mi`); overrides worker.json's `queueBytes`, which the operator derives from the pod's
    /// memory limit.
    pub const QUEUE_BYTES: &str = "QUOTESTREAM_QUEUE_BYTES";
    /// Overrides the replay recording's path (local runs, tests); the Deployment relies on the
    /// default, `<REPLAY_DIR>/<key>`.
    pub const REPLAY_FILE: &str = "QUOTESTREAM_REPLAY_FILE";
    /// Directory of the durable sinks' disk buffers (`run --buffer-dir`, default
    /// [`super::BUFFER_DIR`], where the operator mounts an emptyDir when a sink asks for one).
    pub const BUFFER_DIR: &str = "QUOTESTREAM_BUFFER_DIR";
    /// The Redis URL (filled from `spec.sinks.redis.urlSecretRef`).
    pub const REDIS_URL: &str = "REDIS_URL";
    /// The AUTH password of the data nodes of a Sentinel or Cluster Redis (filled from
    /// `spec.sinks.redis.passwordSecretRef`).
    pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";
    /// The Sentinels' own AUTH password (filled from
    /// `spec.sinks.redis.sentinel.passwordSecretRef`).
    pub const REDIS_SENTINEL_PASSWORD: &str = "REDIS_SENTINEL_PASSWORD";
    /// Path of a PEM file of the CA certificates a `rediss://` connection trusts (instead of the
    /// system's): a Redis with a private CA.
    pub const REDIS_CA_FILE: &str = "QUOTESTREAM_REDIS_CA_FILE";
    /// The PostgreSQL connection string (filled from `spec.sinks.postgres.dsnSecretRef`).
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// The storage API's base URL; set it through `spec.worker.env` (e.g. from a Secret) when
    /// the URL carries credentials.
    pub const STORAGE_URL: &str = "STORAGE_URL";
    /// The Alpaca credentials (filled from `spec.source.alpaca.credentialsSecretRef`; also the
    /// default keys in that Secret).
    pub const ALPACA_KEY_ID: &str = "APCA_API_KEY_ID";
    pub const ALPACA_SECRET_KEY: &str = "APCA_API_SECRET_KEY";
    /// The Massive/Polygon API key (filled from `spec.source.polygon.apiKeySecretRef`).
    pub const POLYGON_API_KEY: &str = "POLYGON_API_KEY";

    /// The hosts the stream's source may reach (comma-separated patterns,
    /// [`crate::source_hosts::HostAllowList`]): the cluster admin's list for the source type,
    /// set by the operator. Unset or blank: the vendor's official hosts plus loopback.
    pub const SOURCE_HOSTS: &str = "QUOTESTREAM_SOURCE_HOSTS";

    /// The request budget of one `backfill` run, per hour (`backfill --requests-per-hour`): the
    /// operator gives each backfill Job of a stream its share of `spec.history.requestsPerHour`.
    pub const BACKFILL_REQUESTS_PER_HOUR: &str = "QUOTESTREAM_BACKFILL_REQUESTS_PER_HOUR";

    /// Where a worker that cannot start writes its one-line reason (`run --termination-log`; a
    /// [`crate::sink_failure::SinkFailure`] line for a sink): the container's termination
    /// message file, [`super::TERMINATION_LOG_PATH`], set by the operator. Unset (a person
    /// running the binary): the reason goes to stderr only.
    pub const TERMINATION_LOG: &str = "QUOTESTREAM_TERMINATION_LOG";

    /// The settings and credentials a worker reads from its environment (besides `run`'s
    /// flags, which clap reads).
    pub const WORKER_READS: &[&str] = &[
        REDIS_URL,
        REDIS_PASSWORD,
        REDIS_SENTINEL_PASSWORD,
        REDIS_CA_FILE,
        DATABASE_URL,
        STORAGE_URL,
        REPLAY_FILE,
        ALPACA_KEY_ID,
        ALPACA_SECRET_KEY,
        POLYGON_API_KEY,
        SOURCE_HOSTS,
    ];
}

/// Where the shard ConfigMap is mounted (`worker.json` inside it).
pub const CONFIG_DIR: &str = "/etc/quotestream";
/// Where the CA certificates of `spec.sinks.redis.caSecretRef` are mounted (a Secret volume
/// inside [`CONFIG_DIR`]).
pub const CA_DIR: &str = "/etc/quotestream/ca";
/// The file of that Secret key in [`CA_DIR`]: what `QUOTESTREAM_REDIS_CA_FILE` names.
pub const REDIS_CA_FILE_NAME: &str = "redis.crt";
/// Where the replay ConfigMap is mounted; the worker reads `<REPLAY_DIR>/<key>` by default.
pub const REPLAY_DIR: &str = "/etc/quotestream/replay";
/// The container's termination message file (Kubernetes' default `terminationMessagePath`);
/// kubelet copies what the worker writes there into `lastState.terminated.message`.
pub const TERMINATION_LOG_PATH: &str = "/dev/termination-log";
/// Where the disk buffers live (`spec.sinks.<sink>.buffer.type: disk`): one directory per sink
/// inside it, on an emptyDir volume the operator mounts there.
pub const BUFFER_DIR: &str = "/var/lib/quotestream/buffer";
/// Port of the worker's HTTP endpoints.
pub const HTTP_PORT: u16 = 8080;
/// The worker's default listen address (`run --listen`): every interface, [`HTTP_PORT`].
pub const LISTEN_ADDR: &str = "0.0.0.0:8080";
/// Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Liveness: 200 while the process serves (a sink outage is in the body, not the status).
pub const HEALTH_PATH: &str = "/health";
/// Readiness: 503 while starting and draining, and while a sink has failed permanently (the
/// JSON body names the sink, the reason and the setting to fix).
pub const READY_PATH: &str = "/ready";
/// The ticker list in force ([`crate::worker_config::AppliedList`], JSON): the operator reads it
/// from a shard's pods to know that the shard streams the tickers handed to it, before it lets
/// their previous owner release them (docs/operator.md, acknowledged hand-over).
pub const ASSIGNMENT_PATH: &str = "/assignment";
/// The worker's drain budget on SIGTERM: below the pod's 30 s grace period, so the process
/// exits by itself before kubelet kills it.
pub const WORKER_GRACE: &str = "25s";

/// Where a setting's value came from, so that an error can name what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The environment variable of that name.
    Env(&'static str),
    /// The spec's field.
    Spec,
}

/// The value of `var` in `env`, trimmed; `None` when unset or blank (an empty Secret key
/// counts as unset).
pub fn env_value<'a>(env: &'a HashMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The one precedence rule for a setting the environment and the spec may both give: the
/// variable `var` when it is set and not blank, else the spec's value (when not blank).
pub fn env_or_spec<'a>(
    env: &'a HashMap<String, String>,
    var: &'static str,
    spec: Option<&'a str>,
) -> Option<(&'a str, Origin)> {
    env_value(env, var)
        .map(|v| (v, Origin::Env(var)))
        .or_else(|| {
            spec.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| (v, Origin::Spec))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_port_agree() {
        assert!(crate::worker_config::WORKER_CONFIG_PATH.starts_with(CONFIG_DIR));
        assert!(REPLAY_DIR.starts_with(CONFIG_DIR));
        assert_eq!(LISTEN_ADDR, format!("0.0.0.0:{HTTP_PORT}"));
    }

    #[test]
    fn a_non_blank_variable_wins_over_the_spec() {
        let env = HashMap::from([
            ("SET".to_owned(), " env ".to_owned()),
            ("BLANK".to_owned(), "  ".to_owned()),
        ]);
        assert_eq!(
            env_or_spec(&env, "SET", Some("spec")),
            Some(("env", Origin::Env("SET")))
        );
        assert_eq!(
            env_or_spec(&env, "BLANK", Some("spec")),
            Some(("spec", Origin::Spec))
        );
        assert_eq!(
            env_or_spec(&env, "UNSET", Some("spec")),
            Some(("spec", Origin::Spec))
        );
        assert_eq!(env_or_spec(&env, "UNSET", Some(" ")), None);
        assert_eq!(env_or_spec(&env, "UNSET", None), None);
    }
}
