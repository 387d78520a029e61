//! Settings of the Redis Pub/Sub sink (`spec.sinks.redis`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use quotestream_api::contract::{
    self,
    env::{REDIS_CA_FILE, REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD, REDIS_URL},
};
use quotestream_api::crd::{RedisFormat, RedisSink};

/// Where the sink publishes: one server, a master found through Sentinel, or a Cluster.
#[derive(Clone, PartialEq)]
pub enum Target {
    /// One server at a redis:// or rediss:// URL.
    Server { url: String },
    /// The master the Sentinels at `sentinels` (host:port) know as `master_name`.
    Sentinel {
        master_name: String,
        sentinels: Vec<String>,
        tls: bool,
        /// The data nodes' AUTH password.
        password: Option<String>,
        /// The Sentinels' own AUTH password.
        sentinel_password: Option<String>,
    },
    /// A Redis Cluster learnt from the seed nodes `nodes` (host:port).
    Cluster {
        nodes: Vec<String>,
        tls: bool,
        password: Option<String>,
        /// SPUBLISH (sharded Pub/Sub) instead of PUBLISH.
        sharded: bool,
    },
}

/// Passwords are never shown: `Debug` (what `?config` logs) redacts them.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = |p: &Option<String>| p.as_ref().map(|_| "***");
        match self {
            Self::Server { url } => f.debug_struct("Server").field("url", &redact(url)).finish(),
            Self::Sentinel {
                master_name,
                sentinels,
                tls,
                password: p,
                sentinel_password: sp,
            } => f
                .debug_struct("Sentinel")
                .field("master_name", master_name)
                .field("sentinels", sentinels)
                .field("tls", tls)
                .field("password", &password(p))
                .field("sentinel_password", &password(sp))
                .finish(),
            Self::Cluster {
                nodes,
                tls,
                password: p,
                sharded,
            } => f
                .debug_struct("Cluster")
                .field("nodes", nodes)
                .field("tls", tls)
                .field("password", &password(p))
                .field("sharded", sharded)
                .finish(),
        }
    }
}

impl Target {
    /// What logs and errors name: the URL (redacted), or the Sentinels or seed nodes.
    pub fn describe(&self) -> String {
        match self {
            Self::Server { url } => redact(url),
            Self::Sentinel {
                master_name,
                sentinels,
                ..
            } => format!("master {master_name} of Sentinels {}", sentinels.join(",")),
            Self::Cluster { nodes, .. } => format!("cluster of {}", nodes.join(",")),
        }
    }

    fn tls(&self) -> bool {
        match self {
            Self::Server { url } => url.starts_with("rediss://"),
            Self::Sentinel { tls, .. } | Self::Cluster { tls, .. } => *tls,
        }
    }

    /// The publish command: SPUBLISH for a sharded cluster, PUBLISH otherwise.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Self::Cluster { sharded: true, .. } => "SPUBLISH",
            _ => "PUBLISH",
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    pub target: Target,
    pub channel: String,
    pub health_channel: String,
    pub format: RedisFormat,
    /// CloudEvents `source` of this worker: `/quotestream/<namespace>/<stream>/shard-<i>`.
    pub producer: String,
    /// Heartbeat period on the health channel (contract 004: 30 s).
    pub heartbeat_every: Duration,
    /// Publish share-class tickers too (`spec.sinks.redis.allowShareClasses`); by default
    /// contract 004's `^[A-Z]{1,5}$` keeps them off.
    pub allow_share_classes: bool,
    /// Publishes per pipeline round trip.
    pub pipeline_max: usize,
    /// The CA certificates (PEM) a `rediss://` connection trusts instead of the system's
    /// (`QUOTESTREAM_REDIS_CA_FILE`).
    pub ca_file: Option<PathBuf>,
}

