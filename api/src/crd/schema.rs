//! Hand-written schema fragments for fields whose OpenAPI needs more than derive offers
//! (list semantics, patterns shared with the Rust-side parsers).

use schemars::{Schema, SchemaGenerator, json_schema};

use crate::duration::DURATION_PATTERN;
use crate::ticker::{TICKER_MAX_LEN, TICKER_PATTERN};

/// `spec.tickers`: a set (the API server rejects duplicates itself) of canonical symbols.
pub fn ticker_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "string", "pattern": TICKER_PATTERN, "maxLength": TICKER_MAX_LEN },
        "minItems": 1,
        "maxItems": super::MAX_INLINE_TICKERS,
        "x-kubernetes-list-type": "set",
    })
}

/// `spec.interval`: a Go duration within [MIN_INTERVAL, MAX_INTERVAL].
pub fn interval(_: &mut SchemaGenerator) -> Schema {
    let rule = format!(
        "!self.matches(r'{pattern}') || (duration(self) >= duration('{min}') && duration(self) <= duration('{max}'))",
        pattern = DURATION_PATTERN,
        min = super::MIN_INTERVAL,
        max = super::MAX_INTERVAL,
    );
    json_schema!({
        "type": "string",
        "default": "5s",
        "pattern": DURATION_PATTERN,
        "maxLength": 32,
        "x-kubernetes-validations": [{
            "rule": rule,
            "message": "spec.interval must be between 100ms and 1h (e.g. 500ms, 5s, 1m)",
        }],
    })
}

/// An optional Go duration (timeouts, windows): pattern only.
pub fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "pattern": DURATION_PATTERN, "maxLength": 32 })
}

/// A Kubernetes object name (DNS-1123 subdomain).
pub fn object_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    })
}

/// A ConfigMap/Secret data key.
pub fn config_key(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": "^[-._a-zA-Z0-9]+$",
    })
}

/// A URL with one of the given schemes and no inline credentials (those belong in a Secret).
pub fn url_with_schemes(schemes: &str) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 2048,
        "pattern": format!("^({schemes})://[^\\s]+$"),
        "x-kubernetes-validations": [{
            "rule": "!self.matches('^[a-z]+://[^/@]*:[^/@]*@')",
            "message": "the URL carries a password: credentials belong in a Secret (for Redis, put the whole URL in a Secret and use sinks.redis.urlSecretRef)",
        }],
    })
}

pub fn http_url(_: &mut SchemaGenerator) -> Schema {
    url_with_schemes("http|https")
}

pub fn ws_url(_: &mut SchemaGenerator) -> Schema {
    url_with_schemes("ws|wss")
}

pub fn redis_url(_: &mut SchemaGenerator) -> Schema {
    url_with_schemes("redis|rediss")
}

/// A byte size as a whole-number Kubernetes quantity (`512Mi`, `1Gi`).
pub fn byte_quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": super::sinks::BUFFER_SIZE_PATTERN,
        "maxLength": 21,
    })
}

/// `host:port` (a name, an IPv4 address or a bracketed IPv6 address), for Redis nodes.
pub const HOST_PORT_PATTERN: &str =
    r"^([A-Za-z0-9]([-.A-Za-z0-9]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$";

/// A list of `host:port` addresses (Sentinels, cluster seed nodes): at least one, no duplicates.
pub fn host_port_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "string", "pattern": HOST_PORT_PATTERN, "maxLength": 263 },
        "minItems": 1,
        "maxItems": 32,
        "x-kubernetes-list-type": "set",
    })
}
