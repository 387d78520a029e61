//! The hosts this worker's source may reach, and the check every connector makes before it
//! connects: the cluster admin's list that the operator passes in `QUOTESTREAM_SOURCE_HOSTS`,
//! else the vendor's official hosts plus loopback (`quotestream_api::source_hosts`). The
//! operator refuses such a stream already; this is the second line: a worker never sends an
//! API key to, or reads a reply from, a host outside the list it was given (docs/security.md).

use std::collections::HashMap;

use quotestream_api::contract::{self, env::SOURCE_HOSTS};
use quotestream_api::crd::SourceType;
use quotestream_api::source_hosts::HostAllowList;

use super::ConfigError;

/// The list for a source of `kind`: `QUOTESTREAM_SOURCE_HOSTS` when set, else the default.
pub fn allowed_hosts(
    kind: SourceType,
    env: &HashMap<String, String>,
) -> Result<HostAllowList, ConfigError> {
    match contract::env_value(env, SOURCE_HOSTS) {
        None => Ok(HostAllowList::default_for(kind)),
        Some(text) => HostAllowList::parse(text).map_err(|e| ConfigError::Invalid {
            field: SOURCE_HOSTS,
            value: format!("{text:?}"),
            fix: format!("{e} (the operator sets it from --allowed-source-hosts)"),
        }),
    }
}

/// `url`, the value of `field`, must name a host in `hosts`.
pub fn check_host(
    hosts: &HostAllowList,
    field: &'static str,
    url: &str,
) -> Result<(), ConfigError> {
    hosts.check(url).map_err(|refused| ConfigError::Invalid {
        field,
        value: format!("{:?}", quotestream_runtime::redact_url(url)),
        fix: format!(
            "{refused}; the worker does not connect there: use the vendor's URL, or ask the cluster admin to allow the host (quotestream-operator --allowed-source-hosts)"
        ),
    })
}

/// Redirects a client follows: at most [`MAX_REDIRECTS`], each only to a host in `hosts` (an
/// allowed server must not bounce the client, and its credentials, elsewhere).
pub fn redirect_policy(hosts: HostAllowList) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match hosts.check(attempt.url().as_str()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(format!("a redirect not followed: {refused}")),
        }
    })
}

/// Redirects one request may follow (reqwest's default).
pub const MAX_REDIRECTS: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_list_replaces_the_default() {
        let env = HashMap::from([(SOURCE_HOSTS.to_owned(), "proxy.corp.example".to_owned())]);
        let hosts = allowed_hosts(SourceType::Polygon, &env).unwrap();
        assert!(check_host(&hosts, "f", "wss://proxy.corp.example/stocks").is_ok());
        let e = check_host(&hosts, "spec.source.polygon.url", "ws://127.0.0.1:1/")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.source.polygon.url") && e.contains("127.0.0.1"),
            "{e}"
        );
        let default = allowed_hosts(SourceType::Polygon, &HashMap::new()).unwrap();
        assert_eq!(default, HostAllowList::default_for(SourceType::Polygon));
        let bad = HashMap::from([(SOURCE_HOSTS.to_owned(), "ws://x/".to_owned())]);
        let e = allowed_hosts(SourceType::Polygon, &bad).unwrap_err();
        assert_eq!(e.field(), SOURCE_HOSTS);
    }

    #[tokio::test]
    async fn redirects_leave_only_for_allowed_hosts() {
        use axum::response::Redirect;
        let app = axum::Router::new()
            .route(
                "/away",
                axum::routing::get(|| async { Redirect::to("http://bars.example.invalid/x") }),
            )
            .route(
                "/here",
                axum::routing::get(|| async { Redirect::to("/done") }),
            )
            .route("/done", axum::routing::get(|| async { "done" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        quotestream_runtime::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(redirect_policy(HostAllowList::default_for(
                SourceType::Yahoo,
            )))
            .build()
            .unwrap();
        let followed = client
            .get(format!("http://{addr}/here"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            followed.text().await.unwrap(),
            "done",
            "loopback is allowed"
        );
        let refused = client
            .get(format!("http://{addr}/away"))
            .send()
            .await
            .unwrap_err();
        let text = format!("{refused:?}");
        assert!(
            text.contains("a redirect not followed") && text.contains("bars.example.invalid"),
            "{text}"
        );
        server.abort();
    }
}