/// The URL may carry a password: `Debug` (what `?config` logs) shows it redacted.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("target", &self.target)
            .field("channel", &self.channel)
            .field("health_channel", &self.health_channel)
            .field("format", &self.format)
            .field("producer", &self.producer)
            .field("heartbeat_every", &self.heartbeat_every)
            .field("allow_share_classes", &self.allow_share_classes)
            .field("pipeline_max", &self.pipeline_max)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl RedisConfig {
    /// From the QuoteStream settings; the URL is `REDIS_URL` (the Deployment fills it from
    /// `urlSecretRef`; `make run` sets it) or else `spec.sinks.redis.url`
    /// ([`contract::env_or_spec`]).
    pub fn from_spec(
        spec: &RedisSink,
        env: &HashMap<String, String>,
        producer: String,
    ) -> Result<Self, String> {
        let password = contract::env_or_spec(env, REDIS_PASSWORD, None).map(|(p, _)| p.to_owned());
        if password.is_none()
            && let Some(r) = &spec.password_secret_ref
        {
            return Err(format!(
                "{REDIS_PASSWORD} is not set: the Deployment sets it from Secret {} key {} (spec.sinks.redis.passwordSecretRef)",
                r.name, r.key
            ));
        }
        let target = match (&spec.sentinel, &spec.cluster) {
            (Some(_), Some(_)) => {
                return Err(
                    "set only one of spec.sinks.redis.sentinel and spec.sinks.redis.cluster"
                        .to_owned(),
                );
            }
            (Some(s), None) => Target::Sentinel {
                master_name: s.master_name.clone(),
                sentinels: addresses("spec.sinks.redis.sentinel.addresses", &s.addresses)?,
                tls: s.tls,
                password,
                sentinel_password: sentinel_password(s, env)?,
            },
            (None, Some(c)) => Target::Cluster {
                nodes: addresses("spec.sinks.redis.cluster.addresses", &c.addresses)?,
                tls: c.tls,
                password,
                sharded: spec.sharded,
            },
            (None, None) => Target::Server {
                url: server_url(spec, env)?,
            },
        };
        if spec.sharded && !matches!(target, Target::Cluster { .. }) {
            return Err("spec.sinks.redis.sharded (SPUBLISH) needs spec.sinks.redis.cluster: sharded Pub/Sub exists only in a Redis Cluster".to_owned());
        }
        let ca_file =
            contract::env_or_spec(env, REDIS_CA_FILE, None).map(|(p, _)| PathBuf::from(p));
        if ca_file.is_some() && !target.tls() {
            return Err(format!(
                "{REDIS_CA_FILE} is set but the connection to {} is not over TLS: a CA is only used over TLS; use rediss:// (or tls: true for sentinel or cluster)",
                target.describe()
            ));
        }
        Ok(Self {
            target,
            ca_file,
            channel: spec.channel.clone(),
            health_channel: spec.health_channel.clone(),
            format: spec.format,
            producer,
            heartbeat_every: Duration::from_secs(30),
            allow_share_classes: spec.allow_share_classes,
            pipeline_max: 1000,
        })
    }
}

impl RedisConfig {
    /// The CA certificates (PEM) of [`RedisConfig::ca_file`], when it is set. The file is read
    /// here, so a missing or unusable one is an error that names it.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let bad = |why: String| format!("{REDIS_CA_FILE} {}: {why}", path.display());
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(
                "no -----BEGIN CERTIFICATE----- block in it; mount the CA certificate (PEM)".into(),
            ));
        }
        Ok(Some(pem))
    }

    /// The client for one server at `url`: over TLS with [`RedisConfig::ca_file`] as the
    /// trusted roots when it is set.
    pub fn client(&self, url: &str) -> Result<redis::Client, String> {
        let Some(pem) = self.ca_pem()? else {
            return redis::Client::open(url).map_err(|e| format!("Redis URL {}: {e}", redact(url)));
        };
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        )
        .map_err(|e| format!("{REDIS_CA_FILE} with Redis URL {}: {e}", redact(url)))
    }
}

/// The URL of one server: `REDIS_URL` (the Deployment fills it from `urlSecretRef`; `make run`
/// sets it) or else `spec.sinks.redis.url` ([`contract::env_or_spec`]).
fn server_url(spec: &RedisSink, env: &HashMap<String, String>) -> Result<String, String> {
    let (url, origin) = match contract::env_or_spec(env, REDIS_URL, spec.url.as_deref()) {
        Some((url, origin)) => (url.to_owned(), origin),
        None => match &spec.url_secret_ref {
            Some(r) => {
                return Err(format!(
                    "{REDIS_URL} is not set: the Deployment sets it from Secret {} key {} (spec.sinks.redis.urlSecretRef)",
                    r.name, r.key
                ));
            }
            None => {
                return Err(
                    "set spec.sinks.redis.url, spec.sinks.redis.urlSecretRef, spec.sinks.redis.sentinel or spec.sinks.redis.cluster".to_owned(),
                );
            }
        },
    };
    let field = match origin {
        contract::Origin::Env(var) => format!("{var} (from spec.sinks.redis.urlSecretRef)"),
        contract::Origin::Spec => "spec.sinks.redis.url".to_owned(),
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!(
            "{field}: the Redis URL must start with redis:// or rediss:// (got {})",
            redact(&url)
        ));
    }
    // Parsed now, so a URL the client cannot use stops the worker at start (exit 1 naming
    // the setting) instead of leaving a sink that never runs behind a ready worker.
    if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
        return Err(format!(
            "{field} is not a usable Redis URL ({}): {e}; the form is redis://[:password@]host[:port][/db], or rediss://… for TLS",
            redact(&url)
        ));
    }
    Ok(url)
}

