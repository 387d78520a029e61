//! The Secret policy: which Secrets a stream may make its workers read.
//!
//! A worker gets credentials as `secretKeyRef` env from Secrets of the stream's namespace. The
//! stream's author names them, and may not be allowed to read them: without a policy, creating
//! a QuoteStream would be a way to read any Secret of the namespace (a worker with
//! `spec.worker.env` from it, or a source URL that receives it). The cluster admin therefore
//! marks the Secrets streams may use with a label (default `quotes.opa.io/stream-access:
//! "true"`); a stream that names another Secret is Degraded and gets no Deployment.
//!
//! Checking the label needs the Secret's metadata: the operator reads it with a metadata-only
//! `get` (`PartialObjectMeta`: the data is never requested nor held). Kubernetes RBAC cannot
//! grant metadata alone, so the operator's `get secrets` would allow reading the data too;
//! the chart grants only `get` (no `list`/`watch`) and docs/security.md weighs the trade-off.

use std::collections::BTreeMap;

use quotestream_api::QuoteStreamSpec;

/// The label the admin requires on Secrets a stream may reference, by default.
pub const DEFAULT_LABEL: &str = "quotes.opa.io/stream-access=true";

/// The admin's Secret policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPolicy {
    /// The label key and value a referenced Secret must carry; None: any Secret of the
    /// namespace (the policy is off).
    required: Option<(String, String)>,
}

impl Default for SecretPolicy {
    fn default() -> Self {
        Self::parse(DEFAULT_LABEL).unwrap_or(Self { required: None })
    }
}

/// A `--secret-label` that is not `KEY=VALUE`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not KEY=VALUE with a label key and value (e.g. {DEFAULT_LABEL}); turn the policy off with --allow-any-secret instead"
)]
pub struct SecretLabelError(pub String);

impl SecretPolicy {
    /// Requires the label `KEY=VALUE`.
    pub fn parse(label: &str) -> Result<Self, SecretLabelError> {
        let bad = || SecretLabelError(label.to_owned());
        let (key, value) = label.split_once('=').ok_or_else(bad)?;
        let (key, value) = (key.trim(), value.trim());
        let fine = |s: &str, max: usize| {
            s.len() <= max
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        };
        if key.is_empty() || !fine(key, 317) || !fine(value, 63) || value.contains('/') {
            return Err(bad());
        }
        Ok(Self {
            required: Some((key.to_owned(), value.to_owned())),
        })
    }

    /// Any Secret of the stream's namespace may be referenced.
    pub fn off() -> Self {
        Self { required: None }
    }

    /// Whether the policy checks Secrets at all.
    pub fn is_enforced(&self) -> bool {
        self.required.is_some()
    }

    /// The required label as `KEY=VALUE`.
    pub fn label(&self) -> Option<String> {
        self.required.as_ref().map(|(k, v)| format!("{k}={v}"))
    }

    /// Whether a Secret with these labels may be referenced.
    pub fn allows(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match &self.required {
            None => true,
            Some((key, value)) => labels.and_then(|l| l.get(key)) == Some(value),
        }
    }
}

/// One Secret a stream's workers would read, and the field that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub field: String,
    pub secret: String,
}

