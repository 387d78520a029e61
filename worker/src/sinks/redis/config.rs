//! Settings of the Redis Pub/Sub sink (`spec.sinks.redis`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use quotestream_api::contract::{
    self,
    env::{REDIS_CA_FILE, REDIS_URL},
};
use quotestream_api::crd::{RedisFormat, RedisSink};

#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
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
            .field("url", &redact(&self.url))
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
                        "set spec.sinks.redis.url or spec.sinks.redis.urlSecretRef".to_owned()
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
        let ca_file =
            contract::env_or_spec(env, REDIS_CA_FILE, None).map(|(p, _)| PathBuf::from(p));
        if ca_file.is_some() && !url.starts_with("rediss://") {
            return Err(format!(
                "{REDIS_CA_FILE} is set but the Redis URL is not rediss:// (got {}): a CA is only used over TLS; use rediss://",
                redact(&url)
            ));
        }
        Ok(Self {
            url,
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
    /// The client for [`RedisConfig::url`]: over TLS with [`RedisConfig::ca_file`] as the
    /// trusted roots when it is set. The file is read here, so a missing or unusable one is an
    /// error that names it.
    pub fn client(&self) -> Result<redis::Client, String> {
        let Some(path) = &self.ca_file else {
            return redis::Client::open(self.url.as_str())
                .map_err(|e| format!("Redis URL {}: {e}", redact(&self.url)));
        };
        let bad = |why: String| format!("{REDIS_CA_FILE} {}: {why}", path.display());
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(
                "no -----BEGIN CERTIFICATE----- block in it; mount the CA certificate (PEM)".into(),
            ));
        }
        redis::Client::build_with_tls(
            self.url.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        )
        .map_err(|e| bad(format!("with Redis URL {}: {e}", redact(&self.url))))
    }
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
        assert_eq!(c.url, "rediss://:pw@r:6380/0");
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
        let err = c.client().unwrap_err();
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
        let err = c.client().unwrap_err();
        let _ = std::fs::remove_file(&not_pem);
        assert!(err.contains("no -----BEGIN CERTIFICATE-----"), "{err}");
    }
}
