//! Settings of the Redis Pub/Sub sink (`spec.sinks.redis`).

use std::time::Duration;

use quotestream_api::crd::{RedisFormat, RedisSink};

/// The environment variable holding the Redis URL when the QuoteStream uses `urlSecretRef`
/// (the Deployment fills it from the Secret), and the override `make run` honours.
pub const REDIS_URL_ENV: &str = "REDIS_URL";

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    pub channel: String,
    pub health_channel: String,
    pub format: RedisFormat,
    /// CloudEvents `source` of this worker: `/quotestream/<namespace>/<stream>/shard-<i>`.
    pub producer: String,
    /// Heartbeat period on the health channel (contract 004: 30 s).
    pub heartbeat_every: Duration,
    /// Publishes per pipeline round trip.
    pub pipeline_max: usize,
}

impl RedisConfig {
    /// From the QuoteStream settings; the URL comes from `spec.sinks.redis.url` or, with
    /// `urlSecretRef`, from `REDIS_URL` (`env_url`).
    pub fn from_spec(
        spec: &RedisSink,
        env_url: Option<String>,
        producer: String,
    ) -> Result<Self, String> {
        let url = match (&spec.url, &spec.url_secret_ref) {
            (Some(url), _) => url.clone(),
            (None, Some(r)) => env_url.ok_or_else(|| {
                format!(
                    "{REDIS_URL_ENV} is not set: the Deployment sets it from Secret {} key {} (spec.sinks.redis.urlSecretRef)",
                    r.name, r.key
                )
            })?,
            (None, None) => env_url.ok_or("set spec.sinks.redis.url or spec.sinks.redis.urlSecretRef")?,
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(format!(
                "Redis URL must start with redis:// or rediss:// (got {})",
                redact(&url)
            ));
        }
        Ok(Self {
            url,
            channel: spec.channel.clone(),
            health_channel: spec.health_channel.clone(),
            format: spec.format,
            producer,
            heartbeat_every: Duration::from_secs(30),
            pipeline_max: 1000,
        })
    }
}

/// A URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
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
        let err = RedisConfig::from_spec(&spec(None, true), None, "/p".into()).unwrap_err();
        assert!(
            err.contains("REDIS_URL is not set") && err.contains("Secret redis key url"),
            "{err}"
        );
        let c = RedisConfig::from_spec(
            &spec(None, true),
            Some("rediss://:pw@r:6380/0".into()),
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
    }
}
