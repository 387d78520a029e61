//! The Grafana prices dashboard (charts/quotestream/files/dashboards/quotestream-prices.json)
//! without Grafana (it cannot run here): every panel's SQL and every template variable's query
//! is taken from the JSON, Grafana's PostgreSQL macros are expanded the way Grafana expands
//! them with fixed times, and the result runs on a real PostgreSQL holding data ingested by the
//! real store, as a login in the read-only role `quotestream_reader` that migration 20 made.
//! Each panel type must get the columns it draws: candlestick time/open/high/low/close/volume,
//! timeseries a time column and numbers, stat a number, table rows. The role can read
//! everything the dashboard reads and write nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::path::Path;

use jiff::Timestamp;
use quotestream_testkit::{PostgresServer, wait_until};
use serde_json::Value;
use support::{Store, WAIT, batch, client, database, post, quote};
use tokio_postgres::types::Type;

/// 2026-01-20T14:30:00Z.
const T0: i64 = 1_768_919_400_000;
const FROM: &str = "2026-01-20T12:00:00Z";
const TO: &str = "2026-01-20T18:00:00Z";
const SYMBOL: &str = "AAPL";

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/quotestream/files/dashboards/quotestream-prices.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The arguments of the macro call whose `(` is at the start of `s`, and the length of the
/// call (Grafana splits arguments at top-level commas).
fn macro_args(s: &str) -> (Vec<String>, usize) {
    assert!(s.starts_with('('), "a macro without arguments: {s}");
    let mut depth = 0;
    let mut args = vec![String::new()];
    for (i, c) in s.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let args = args
                        .into_iter()
                        .map(|a| a.trim().to_owned())
                        .filter(|a| !a.is_empty())
                        .collect();
                    return (args, i + 1);
                }
            }
            ',' if depth == 1 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = args.last_mut() {
            last.push(c);
        }
    }
    panic!("unbalanced macro call: {s}");
}

fn interval_seconds(arg: &str) -> i64 {
    let a = arg.trim_matches('\'');
    let (n, unit) = a.split_at(a.find(|c: char| !c.is_ascii_digit()).unwrap());
    let n: i64 = n.parse().unwrap();
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => panic!("interval unit {other} in {arg}"),
    }
}

/// Grafana's PostgreSQL macros (plain PostgreSQL, not `timescaledb: true`) and the template
/// variables, expanded for the range [FROM, TO].
fn expand(sql: &str) -> String {
    let from_epoch = FROM.parse::<Timestamp>().unwrap().as_second();
    let to_epoch = TO.parse::<Timestamp>().unwrap().as_second();
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find("$__") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let (args, call_len) = macro_args(&after[name_len..]);
        let expansion = match (name, args.as_slice()) {
            ("timeFilter", [col]) => format!("{col} BETWEEN '{FROM}' AND '{TO}'"),
            ("timeFrom", []) => format!("'{FROM}'"),
            ("timeTo", []) => format!("'{TO}'"),
            ("unixEpochFilter", [col]) => format!("{col} >= {from_epoch} AND {col} <= {to_epoch}"),
            ("timeGroup", [col, iv]) => {
                let s = interval_seconds(iv);
                format!("floor(extract(epoch from {col})/{s})*{s}")
            }
            ("timeGroupAlias", [col, iv]) => {
                let s = interval_seconds(iv);
                format!("floor(extract(epoch from {col})/{s})*{s} AS \"time\"")
            }
            _ => panic!("a Grafana macro this test does not expand: $__{name}{args:?}"),
        };
        out.push_str(&expansion);
        rest = &after[name_len + call_len..];
    }
    out.push_str(rest);
    let out = out.replace("${symbol}", SYMBOL).replace("$symbol", SYMBOL);
    assert!(!out.contains('$'), "an unexpanded variable in {out}");
    out
}