/// The Sentinels' own password: `REDIS_SENTINEL_PASSWORD`, which the Deployment sets from
/// `sentinel.passwordSecretRef` (a missing variable with a reference set is a clear error).
fn sentinel_password(
    sentinel: &quotestream_api::crd::RedisSentinel,
    env: &HashMap<String, String>,
) -> Result<Option<String>, String> {
    let password =
        contract::env_or_spec(env, REDIS_SENTINEL_PASSWORD, None).map(|(p, _)| p.to_owned());
    match (&password, &sentinel.password_secret_ref) {
        (None, Some(r)) => Err(format!(
            "{REDIS_SENTINEL_PASSWORD} is not set: the Deployment sets it from Secret {} key {} (spec.sinks.redis.sentinel.passwordSecretRef)",
            r.name, r.key
        )),
        _ => Ok(password),
    }
}

/// Sentinel or cluster node addresses: host:port each, at least one (the CRD's schema checks
/// the same; a worker run from a file gets the same answer).
fn addresses(field: &str, list: &[String]) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Err(format!("{field} is empty: list at least one host:port"));
    }
    for a in list {
        let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(format!(
                "{field}: {a:?} is not host:port (e.g. redis-sentinel-0.redis:26379)"
            ));
        }
    }
    Ok(list.to_vec())
}

