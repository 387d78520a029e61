//! The worker container's environment: the `run` flags, and every credential as a
//! `secretKeyRef` to the Secret the QuoteStream names (never a value in the ConfigMap).

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use quotestream_api::contract::env::*;
use quotestream_api::contract::{
    CA_DIR, LISTEN_ADDR, REDIS_CA_FILE_NAME, TERMINATION_LOG_PATH, WORKER_GRACE,
};
use quotestream_api::crd::{AlpacaCredentials, SecretKeyRef, Sinks, Source, SourceType};
use quotestream_api::worker_config::WORKER_CONFIG_PATH;

/// Names `spec.worker.env` may not set: the operator sets (or deliberately leaves unset) them.
pub const RESERVED_ENV: &[&str] = &[
    CONFIG,
    LISTEN,
    GRACE,
    REDIS_URL,
    REDIS_PASSWORD,
    REDIS_SENTINEL_PASSWORD,
    REDIS_CA_FILE,
    DATABASE_URL,
    ALPACA_KEY_ID,
    ALPACA_SECRET_KEY,
    POLYGON_API_KEY,
    REPLAY_FILE,
    SOURCE_HOSTS,
    BACKFILL_REQUESTS_PER_HOUR,
    TERMINATION_LOG,
    BUFFER_DIR,
];

/// The worker's environment: the fixed `run` settings, the hosts the source may reach (the
/// admin's list, which the worker enforces too), the credentials of `source` and `sinks`, then
/// the stream's extra variables (already checked against [`RESERVED_ENV`], so a stream cannot
/// widen its own host list).
pub fn worker_env(
    source: &Source,
    sinks: &Sinks,
    source_hosts: Option<&str>,
    extra: &[EnvVar],
) -> Vec<EnvVar> {
    let mut env = vec![
        value(CONFIG, WORKER_CONFIG_PATH),
        value(LISTEN, LISTEN_ADDR),
        value(GRACE, WORKER_GRACE),
        // A worker that cannot start writes why there; kubelet copies it into the pod's
        // `lastState.terminated.message`, which the operator reads into the stream's status.
        value(TERMINATION_LOG, TERMINATION_LOG_PATH),
    ];
    if let Some(hosts) = source_hosts {
        env.push(value(SOURCE_HOSTS, hosts));
    }
    if let Some(r) = sinks.redis.as_ref().and_then(|r| r.url_secret_ref.as_ref()) {
        env.push(from_secret(REDIS_URL, r));
    }
    if let Some(r) = sinks
        .redis
        .as_ref()
        .and_then(|r| r.password_secret_ref.as_ref())
    {
        env.push(from_secret(REDIS_PASSWORD, r));
    }
    if let Some(r) = sinks
        .redis
        .as_ref()
        .and_then(|r| r.sentinel.as_ref())
        .and_then(|s| s.password_secret_ref.as_ref())
    {
        env.push(from_secret(REDIS_SENTINEL_PASSWORD, r));
    }
    // The CA itself is a file (pod.rs mounts the Secret key); the variable names it.
    if sinks
        .redis
        .as_ref()
        .is_some_and(|r| r.ca_secret_ref.is_some())
    {
        env.push(value(
            REDIS_CA_FILE,
            &format!("{CA_DIR}/{REDIS_CA_FILE_NAME}"),
        ));
    }
    if let Some(pg) = &sinks.postgres {
        env.push(from_secret(DATABASE_URL, &pg.dsn_secret_ref));
    }
    match source.kind {
        SourceType::Alpaca => {
            if let Some(creds) = source.alpaca.as_ref().map(|a| &a.credentials_secret_ref) {
                env.extend(alpaca_env(creds));
            }
        }
        SourceType::Polygon => {
            if let Some(p) = &source.polygon {
                env.push(from_secret(POLYGON_API_KEY, &p.api_key_secret_ref));
            }
        }
        SourceType::Yahoo
        | SourceType::Synthetic
        | SourceType::Replay
        | SourceType::YahooStream => {}
    }
    env.extend(extra.iter().cloned());
    env
}

/// The Alpaca key pair from its Secret; unset keys default to the vendor's variable names.
pub(crate) fn alpaca_env(creds: &AlpacaCredentials) -> [EnvVar; 2] {
    let key = |k: &Option<String>, default: &str| SecretKeyRef {
        name: creds.name.clone(),
        key: k.clone().unwrap_or_else(|| default.to_owned()),
    };
    let id = key(&creds.key_id_key, ALPACA_KEY_ID);
    let secret = key(&creds.secret_key_key, ALPACA_SECRET_KEY);
    [
        from_secret(ALPACA_KEY_ID, &id),
        from_secret(ALPACA_SECRET_KEY, &secret),
    ]
}