/// Every panel with its targets, rows' nested panels included.
fn panels(d: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten().cloned());
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn numeric(t: &Type) -> bool {
    [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
    ]
    .contains(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_as_the_read_only_role_and_returns_what_its_panel_draws() {
    let pg = PostgresServer::start().unwrap();
    let dsn = database(&pg, "grafana");
    let store = Store::start(&dsn, &[]);
    let http = client();
    // Three symbols, a quote every 20 s for two hours from T0.
    for chunk in (0..360i64).collect::<Vec<_>>().chunks(120) {
        let quotes = chunk
            .iter()
            .flat_map(|i| {
                ["AAPL", "MSFT", "NVDA"]
                    .into_iter()
                    .enumerate()
                    .map(move |(k, s)| {
                        quote(
                            s,
                            T0 + i * 20_000,
                            100.0 * (k + 1) as f64 + (*i % 17) as f64,
                            1000 * *i as u64,
                        )
                    })
            })
            .collect();
        let (code, _, a) = post(&http, &store, batch(quotes), &[]).await;
        assert_eq!(code, 200, "{a}");
    }
    let inserted = store.metric("quotestore_ingest_rows_total{result=\"inserted\"}");
    assert!(wait_until(WAIT, || store
        .metric("quotestore_rollup_merged_rows_total")
        >= inserted));

    // A Grafana login as a DBA would make it: in the role migration 20 created.
    pg.psql(
        "grafana",
        "CREATE ROLE grafana LOGIN IN ROLE quotestream_reader",
    )
    .unwrap();
    let (reader, connection) = tokio_postgres::connect(
        &format!("postgres://grafana@127.0.0.1:{}/grafana", pg.port()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);

    let d = dashboard();
    let mut checked = 0;
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let sql = expand(v["query"].as_str().unwrap());
        let rows = reader
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("variable {}: {e}\n{sql}", v["name"]));
        let values: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(values, ["AAPL", "MSFT", "NVDA"], "variable {}", v["name"]);
        checked += 1;
    }
    for p in panels(&d) {
        let kind = p["type"].as_str().unwrap();
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().unwrap() {
            let sql = expand(t["rawSql"].as_str().unwrap());
            let statement = reader
                .prepare(&sql)
                .await
                .unwrap_or_else(|e| panic!("{title}: {e:?}\n{sql}"));
            let rows = reader
                .query(&statement, &[])
                .await
                .unwrap_or_else(|e| panic!("{title}: {e:?}\n{sql}"));
            assert!(
                !rows.is_empty(),
                "{title}: no rows on the seeded data\n{sql}"
            );
            let cols: Vec<(&str, &Type)> = statement
                .columns()
                .iter()
                .map(|c| (c.name(), c.type_()))
                .collect();
            let col = |name: &str| cols.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
            match kind {
                "candlestick" => {
                    assert_eq!(col("time"), Some(&Type::TIMESTAMPTZ), "{title}: {cols:?}");
                    for f in ["open", "high", "low", "close", "volume"] {
                        assert!(col(f).is_some_and(numeric), "{title}: {f} in {cols:?}");
                    }
                    let times: Vec<Timestamp> = rows.iter().map(|r| r.get("time")).collect();
                    assert!(
                        times.windows(2).all(|w| w[0] < w[1]),
                        "{title}: time ascending"
                    );
                    for r in &rows {
                        let (o, h, l, c): (f64, f64, f64, f64) =
                            (r.get("open"), r.get("high"), r.get("low"), r.get("close"));
                        assert!(l <= o.min(c) && h >= o.max(c), "{title}: a bar's high/low");
                    }
                }
                "timeseries" => {
                    let (first, t0) = cols[0];
                    assert!(
                        first == "time" && (*t0 == Type::TIMESTAMPTZ || numeric(t0)),
                        "{title}: the first column must be time: {cols:?}"
                    );
                    assert!(
                        cols[1..].iter().any(|(_, t)| numeric(t)),
                        "{title}: a value column: {cols:?}"
                    );
                }
                "stat" => {
                    assert!(
                        cols.iter().any(|(_, t)| numeric(t)),
                        "{title}: a number: {cols:?}"
                    );
                    assert_eq!(rows.len(), 1, "{title}: one value");
                }
                "table" => {
                    assert!(cols.len() >= 2, "{title}: {cols:?}");
                    assert_eq!(rows.len(), 3, "{title}: a row per symbol");
                }
                other => panic!("{title}: a panel type this test does not know: {other}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} queries found");
    // The dashboard covers candles, latest quotes and ingest/freshness.
    let kinds: Vec<String> = panels(&d)
        .iter()
        .map(|p| p["type"].as_str().unwrap().to_owned())
        .collect();
    for k in ["candlestick", "table", "stat", "timeseries"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} panel");
    }

    // Read-only: the role writes nothing.
    for write in [
        "INSERT INTO quotes.real_time (symbol, \"timestamp\", price, volume, source) VALUES ('X', now(), 1, 1, 'manual')",
        "DELETE FROM quotes.real_time_latest",
        "CREATE TABLE quotes.evil (x int)",
    ] {
        let e = reader.batch_execute(write).await.unwrap_err();
        assert!(
            format!("{e:?}").contains("permission denied"),
            "{write}: {e:?}"
        );
    }
    // Partitions the store creates later are readable too (default privileges).
    pg.psql("grafana", "CREATE TABLE quotes.later (x int)")
        .unwrap();
    reader
        .query("SELECT * FROM quotes.later", &[])
        .await
        .unwrap();
}

#[test]
fn grafana_macros_expand_like_grafana() {
    assert_eq!(
        expand(
            "SELECT $__timeGroupAlias(bucket, '5m'), 1 FROM t WHERE $__timeFilter(bucket) AND s = '$symbol'"
        ),
        format!(
            "SELECT floor(extract(epoch from bucket)/300)*300 AS \"time\", 1 FROM t WHERE bucket BETWEEN '{FROM}' AND '{TO}' AND s = 'AAPL'"
        )
    );
    assert_eq!(
        expand("date_bin('1 day', $__timeFrom()::timestamptz, x)"),
        format!("date_bin('1 day', '{FROM}'::timestamptz, x)")
    );
}