/// A URL with any password replaced, for logs and errors; a value that is not a URL is not
/// shown at all ([`quotestream_runtime::redact_url`]).
pub fn redact(url: &str) -> String {
    quotestream_runtime::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: Option<&str>, secret: bool) -> RedisSink {
        serde_json::from_value(serde_json::json!({
            "url": url,
            "urlSecretRef": if secret { serde_json::json!({"name": "redis", "key": "url"}) } else { serde_json::Value::Null },
        }))
        .unwrap()
    }

    #[test]
    fn secret_reference_reads_the_environment() {
        let none = HashMap::new();
        let err = RedisConfig::from_spec(&spec(None, true), &none, "/p".into()).unwrap_err();
        assert!(
            err.contains("REDIS_URL is not set") && err.contains("Secret redis key url"),
            "{err}"
        );
        let c = RedisConfig::from_spec(
            &spec(None, true),
            &HashMap::from([(REDIS_URL.to_owned(), "rediss://:pw@r:6380/0".to_owned())]),
            "/p".into(),
        )
        .unwrap();
        assert_eq!(
            c.target,
            Target::Server {
                url: "rediss://:pw@r:6380/0".into()
            }
        );
        assert_eq!(c.channel, "quotes.realtime");
        assert_eq!(c.health_channel, "system.health");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert!(!redact("hunter2").contains("hunter2"));
        let c = RedisConfig::from_spec(
            &spec(Some("redis://:pw-s3cr3t@r:6379/0"), false),
            &HashMap::new(),
            "/p".into(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn an_unparsable_url_is_refused_naming_its_setting_without_the_password() {
        for (url, secret, field) in [
            (
                "redis://:pw-s3cr3t@r:notaport/0",
                false,
                "spec.sinks.redis.url",
            ),
            (
                "redis://:pw-s3cr3t@r:6379/zero",
                true,
                "REDIS_URL (from spec.sinks.redis.urlSecretRef)",
            ),
        ] {
            let (spec, env) = match secret {
                false => (spec(Some(url), false), HashMap::new()),
                true => (
                    spec(None, true),
                    HashMap::from([(REDIS_URL.to_owned(), url.to_owned())]),
                ),
            };
            let err = RedisConfig::from_spec(&spec, &env, "/p".into()).unwrap_err();
            assert!(err.starts_with(field), "{err}");
            assert!(err.contains("not a usable Redis URL"), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn a_ca_file_needs_rediss_and_a_readable_pem() {
        let env = |url: &str, ca: &str| {
            HashMap::from([
                (REDIS_URL.to_owned(), url.to_owned()),
                (REDIS_CA_FILE.to_owned(), ca.to_owned()),
            ])
        };
        let err = RedisConfig::from_spec(
            &spec(None, true),
            &env("redis://r:6379/0", "/ca.pem"),
            "/p".into(),
        )
        .unwrap_err();
        assert!(
            err.contains(REDIS_CA_FILE) && err.contains("use rediss://"),
            "{err}"
        );
        let missing = "/nonexistent/quotestream-ca.pem";
        let c = RedisConfig::from_spec(
            &spec(None, true),
            &env("rediss://r:6380/0", missing),
            "/p".into(),
        )
        .unwrap();
        assert_eq!(c.ca_file.as_deref(), Some(std::path::Path::new(missing)));
        let err = c.ca_pem().unwrap_err();
        assert!(
            err.contains(REDIS_CA_FILE) && err.contains(missing),
            "{err}"
        );
        let not_pem = std::env::temp_dir().join(format!("qs-redis-ca-{}.pem", std::process::id()));
        std::fs::write(&not_pem, "hello").unwrap();
        let c = RedisConfig::from_spec(
            &spec(None, true),
            &env("rediss://r:6380/0", &not_pem.display().to_string()),
            "/p".into(),
        )
        .unwrap();
        let err = c.ca_pem().unwrap_err();
        let _ = std::fs::remove_file(&not_pem);
        assert!(err.contains("no -----BEGIN CERTIFICATE-----"), "{err}");
    }

    fn parse(spec: serde_json::Value, env: &[(&str, &str)]) -> Result<RedisConfig, String> {
        let spec: RedisSink = serde_json::from_value(spec).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RedisConfig::from_spec(&spec, &env, "/p".into())
    }

    #[test]
    fn sentinel_takes_its_password_from_the_environment_and_never_shows_it() {
        let spec = serde_json::json!({
            "sentinel": {"masterName": "quotes", "addresses": ["s-0:26379", "[fd00::1]:26379"]},
            "passwordSecretRef": {"name": "redis-auth", "key": "password"},
        });
        let err = parse(spec.clone(), &[]).unwrap_err();
        assert!(
            err.contains("REDIS_PASSWORD is not set")
                && err.contains("Secret redis-auth key password"),
            "{err}"
        );
        let c = parse(spec, &[(REDIS_PASSWORD, "pw-s3cr3t")]).unwrap();
        assert_eq!(
            c.target,
            Target::Sentinel {
                master_name: "quotes".into(),
                sentinels: vec!["s-0:26379".into(), "[fd00::1]:26379".into()],
                tls: false,
                password: Some("pw-s3cr3t".into()),
                sentinel_password: None,
            }
        );
        assert_eq!(c.target.publish_command(), "PUBLISH");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_sentinels_own_password_comes_from_the_environment_and_is_never_shown() {
        let spec = serde_json::json!({
            "sentinel": {"masterName": "quotes", "addresses": ["s-0:26379"],
                         "passwordSecretRef": {"name": "sentinel-auth", "key": "pw"}},
        });
        let err = parse(spec.clone(), &[]).unwrap_err();
        assert!(
            err.contains("REDIS_SENTINEL_PASSWORD is not set")
                && err.contains("Secret sentinel-auth key pw")
                && err.contains("spec.sinks.redis.sentinel.passwordSecretRef"),
            "{err}"
        );
        let c = parse(spec, &[(REDIS_SENTINEL_PASSWORD, "sentinel-s3cr3t")]).unwrap();
        let Target::Sentinel {
            password,
            sentinel_password,
            ..
        } = &c.target
        else {
            panic!("{:?}", c.target);
        };
        assert_eq!(
            (password.as_deref(), sentinel_password.as_deref()),
            (None, Some("sentinel-s3cr3t")),
            "the data nodes keep no password of their own"
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn cluster_publishes_with_spublish_when_sharded() {
        let c = parse(
            serde_json::json!({"cluster": {"addresses": ["r-0:6379"]}, "sharded": true}),
            &[],
        )
        .unwrap();
        assert_eq!(c.target.publish_command(), "SPUBLISH");
        let c = parse(
            serde_json::json!({"cluster": {"addresses": ["r-0:6379"]}}),
            &[],
        )
        .unwrap();
        assert_eq!(c.target.publish_command(), "PUBLISH");
    }

    #[test]
    fn bad_topologies_are_refused_naming_the_field() {
        let err = parse(serde_json::json!({"cluster": {"addresses": ["r-0"]}}), &[]).unwrap_err();
        assert!(
            err.contains("spec.sinks.redis.cluster.addresses") && err.contains("host:port"),
            "{err}"
        );
        let err = parse(
            serde_json::json!({"sentinel": {"masterName": "q", "addresses": []}}),
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains("spec.sinks.redis.sentinel.addresses is empty"),
            "{err}"
        );
        let err = parse(
            serde_json::json!({"url": "redis://r:6379/0", "sharded": true}),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("spec.sinks.redis.sharded"), "{err}");
        let err = parse(
            serde_json::json!({"cluster": {"addresses": ["r-0:6379"]}}),
            &[(REDIS_CA_FILE, "/ca.pem")],
        )
        .unwrap_err();
        assert!(err.contains("tls: true"), "{err}");
    }
}