/// Every Secret the spec makes the operator put into the worker pods: the source's
/// credentials, the sinks' URLs, the Redis CA (a mounted file, but read from the Secret all the
/// same), the history source's credentials and `spec.worker.env[*].valueFrom.secretKeyRef`.
pub fn secret_references(spec: &QuoteStreamSpec) -> Vec<SecretReference> {
    let mut refs = Vec::new();
    let mut add = |field: String, secret: &str| {
        refs.push(SecretReference {
            field,
            secret: secret.to_owned(),
        });
    };
    if let Some(a) = &spec.source.alpaca {
        add(
            "spec.source.alpaca.credentialsSecretRef".into(),
            &a.credentials_secret_ref.name,
        );
    }
    if let Some(p) = &spec.source.polygon {
        add(
            "spec.source.polygon.apiKeySecretRef".into(),
            &p.api_key_secret_ref.name,
        );
    }
    if let Some(redis) = &spec.sinks.redis {
        if let Some(r) = &redis.url_secret_ref {
            add("spec.sinks.redis.urlSecretRef".into(), &r.name);
        }
        if let Some(r) = &redis.ca_secret_ref {
            add("spec.sinks.redis.caSecretRef".into(), &r.name);
        }
        if let Some(r) = &redis.password_secret_ref {
            add("spec.sinks.redis.passwordSecretRef".into(), &r.name);
        }
        if let Some(r) = redis
            .sentinel
            .as_ref()
            .and_then(|s| s.password_secret_ref.as_ref())
        {
            add(
                "spec.sinks.redis.sentinel.passwordSecretRef".into(),
                &r.name,
            );
        }
    }
    if let Some(pg) = &spec.sinks.postgres {
        add(
            "spec.sinks.postgres.dsnSecretRef".into(),
            &pg.dsn_secret_ref.name,
        );
    }
    // The history backfill Jobs' own vendor credentials (when not the live source's).
    if let Some(h) = &spec.history {
        if let Some(a) = &h.alpaca {
            add(
                "spec.history.alpaca.credentialsSecretRef".into(),
                &a.credentials_secret_ref.name,
            );
        }
        if let Some(p) = &h.polygon {
            add(
                "spec.history.polygon.apiKeySecretRef".into(),
                &p.api_key_secret_ref.name,
            );
        }
    }
    let env = spec.worker.as_ref().and_then(|w| w.env.as_deref());
    for (i, var) in env.unwrap_or_default().iter().enumerate() {
        if let Some(s) = var
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            add(
                format!("spec.worker.env[{i}].valueFrom.secretKeyRef ({})", var.name),
                &s.name,
            );
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
    use quotestream_api::crd::{
        AlpacaCredentials, HistoryAlpaca, HistorySource, HistorySpec, PolygonSource, SourceType,
        WorkerTemplate,
    };

    use super::*;
    use crate::resources::fixtures::{postgres_sink, secret, sentinel_sinks, source, stream};

    /// What `secret_references` finds, as (field, Secret) pairs.
    fn fields_and_secrets(spec: &QuoteStreamSpec) -> Vec<(String, String)> {
        secret_references(spec)
            .into_iter()
            .map(|r| (r.field, r.secret))
            .collect()
    }

    #[test]
    fn the_default_requires_the_stream_access_label() {
        let policy = SecretPolicy::default();
        assert_eq!(
            policy.label().as_deref(),
            Some("quotes.opa.io/stream-access=true")
        );
        let labelled = BTreeMap::from([("quotes.opa.io/stream-access".into(), "true".into())]);
        assert!(policy.allows(Some(&labelled)));
        let other = BTreeMap::from([("quotes.opa.io/stream-access".into(), "yes".into())]);
        assert!(!policy.allows(Some(&other)));
        assert!(!policy.allows(None));
        assert!(SecretPolicy::off().allows(None));
    }

    #[test]
    fn labels_must_be_key_value() {
        assert!(SecretPolicy::parse("team.example/streams=ok").is_ok());
        for bad in ["", "novalue", "=x", "a b=c", "k=v/w"] {
            assert!(SecretPolicy::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_reference_is_found_with_its_field() {
        let mut s = stream("s", 1);
        s.spec.source = source(SourceType::Polygon);
        s.spec.source.polygon = Some(PolygonSource {
            api_key_secret_ref: secret("massive", "apiKey"),
            url: None,
            max_connections: None,
        });
        if let Some(redis) = s.spec.sinks.redis.as_mut() {
            redis.url = None;
            redis.url_secret_ref = Some(secret("redis-auth", "url"));
            redis.ca_secret_ref = Some(secret("redis-ca", "ca.crt"));
        }
        s.spec.sinks.postgres = Some(postgres_sink());
        s.spec.history = Some(HistorySpec {
            source: HistorySource::Alpaca,
            daily: Some("2y".into()),
            intraday: None,
            base_url: None,
            alpaca: Some(HistoryAlpaca {
                credentials_secret_ref: AlpacaCredentials {
                    name: "alpaca-history".into(),
                    key_id_key: None,
                    secret_key_key: None,
                },
            }),
            polygon: None,
            batch_size: 100,
            parallelism: 2,
            requests_per_hour: None,
            resources: None,
        });
        s.spec.worker = Some(WorkerTemplate {
            env: Some(vec![
                EnvVar {
                    name: "RUST_LOG".into(),
                    value: Some("debug".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "STORAGE_URL".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "store-auth".into(),
                            key: "url".into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                },
            ]),
            ..WorkerTemplate::default()
        });
        let found = fields_and_secrets(&s.spec);
        assert_eq!(
            found,
            [
                (
                    "spec.source.polygon.apiKeySecretRef".into(),
                    "massive".into()
                ),
                ("spec.sinks.redis.urlSecretRef".into(), "redis-auth".into()),
                ("spec.sinks.redis.caSecretRef".into(), "redis-ca".into()),
                (
                    "spec.sinks.postgres.dsnSecretRef".into(),
                    "quotes-db".into()
                ),
                (
                    "spec.history.alpaca.credentialsSecretRef".into(),
                    "alpaca-history".into()
                ),
                (
                    "spec.worker.env[1].valueFrom.secretKeyRef (STORAGE_URL)".into(),
                    "store-auth".into()
                ),
            ]
        );
    }

    #[test]
    fn a_sentinel_sets_passwords_are_references_too() {
        let mut s = stream("s", 1);
        s.spec.sinks = sentinel_sinks();
        let found = fields_and_secrets(&s.spec);
        assert_eq!(
            found,
            [
                (
                    "spec.sinks.redis.passwordSecretRef".into(),
                    "redis-auth".into()
                ),
                (
                    "spec.sinks.redis.sentinel.passwordSecretRef".into(),
                    "sentinel-auth".into()
                ),
            ]
        );
    }
}
