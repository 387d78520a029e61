//! The read API (/v1) of the real `quotestream-store` process against a real PostgreSQL 15:
//! bars of every timeframe equal a from-scratch computation over the quotes ingested; raw
//! quotes, latest quotes, symbols and counts; every bad parameter a 400 naming it; unknown
//! symbols 404; ranges too wide 400 naming the window; the optional bearer token; and a
//! property test that pages through N random rows with any page size and gets exactly the N,
//! in order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::BTreeMap;

use jiff::Timestamp;
use proptest::prelude::*;
use quotestream_testkit::{PostgresServer, wait_until};
use serde_json::Value;
use support::{Store, WAIT, batch, client, database, post, quote};

/// 2026-01-20T23:10:00Z: the seeded data crosses a UTC midnight.
const T0: i64 = 1_768_950_600_000;
const ORIGIN_MS: i64 = 946_684_800_000;

/// One seeded quote.
#[derive(Debug, Clone, Copy)]
struct Q {
    ms: i64,
    price: f64,
    volume: u64,
}

/// Quotes of `symbol` from a small deterministic generator: irregular gaps (some minutes
/// empty), prices up and down, a cumulative volume that resets at the UTC day.
fn series(seed: u64, n: usize) -> Vec<Q> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let mut ms = T0;
    let mut volume = 0u64;
    let mut price = 100.0;
    let mut out = Vec::new();
    for _ in 0..n {
        ms += 500 + (next() % 50_000) as i64;
        let day = (ms - ORIGIN_MS).div_euclid(86_400_000);
        if out
            .last()
            .is_some_and(|q: &Q| (q.ms - ORIGIN_MS).div_euclid(86_400_000) != day)
        {
            volume = 0;
        }
        volume += next() % 1000;
        price = (price + (next() % 200) as f64 / 100.0 - 1.0_f64).max(1.0);
        out.push(Q {
            ms,
            price: (price * 100.0).round() / 100.0,
            volume,
        });
    }
    out
}

/// Bars of width `w` ms computed from scratch by the rule of docs/store.md.
fn reference_bars(quotes: &[Q], w: i64, daily: bool) -> Vec<(i64, f64, f64, f64, f64, i64, i64)> {
    let mut buckets: BTreeMap<i64, Vec<Q>> = BTreeMap::new();
    for q in quotes {
        let b = ORIGIN_MS + (q.ms - ORIGIN_MS).div_euclid(w) * w;
        buckets.entry(b).or_default().push(*q);
    }
    let mut out = Vec::new();
    let mut prev: Option<(i64, i64)> = None; // (day, day volume)
    for (b, mut qs) in buckets {
        qs.sort_by_key(|q| q.ms);
        let first = qs[0];
        let last = qs[qs.len() - 1];
        let dv = last.volume as i64;
        let day = (b - ORIGIN_MS).div_euclid(86_400_000);
        let v = if daily {
            dv
        } else {
            match prev {
                Some((d, pdv)) if d == day => (dv - pdv).max(0),
                _ => dv,
            }
        };
        prev = Some((day, dv));
        let h = qs.iter().map(|q| q.price).fold(f64::MIN, f64::max);
        let l = qs.iter().map(|q| q.price).fold(f64::MAX, f64::min);
        out.push((b, first.price, h, l, last.price, v, qs.len() as i64));
    }
    out
}

fn ms_of(v: &Value) -> i64 {
    v.as_str()
        .unwrap()
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond()
}

fn iso(ms: i64) -> String {
    Timestamp::from_millisecond(ms).unwrap().to_string()
}

async fn get(http: &reqwest::Client, store: &Store, path: &str) -> (u16, Value) {
    get_with(http, store, path, None).await
}

