//! The live page at `/`: latest quotes updating by polling `/v1/quotes/latest`, and a
//! candlestick chart of a chosen symbol from `/v1/bars`, drawn as SVG by `app.js`. Plain
//! HTML and JavaScript embedded in the binary: nothing to build or install, nothing fetched
//! from elsewhere. Tested in headless chromium (`store/tests/live_page.rs`).

use axum::http::header;
use axum::response::{Html, IntoResponse};

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");

/// The page.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "The live page: latest quotes and a candlestick chart", content_type = "text/html", body = String)))]
pub async fn get_index() -> Html<&'static str> {
    Html(INDEX)
}

/// The page's script.
#[utoipa::path(get, path = "/app.js", tag = "operations",
    responses((status = 200, description = "The live page's script", content_type = "text/javascript", body = String)))]
pub async fn get_app() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP,
    )
}