pub(crate) fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// A required Secret key: a missing Secret keeps the pod from starting with an event that
/// names it, instead of a worker that runs without its credentials.
pub(crate) fn from_secret(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use quotestream_api::crd::{
        AlpacaCredentials, AlpacaSource, PolygonSource, RedisFormat, RedisSink,
    };

    use super::*;
    use crate::resources::fixtures::{postgres_sink, redis_sinks, secret, sentinel_sinks, source};

    fn secret_of<'a>(env: &'a [EnvVar], name: &str) -> Option<(&'a str, &'a str)> {
        let sel = env
            .iter()
            .find(|e| e.name == name)?
            .value_from
            .as_ref()?
            .secret_key_ref
            .as_ref()?;
        Some((sel.name.as_str(), sel.key.as_str()))
    }

    fn plain<'a>(env: &'a [EnvVar], name: &str) -> Option<&'a str> {
        env.iter().find(|e| e.name == name)?.value.as_deref()
    }

    #[test]
    fn run_flags_are_fixed() {
        let env = worker_env(&source(SourceType::Synthetic), &redis_sinks(), None, &[]);
        assert_eq!(
            plain(&env, "QUOTESTREAM_CONFIG"),
            Some("/etc/quotestream/worker.json")
        );
        assert_eq!(plain(&env, "QUOTESTREAM_LISTEN"), Some("0.0.0.0:8080"));
        assert_eq!(plain(&env, "QUOTESTREAM_GRACE"), Some("25s"));
        assert_eq!(
            plain(&env, "QUOTESTREAM_TERMINATION_LOG"),
            Some("/dev/termination-log")
        );
        assert_eq!(
            env.len(),
            4,
            "a Redis URL without password needs no Secret: {env:?}"
        );
    }

    #[test]
    fn sink_credentials_come_from_their_secrets() {
        let mut sinks = redis_sinks();
        sinks.redis = Some(RedisSink {
            url: None,
            url_secret_ref: Some(secret("redis-auth", "url")),
            ca_secret_ref: Some(secret("redis-ca", "ca.crt")),
            sentinel: None,
            cluster: None,
            password_secret_ref: None,
            sharded: false,
            channel: "quotes.realtime".into(),
            format: RedisFormat::Cloudevents,
            health_channel: "system.health".into(),
            allow_share_classes: false,
        });
        sinks.postgres = Some(postgres_sink());
        let env = worker_env(&source(SourceType::Yahoo), &sinks, None, &[]);
        assert_eq!(secret_of(&env, "REDIS_URL"), Some(("redis-auth", "url")));
        assert_eq!(
            plain(&env, "QUOTESTREAM_REDIS_CA_FILE"),
            Some("/etc/quotestream/ca/redis.crt"),
            "the CA is a mounted file (pod.rs), named by the variable"
        );
        assert_eq!(secret_of(&env, "DATABASE_URL"), Some(("quotes-db", "dsn")));
        let optional = env
            .iter()
            .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref()?.optional)
            .collect::<Vec<_>>();
        assert_eq!(optional, [false, false]);
    }

    #[test]
    fn a_sentinel_sets_two_passwords_come_from_their_secrets() {
        let env = worker_env(&source(SourceType::Yahoo), &sentinel_sinks(), None, &[]);
        assert_eq!(
            secret_of(&env, "REDIS_PASSWORD"),
            Some(("redis-auth", "password"))
        );
        assert_eq!(
            secret_of(&env, "REDIS_SENTINEL_PASSWORD"),
            Some(("sentinel-auth", "password"))
        );
    }

    #[test]
    fn alpaca_keys_default_to_the_vendor_names() {
        let mut src = source(SourceType::Alpaca);
        src.alpaca = Some(AlpacaSource {
            credentials_secret_ref: AlpacaCredentials {
                name: "alpaca".into(),
                key_id_key: None,
                secret_key_key: Some("secret".into()),
            },
            feed: None,
            url: None,
            max_connections: None,
        });
        let env = worker_env(&src, &redis_sinks(), None, &[]);
        assert_eq!(
            secret_of(&env, "APCA_API_KEY_ID"),
            Some(("alpaca", "APCA_API_KEY_ID"))
        );
        assert_eq!(
            secret_of(&env, "APCA_API_SECRET_KEY"),
            Some(("alpaca", "secret"))
        );
    }

    #[test]
    fn polygon_key_comes_from_its_secret_and_extra_env_follows() {
        let mut src = source(SourceType::Polygon);
        src.polygon = Some(PolygonSource {
            api_key_secret_ref: secret("polygon", "apiKey"),
            url: None,
            max_connections: None,
        });
        let extra = [value("RUST_LOG", "debug")];
        let env = worker_env(&src, &redis_sinks(), Some("socket.massive.com"), &extra);
        assert_eq!(
            secret_of(&env, "POLYGON_API_KEY"),
            Some(("polygon", "apiKey"))
        );
        assert_eq!(
            plain(&env, "QUOTESTREAM_SOURCE_HOSTS"),
            Some("socket.massive.com")
        );
        assert_eq!(env.last().map(|e| e.name.as_str()), Some("RUST_LOG"));
    }
}
