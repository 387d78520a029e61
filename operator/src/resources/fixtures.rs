//! Test builders: QuoteStreams as the API server hands them to the operator.

use quotestream_api::crd::{
    ConfigMapKeyRef, PostgresSink, RedisFormat, RedisSentinel, RedisSink, SecretKeyRef, Sinks,
    Source, SourceType,
};
use quotestream_api::{QuoteStream, QuoteStreamSpec, TickerSet};

use super::plan::{OperatorSettings, StreamPlan};

/// The 503 symbols of the S&P 500 (the api crate's test data).
pub fn sp500() -> TickerSet {
    TickerSet::parse_list(include_str!("../../../api/testdata/sp500.txt")).unwrap()
}

pub fn tickers(symbols: &[&str]) -> TickerSet {
    TickerSet::from_symbols(symbols).unwrap()
}

pub fn source(kind: SourceType) -> Source {
    Source::of(kind)
}

pub fn redis_sinks() -> Sinks {
    Sinks {
        redis: Some(RedisSink {
            url: Some("redis://redis:6379/0".into()),
            url_secret_ref: None,
            ca_secret_ref: None,
            sentinel: None,
            cluster: None,
            password_secret_ref: None,
            sharded: false,
            channel: "quotes.realtime".into(),
            format: RedisFormat::Plain,
            health_channel: "system.health".into(),
            allow_share_classes: false,
        }),
        storage: None,
        postgres: None,
    }
}

/// [`redis_sinks`] with a master behind Sentinel instead of a URL: the data nodes' password in
/// Secret `redis-auth`, the Sentinels' own in Secret `sentinel-auth` (key `password` each).
pub fn sentinel_sinks() -> Sinks {
    let mut sinks = redis_sinks();
    if let Some(redis) = sinks.redis.as_mut() {
        redis.url = None;
        redis.sentinel = Some(RedisSentinel {
            master_name: "quotes".into(),
            addresses: vec!["sentinel-0:26379".into()],
            tls: false,
            password_secret_ref: Some(secret("sentinel-auth", "password")),
        });
        redis.password_secret_ref = Some(secret("redis-auth", "password"));
    }
    sinks
}

pub fn postgres_sink() -> PostgresSink {
    PostgresSink {
        dsn_secret_ref: secret("quotes-db", "dsn"),
        table: "quotes.real_time".into(),
        buffer: None,
    }
}

pub fn secret(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

pub fn config_map_ref(name: &str, key: &str) -> ConfigMapKeyRef {
    ConfigMapKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

/// A stream named `name` in namespace `markets` with a uid and generation 3, as read from the
/// API server; synthetic source, Redis sink, tickers resolved separately.
pub fn stream(name: &str, shards: i32) -> QuoteStream {
    let mut s = QuoteStream::new(
        name,
        QuoteStreamSpec {
            tickers: None,
            tickers_from: Some(quotestream_api::crd::TickersFrom {
                config_map_key_ref: config_map_ref("sp500", "tickers"),
            }),
            interval: "5s".into(),
            shards,
            source: source(SourceType::Synthetic),
            sinks: redis_sinks(),
            worker: None,
            history: None,
            schedule: None,
            autoscale: None,
        },
    );
    s.metadata.namespace = Some("markets".into());
    s.metadata.uid = Some("0b5e7a9c-1111-4222-8333-944455556666".into());
    s.metadata.generation = Some(3);
    s
}

pub fn plan(stream: &QuoteStream, tickers: &TickerSet) -> StreamPlan {
    StreamPlan::new(stream, tickers, None, &OperatorSettings::default()).unwrap()
}

/// `spec.source` of type alpaca, its credentials in the Secret `alpaca` under the default keys.
pub fn alpaca(max_connections: Option<i32>) -> Source {
    let mut src = source(SourceType::Alpaca);
    src.alpaca = Some(quotestream_api::crd::AlpacaSource {
        credentials_secret_ref: quotestream_api::crd::AlpacaCredentials {
            name: "alpaca".into(),
            key_id_key: None,
            secret_key_key: None,
        },
        feed: None,
        url: None,
        max_connections,
    });
    src
}
