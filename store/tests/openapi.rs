//! `GET /openapi.json` against the routes the real `quotestream-store` serves: every
//! operation in the document answers on the running binary (no 404/405), every route is
//! registered through the one list that documents it (`server::api`), every endpoint the docs
//! name is in the document, and each read endpoint's query parameters in the document are the
//! ones its parser accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use quotestream_testkit::PostgresServer;
use serde_json::Value;
use support::{Store, batch, client, database, post, quote};

/// 2026-01-20T14:30:15.123Z
const T0: i64 = 1_768_919_415_123;

fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_in_the_document_is_served_and_every_route_is_documented() {
    let pg = PostgresServer::start().unwrap();
    let store = Store::start(&database(&pg, "openapi"), &[]);
    let http = client();
    let (code, _, a) = post(
        &http,
        &store,
        batch(vec![quote("AAPL", T0, 185.5, 10)]),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{a}");
    // Known to the read API once merged into the latest quotes (a 404 below would then be a
    // route that is missing, not a symbol).
    let latest = format!("{}/v1/quotes/latest?symbols=AAPL", store.url());
    let mut known = false;
    for _ in 0..600 {
        if http.get(&latest).send().await.unwrap().status().as_u16() == 200 {
            known = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(known, "AAPL never became known to the read API");
    let r = http
        .get(format!("{}/openapi.json", store.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served: Value = r.json().await.unwrap();
    assert!(
        served["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        served["openapi"]
    );
    // The document served is the one built from the types.
    let built = serde_json::to_value(quotestream_store::openapi::spec()).unwrap();
    assert_eq!(served, built);
    // `quotestream-store openapi` prints the same, without a database.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_quotestream-store"))
        .arg("openapi")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&printed.stdout).unwrap(),
        served
    );

    let ops = operations(&served);
    for (method, path) in &ops {
        let url = format!("{}{}", store.url(), path.replace("{symbol}", "AAPL"));
        let response = match method.as_str() {
            "GET" => http.get(&url).send().await.unwrap(),
            "POST" => http.post(&url).body("{}").send().await.unwrap(),
            other => panic!("{other} {path}: a method the store does not use"),
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is in the document but answers {status}: {body}"
        );
    }
    // Something that is not in the document is not served.
    for (method, path) in [
        ("GET", "/v2/symbols"),
        ("GET", "/v1/trades/AAPL"),
        ("DELETE", "/v1/symbols"),
    ] {
        assert!(!ops.contains(&(method.to_owned(), path.to_owned())));
        let status = http
            .request(method.parse().unwrap(), format!("{}{path}", store.url()))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
    }

    // Every endpoint the docs name ("GET /v1/…", "POST /…" in backticks) is documented.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for doc in ["docs/query-api.md", "docs/store.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (i, _) in text.match_indices('`') {
            let rest = &text[i + 1..];
            let Some(end) = rest.find('`') else { continue };
            let code = &rest[..end];
            let Some((method, target)) = code.split_once(' ') else {
                continue;
            };
            if !["GET", "POST"].contains(&method) || !target.starts_with('/') {
                continue;
            }
            let path = target.split('?').next().unwrap().to_owned();
            assert!(
                ops.contains(&(method.to_owned(), path.clone())),
                "{doc} names `{code}`, which the OpenAPI document lacks ({ops:?})"
            );
        }
    }
}

/// Routes are added only through `server::api` with `routes!` (which documents them): no
/// plain axum routing anywhere else in the store's source.
#[test]
fn no_route_bypasses_the_documented_list() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut offenders = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            for needle in [
                ".route(",
                "axum::routing",
                ".nest(",
                ".route_service(",
                ".fallback(",
            ] {
                if text.contains(needle) {
                    offenders.push(format!("{}: {needle}", p.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes outside server::api: {offenders:?}"
    );
}

#[test]
fn each_read_endpoint_documents_exactly_the_parameters_it_accepts() {
    use quotestream_store::query;
    let spec = serde_json::to_value(quotestream_store::openapi::spec()).unwrap();
    for (path, accepted) in [
        ("/v1/symbols", &[][..]),
        ("/v1/quotes/latest", query::LATEST_PARAMS),
        ("/v1/quotes/{symbol}", query::QUOTES_PARAMS),
        ("/v1/quotes/{symbol}/count", query::COUNT_PARAMS),
        ("/v1/bars/{symbol}", query::BARS_PARAMS),
        ("/v1/bars", query::MULTI_BARS_PARAMS),
    ] {
        let op = &spec["paths"][path]["get"];
        assert!(op.is_object(), "{path} missing");
        let documented: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let accepted: BTreeSet<&str> = accepted.iter().copied().collect();
        assert_eq!(documented, accepted, "{path}");
        assert!(
            op["security"].to_string().contains("bearer"),
            "{path} documents the optional token"
        );
        for status in ["200", "400", "401", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{path} documents {status}"
            );
        }
    }
    for schema in [
        "Bar",
        "BarsPage",
        "MultiBarsPage",
        "QuotesPage",
        "Latest",
        "Symbols",
        "Count",
        "ErrorBody",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    let bar = &spec["components"]["schemas"]["Bar"]["properties"];
    for field in ["t", "o", "h", "l", "c", "v", "n"] {
        assert!(bar[field].is_object(), "Bar.{field}");
    }
}
