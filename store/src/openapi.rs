//! The OpenAPI document of everything the store serves, generated from the handlers'
//! `#[utoipa::path]` annotations and the answer types (`GET /openapi.json`). Every route is
//! registered through [`crate::server::api`], which adds its operation to the document in the
//! same call: a route cannot be served without being documented
//! (`store/tests/openapi.rs` checks both directions against the running binary).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts; the paths come from the routes.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "quotestream-store",
        description = "Stored quotes of a quotestream: ingest (POST /quotes/batch, contract 001), and the read API under /v1 in the dialect of Alpaca's v2 market-data API: symbols, raw quotes, latest quotes, OHLCV bars from the rollups (1Min, 5Min, 15Min, 1Hour, 1Day), counts. Times are RFC 3339 UTC; pages end when next_page_token is null. Every refusal is JSON naming the parameter, the value and what is allowed. Human documentation: docs/query-api.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "read", description = "The read API (/v1); needs a bearer token when the store is started with one"),
        (name = "ingest", description = "Quotes in (the worker's storage sink)"),
        (name = "operations", description = "Probes, metrics, this document and the live page")
    )
)]
pub struct ApiDoc;

/// Declares the optional bearer token of /v1.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "Only when the store runs with --api-token / QUOTESTREAM_STORE_API_TOKEN (off by default)".into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The whole document (built once).
pub fn spec() -> &'static utoipa::openapi::OpenApi {
    static SPEC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| crate::server::api(1).into_openapi())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route the store serves", content_type = "application/json")))]
pub async fn get_openapi() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| spec().to_pretty_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}