async fn get_with(
    http: &reqwest::Client,
    store: &Store,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = http.get(format!("{}{path}", store.url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Ingests `quotes` of `symbol` and waits until the rollups merged everything inserted.
async fn ingest(http: &reqwest::Client, store: &Store, symbol: &str, quotes: &[Q]) {
    for chunk in quotes.chunks(1000) {
        let body = batch(
            chunk
                .iter()
                .map(|q| quote(symbol, q.ms, q.price, q.volume))
                .collect(),
        );
        let (code, _, a) = post(http, store, body, &[]).await;
        assert_eq!(code, 200, "{a}");
    }
    let inserted = store.metric("quotestore_ingest_rows_total{result=\"inserted\"}");
    assert!(
        wait_until(WAIT, || store.metric("quotestore_rollup_merged_rows_total")
            >= inserted),
        "the rollups did not catch up with {inserted} inserted rows"
    );
}

/// Every page of `path` (which has no page_token), followed to the end.
async fn all_pages(
    http: &reqwest::Client,
    store: &Store,
    path: &str,
    key: &str,
) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &token {
            Some(t) => format!("{path}&page_token={t}"),
            None => path.to_owned(),
        };
        let (code, page) = get(http, store, &url).await;
        assert_eq!(code, 200, "{url}: {page}");
        assert!(
            page.as_object().unwrap().contains_key("next_page_token"),
            "next_page_token is always present: {page}"
        );
        out.extend(page[key].as_array().unwrap().iter().cloned());
        pages += 1;
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return (out, pages),
        }
        assert!(pages < 10_000, "paging does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_of_every_timeframe_equal_a_computation_from_the_raw_quotes() {
    let pg = PostgresServer::start().unwrap();
    let store = Store::start(&database(&pg, "bars"), &[]);
    let http = client();
    let series_of = [("AAPL", series(1, 700)), ("MSFT", series(2, 500))];
    for (s, qs) in &series_of {
        ingest(&http, &store, s, qs).await;
    }
    let start = iso(T0 - 86_400_000);
    let end = iso(T0 + 86_400_000);
    for (tf, w, daily) in [
        ("1Min", 60_000, false),
        ("5Min", 300_000, false),
        ("15Min", 900_000, false),
        ("1Hour", 3_600_000, false),
        ("1Day", 86_400_000, true),
    ] {
        let mut multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (symbol, qs) in &series_of {
            let expected = reference_bars(qs, w, daily);
            // A small page size: several pages, the volume of a page's first bar still right.
            let (bars, pages) = all_pages(
                &http,
                &store,
                &format!("/v1/bars/{symbol}?timeframe={tf}&start={start}&end={end}&limit=7"),
                "bars",
            )
            .await;
            assert!(pages > 1 || expected.len() <= 7, "{tf}: paged");
            let got: Vec<_> = bars
                .iter()
                .map(|b| {
                    (
                        ms_of(&b["t"]),
                        b["o"].as_f64().unwrap(),
                        b["h"].as_f64().unwrap(),
                        b["l"].as_f64().unwrap(),
                        b["c"].as_f64().unwrap(),
                        b["v"].as_i64().unwrap(),
                        b["n"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{symbol} {tf}");
            // Descending: the same bars, reversed.
            let (desc, _) = all_pages(
                &http,
                &store,
                &format!(
                    "/v1/bars/{symbol}?timeframe={tf}&start={start}&end={end}&limit=5&sort=desc"
                ),
                "bars",
            )
            .await;
            let mut reversed = bars.clone();
            reversed.reverse();
            assert_eq!(desc, reversed, "{symbol} {tf} desc");
            multi.insert((*symbol).to_owned(), bars);
        }
        // Several symbols in one request, paged over all of them.
        let mut merged: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "/v1/bars?symbols=MSFT,AAPL&timeframe={tf}&start={start}&end={end}&limit=9"
            );
            if let Some(t) = &token {
                url.push_str(&format!("&page_token={t}"));
            }
            let (code, page) = get(&http, &store, &url).await;
            assert_eq!(code, 200, "{page}");
            assert_eq!(page["timeframe"], tf);
            for (s, bars) in page["bars"].as_object().unwrap() {
                merged
                    .entry(s.clone())
                    .or_default()
                    .extend(bars.as_array().unwrap().iter().cloned());
            }
            match page["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(merged, multi, "{tf}: multi-symbol bars");
    }
    // A range inside one day: the first bar's volume still counts from its predecessor.
    let expected = reference_bars(&series_of[0].1, 60_000, false);
    let (mid_t, ..) = expected[expected.len() / 2];
    let (code, page) = get(
        &http,
        &store,
        &format!(
            "/v1/bars/AAPL?timeframe=1Min&start={}&end={end}&limit=1",
            iso(mid_t)
        ),
    )
    .await;
    assert_eq!(code, 200);
    let first = &page["bars"][0];
    assert_eq!(ms_of(&first["t"]), mid_t);
    assert_eq!(first["v"].as_i64(), Some(expected[expected.len() / 2].5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_latest_symbols_and_counts() {
    let pg = PostgresServer::start().unwrap();
    let store = Store::start(&database(&pg, "quotes"), &[]);
    let http = client();
    let aapl = series(3, 300);
    let nvda = series(4, 40);
    ingest(&http, &store, "AAPL", &aapl).await;
    ingest(&http, &store, "NVDA", &nvda).await;

    let (code, s) = get(&http, &store, "/v1/symbols").await;
    assert_eq!(code, 200, "{s}");
    let list = s["symbols"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["symbol"], "AAPL");
    assert_eq!(ms_of(&list[0]["first"]), aapl[0].ms);
    assert_eq!(ms_of(&list[0]["last"]), aapl[aapl.len() - 1].ms);
    assert_eq!(list[0]["count"], 300);
    assert_eq!(list[1]["count"], 40);

    let (code, l) = get(&http, &store, "/v1/quotes/latest?symbols=NVDA,AAPL").await;
    assert_eq!(code, 200, "{l}");
    let last = aapl[aapl.len() - 1];
    assert_eq!(ms_of(&l["quotes"]["AAPL"]["t"]), last.ms);
    assert_eq!(l["quotes"]["AAPL"]["p"].as_f64(), Some(last.price));
    assert_eq!(l["quotes"]["AAPL"]["v"].as_u64(), Some(last.volume));
    assert_eq!(l["quotes"]["NVDA"]["src"], "synthetic");
    let (_, every) = get(&http, &store, "/v1/quotes/latest").await;
    assert_eq!(every["quotes"].as_object().unwrap().len(), 2);

    // Raw quotes in a range, both ends inclusive, both directions.
    let (a, b) = (aapl[10].ms, aapl[59].ms);
    let range = format!("start={}&end={}", iso(a), iso(b));
    let (got, pages) = all_pages(
        &http,
        &store,
        &format!("/v1/quotes/AAPL?{range}&limit=20"),
        "quotes",
    )
    .await;
    assert_eq!(pages, 3);
    let times: Vec<i64> = got.iter().map(|q| ms_of(&q["t"])).collect();
    assert_eq!(times, aapl[10..60].iter().map(|q| q.ms).collect::<Vec<_>>());
    assert_eq!(got[0]["p"].as_f64(), Some(aapl[10].price));
    assert_eq!(got[0]["v"].as_u64(), Some(aapl[10].volume));
    let (desc, _) = all_pages(
        &http,
        &store,
        &format!("/v1/quotes/AAPL?{range}&limit=7&sort=desc"),
        "quotes",
    )
    .await;
    let mut rev = got.clone();
    rev.reverse();
    assert_eq!(desc, rev);

    // Pages are by key: a quote ingested between two pages, before the cursor, neither shifts
    // the next page nor repeats a row of the first.
    let (code, first) = get(&http, &store, &format!("/v1/quotes/AAPL?{range}&limit=20")).await;
    assert_eq!(code, 200);
    let mut token = first["next_page_token"].as_str().map(str::to_owned);
    ingest(
        &http,
        &store,
        "AAPL",
        &[Q {
            ms: aapl[10].ms + 1,
            price: 1.0,
            volume: 1,
        }],
    )
    .await;
    let mut rest = Vec::new();
    while let Some(t) = token {
        let (code, page) = get(
            &http,
            &store,
            &format!("/v1/quotes/AAPL?{range}&limit=20&page_token={t}"),
        )
        .await;
        assert_eq!(code, 200, "{page}");
        rest.extend(
            page["quotes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| ms_of(&q["t"])),
        );
        token = page["next_page_token"].as_str().map(str::to_owned);
    }
    assert_eq!(rest, aapl[30..60].iter().map(|q| q.ms).collect::<Vec<_>>());

    let (code, c) = get(&http, &store, &format!("/v1/quotes/AAPL/count?{range}")).await;
    assert_eq!(code, 200, "{c}");
    assert_eq!(c["count"], 51, "the quote ingested meanwhile is counted");
    assert_eq!(ms_of(&c["start"]), a);
    let (_, c) = get(&http, &store, "/v1/quotes/NVDA/count").await;
    assert_eq!(c["count"], 40);
    assert_eq!(c["start"], Value::Null);
    // A known symbol with nothing in the range: 200 and empty, not 404.
    let (code, empty) = get(
        &http,
        &store,
        "/v1/quotes/AAPL?start=2020-01-01&end=2020-01-02",
    )
    .await;
    assert_eq!(code, 200, "{empty}");
    assert_eq!(empty["quotes"].as_array().unwrap().len(), 0);
    assert_eq!(empty["next_page_token"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400s_naming_them_and_unknown_symbols_404() {
    let pg = PostgresServer::start().unwrap();
    let store = Store::start(&database(&pg, "errors"), &[]);
    let http = client();
    ingest(&http, &store, "AAPL", &series(5, 20)).await;
    let token = {
        let (_, page) = get(
            &http,
            &store,
            "/v1/quotes/AAPL?start=2026-01-20&end=2026-01-22&limit=1",
        )
        .await;
        page["next_page_token"].as_str().unwrap().to_owned()
    };
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            "/v1/bars/AAPL?timeframe=2Min".into(),
            400,
            "timeframe",
            "1Min, 5Min, 15Min, 1Hour, 1Day",
        ),
        (
            "/v1/bars/AAPL?timeframe=1Min&limit=0".into(),
            400,
            "limit",
            "1 to 10000",
        ),
        (
            "/v1/bars/AAPL?limit=10001".into(),
            400,
            "limit",
            "1 to 10000",
        ),
        ("/v1/quotes/AAPL?sort=up".into(), 400, "sort", "asc or desc"),
        (
            "/v1/quotes/AAPL?start=yesterday".into(),
            400,
            "start",
            "RFC 3339",
        ),
        (
            "/v1/quotes/AAPL?start=2026-01-21&end=2026-01-20".into(),
            400,
            "end",
            "at or after start",
        ),
        (
            "/v1/quotes/AAPL?timeframe=1Min".into(),
            400,
            "timeframe",
            "start, end, limit, sort, page_token",
        ),
        (
            "/v1/quotes/AAPL?limit=5&limit=6".into(),
            400,
            "limit",
            "once",
        ),
        ("/v1/quotes/aapl".into(), 400, "symbol", "write AAPL"),
        (
            "/v1/bars?timeframe=1Day".into(),
            400,
            "symbols",
            "comma-separated",
        ),
        (
            "/v1/bars?symbols=AAPL,ms-ft".into(),
            400,
            "symbols",
            "upper-case",
        ),
        (
            "/v1/quotes/latest?symbols=AAPL,MSFT".into(),
            404,
            "symbols",
            "GET /v1/symbols",
        ),
        ("/v1/quotes/ZZZZ".into(), 404, "symbol", "GET /v1/symbols"),
        (
            "/v1/bars/ZZZZ?timeframe=1Day".into(),
            404,
            "symbol",
            "GET /v1/symbols",
        ),
        (
            "/v1/quotes/ZZZZ/count".into(),
            404,
            "symbol",
            "GET /v1/symbols",
        ),
        (
            "/v1/bars?symbols=AAPL,ZZZZ".into(),
            404,
            "symbols",
            "GET /v1/symbols",
        ),
        (
            "/v1/bars/AAPL?timeframe=1Min&start=2025-01-01&end=2026-01-01".into(),
            400,
            "start",
            "31 days",
        ),
        (
            "/v1/bars/AAPL?timeframe=5Min&start=2025-01-01&end=2026-01-01".into(),
            400,
            "start",
            "93 days",
        ),
        (
            "/v1/quotes/AAPL?start=2025-01-01&end=2026-01-01".into(),
            400,
            "start",
            "31 days",
        ),
        (
            format!("/v1/quotes/AAPL?start=2026-01-20&end=2026-01-22&sort=desc&page_token={token}"),
            400,
            "page_token",
            "this same request",
        ),
        (
            "/v1/quotes/AAPL?page_token=garbage".into(),
            400,
            "page_token",
            "next_page_token",
        ),
        ("/v1/symbols?limit=5".into(), 400, "limit", "left out"),
    ];
    for (path, status, parameter, allowed) in cases {
        let (code, body) = get(&http, &store, &path).await;
        assert_eq!(code, status, "{path}: {body}");
        let e = &body["error"];
        assert_eq!(e["status"], status, "{path}: {body}");
        assert_eq!(e["parameter"], parameter, "{path}: {body}");
        assert!(e["value"].is_string(), "{path}: names the value: {body}");
        assert!(
            e["allowed"].as_str().is_some_and(|a| a.contains(allowed))
                || e["message"].as_str().is_some_and(|m| m.contains(allowed)),
            "{path}: says {allowed:?}: {body}"
        );
    }
    // Timeframes that may span more: 1Day over 2 years is fine.
    let (code, body) = get(
        &http,
        &store,
        "/v1/bars/AAPL?timeframe=1Day&start=2024-06-01&end=2026-06-01",
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_guards_the_read_api_only() {
    let pg = PostgresServer::start().unwrap();
    let secret = "s3cr3t-token-for-the-test";
    let store = Store::start(&database(&pg, "auth"), &["--api-token", secret]);
    let http = client();
    ingest(&http, &store, "AAPL", &series(6, 5)).await;
    for path in [
        "/v1/symbols",
        "/v1/quotes/latest",
        "/v1/quotes/AAPL?start=2026-01-20&end=2026-01-22",
        "/v1/quotes/AAPL/count",
        "/v1/bars/AAPL?timeframe=1Day",
        "/v1/bars?symbols=AAPL&timeframe=1Day",
    ] {
        let (code, body) = get(&http, &store, path).await;
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (code, _) = get_with(&http, &store, path, Some("wrong-token-of-enough-length")).await;
        assert_eq!(code, 401, "{path}");
        let (code, body) = get_with(&http, &store, path, Some(secret)).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    for open in ["/health", "/openapi.json"] {
        let (code, _) = get(&http, &store, open).await;
        assert_eq!(code, 200, "{open} needs no token");
    }
    // A token too short to be one stops the start with the reason.
    let mut weak = Store::spawn(&database(&pg, "weak"), &["--api-token", "short"]);
    let status = support::wait_exit(&mut weak.child, WAIT);
    assert!(!status.success());
    assert!(
        weak.log_text().contains("at least 16"),
        "{}",
        weak.log_text()
    );
}

/// One store for every case of the property: each case writes its own symbol.
struct Shared {
    _pg: PostgresServer,
    store: Store,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

fn case_symbol(i: usize) -> String {
    let mut s = String::from("P");
    let mut n = i;
    for _ in 0..4 {
        s.push(char::from(b'A' + (n % 26) as u8));
        n /= 26;
    }
    s
}

#[test]
fn paging_returns_exactly_the_rows_in_order_whatever_the_page_size() {
    let pg = PostgresServer::start().unwrap();
    let store = Store::start(&database(&pg, "paging"), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shared = Shared {
        _pg: pg,
        store,
        runtime,
        http: client(),
    };
    let case = std::sync::atomic::AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        offsets in proptest::collection::btree_set(0i64..3 * 86_400_000, 0..400),
        page in 1i64..60,
        desc in any::<bool>(),
    )| {
        let symbol = case_symbol(case.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let rows: Vec<Q> = offsets.iter().enumerate().map(|(i, o)| Q { ms: T0 + o, price: 1.0 + i as f64, volume: i as u64 }).collect();
        shared.runtime.block_on(async {
            // A symbol needs a stored quote to exist; an empty case stores one outside the range.
            let mut stored = rows.clone();
            stored.push(Q { ms: T0 - 86_400_000, price: 1.0, volume: 0 });
            ingest(&shared.http, &shared.store, &symbol, &stored).await;
            let sort = if desc { "desc" } else { "asc" };
            let path = format!(
                "/v1/quotes/{symbol}?start={}&end={}&limit={page}&sort={sort}",
                iso(T0),
                iso(T0 + 3 * 86_400_000)
            );
            let (got, pages) = all_pages(&shared.http, &shared.store, &path, "quotes").await;
            let mut expected: Vec<i64> = rows.iter().map(|q| q.ms).collect();
            if desc {
                expected.reverse();
            }
            let times: Vec<i64> = got.iter().map(|q| ms_of(&q["t"])).collect();
            assert_eq!(times, expected, "page size {page}, {sort}");
            let full_pages = rows.len().div_ceil(page as usize).max(1);
            assert_eq!(pages, full_pages, "no empty trailing page, no truncation");
            // Bars page the same way: any page size gives the one-page answer.
            // From 23:00, the start of the 15-minute bar T0 (23:10) falls in.
            let bars = format!(
                "/v1/bars/{symbol}?timeframe=15Min&start={}&end={}&sort={sort}",
                iso(T0 - 600_000),
                iso(T0 + 3 * 86_400_000)
            );
            let (one, _) = all_pages(&shared.http, &shared.store, &format!("{bars}&limit=10000"), "bars").await;
            let (paged, _) = all_pages(&shared.http, &shared.store, &format!("{bars}&limit={page}"), "bars").await;
            assert_eq!(paged, one, "bars, page size {page}");
            let quotes: i64 = one.iter().map(|b| b["n"].as_i64().unwrap()).sum();
            assert_eq!(quotes, rows.len() as i64, "the bars count every quote once");
        });
    });
}
