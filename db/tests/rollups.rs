//! The rollups kept at ingest (plain PostgreSQL) against a from-scratch computation over the
//! raw rows, on a real PostgreSQL: random batches over a few symbols and hours, with replayed
//! batches, duplicates inside a batch, late and out-of-order quotes, written alone or several
//! in one transaction (`write_group`, the store's group commit). After every run, each bar
//! table, the latest quotes and the daily summary equal what the raw table gives, and each
//! batch was answered the number of its rows that were new.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use quotestream_db::{PostgresConfig, Rollups, Row, TableName, connect_and_migrate, rollup};
use quotestream_testkit::PostgresServer;

const SYMBOLS: [&str; 3] = ["AAPL", "MSFT", "NVDA"];
/// 2026-01-20T22:30:00Z: the 3-hour window crosses a UTC midnight.
const T0: i64 = 1_768_948_200_000;

#[derive(Debug, Clone)]
struct Q {
    symbol: usize,
    ms: i64,
    price: f64,
    volume: i64,
}

fn quote() -> impl Strategy<Value = Q> {
    (
        0..SYMBOLS.len(),
        // 3 hours, in 1-second steps plus a few milliseconds: buckets of every grain get
        // several quotes, some timestamps repeat.
        0i64..10_800,
        0i64..3,
        1u32..20_000,
        0i64..1_000_000,
    )
        .prop_map(|(symbol, s, ms, cents, volume)| Q {
            symbol,
            ms: T0 + s * 1000 + ms,
            price: f64::from(cents) / 100.0,
            volume,
        })
}

/// Batches, then which earlier batches are sent again, then how many batches each write
/// takes (1: `write`; more: one `write_group`).
type Scenario = (Vec<Vec<Q>>, Vec<usize>, Vec<usize>);

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(prop::collection::vec(quote(), 1..120), 1..12),
        prop::collection::vec(0usize..12, 0..5),
        prop::collection::vec(1usize..5, 1..17),
    )
}

fn rows(batch: &[Q]) -> Vec<Row<'static>> {
    batch
        .iter()
        .map(|q| Row {
            symbol: SYMBOLS[q.symbol],
            timestamp: Timestamp::from_millisecond(q.ms).unwrap(),
            price: q.price,
            volume: q.volume,
            bid: None,
            ask: None,
            open: None,
            high: None,
            low: None,
            source: "synthetic",
        })
        .collect()
}

/// A database `name` on `pg` for a sink with the rollups on: its table, the sink's settings
/// and a runtime to drive them.
fn rollup_database(
    pg: &PostgresServer,
    name: &str,
) -> (TableName, PostgresConfig, tokio::runtime::Runtime) {
    let dsn = pg.create_database(name).unwrap();
    let table = TableName::parse("quotes.real_time").unwrap();
    let mut config = PostgresConfig::new(Some(dsn), "quotes.real_time").unwrap();
    config.rollups = true;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (table, config, rt)
}

#[test]
fn rollups_equal_a_from_scratch_computation() {
    let pg = PostgresServer::start().unwrap();
    let (table, config, rt) = rollup_database(&pg, "rollups");
    let session = rt.block_on(connect_and_migrate(&config)).unwrap();
    assert_eq!(session.migrations().rollups, Some(Rollups::Tables));
    assert!(session.migrations().applied.contains(&10));

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let session = std::cell::RefCell::new(session);
    let result = runner.run(&scenario(), |(batches, replays, groups)| {
        let mut session = session.borrow_mut();
        rt.block_on(async {
            let tables: Vec<String> = rollup::GRAINS
                .iter()
                .map(|(g, _, _)| rollup::bars(&table, g))
                .chain([
                    table.quoted(),
                    rollup::latest(&table),
                    rollup::batches(&table),
                ])
                .collect();
            session
                .client()
                .batch_execute(&format!("TRUNCATE {}", tables.join(", ")))
                .await
                .unwrap();
            let mut order: Vec<usize> = (0..batches.len()).collect();
            order.extend(replays.iter().filter(|r| **r < batches.len()));
            let mut inserted = 0;
            // What each batch must be answered: its rows not stored before it.
            let mut stored = std::collections::HashSet::new();
            let mut sizes = groups.iter().cycle();
            let mut next = 0;
            let mut k = 0;
            while next < order.len() {
                let size = (*sizes.next().unwrap()).min(order.len() - next);
                let group = &order[next..next + size];
                next += size;
                let group_rows: Vec<Vec<Row<'static>>> =
                    group.iter().map(|&i| rows(&batches[i])).collect();
                let slices: Vec<&[Row<'static>]> = group_rows.iter().map(Vec::as_slice).collect();
                let answers = session.write_group(&slices).await.unwrap();
                prop_assert_eq!(answers.len(), group.len());
                for (&i, answer) in group.iter().zip(answers) {
                    let new = batches[i]
                        .iter()
                        .filter(|q| stored.insert((q.symbol, q.ms)))
                        .count() as u64;
                    let answer = answer.unwrap();
                    prop_assert_eq!(answer, new, "batch {} in a group of {}", i, group.len());
                    inserted += answer;
                }
                // Merges interleaved with the writes, as the store's merger runs.
                if k % 2 == 1 {
                    session.merge_rollups().await.unwrap();
                }
                k += 1;
            }
            while session.merge_rollups().await.unwrap() > 0 {}
            let client = session.client();
            let raw: i64 = client
                .query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
                .await
                .unwrap()
                .get(0);
            prop_assert_eq!(inserted, raw as u64);
            for (grain, _, _) in rollup::GRAINS {
                let kept = format!(
                    "SELECT {} FROM {} ORDER BY 1, 2",
                    rollup::BAR_COLUMNS,
                    rollup::bars(&table, grain)
                );
                let scratch = format!(
                    "{} ORDER BY 1, 2",
                    rollup::from_scratch(&table, grain).unwrap()
                );
                let a = as_text(client, &kept).await;
                let b = as_text(client, &scratch).await;
                prop_assert_eq!(a, b, "grain {}", grain);
            }
            let latest = as_text(
                client,
                &format!(
                    "SELECT symbol, \"timestamp\", price, volume FROM {} ORDER BY 1",
                    rollup::latest(&table)
                ),
            )
            .await;
            let scratch = as_text(
                client,
                &format!(
                    "SELECT DISTINCT ON (symbol) symbol, \"timestamp\", price, volume FROM {} \
                     ORDER BY symbol, \"timestamp\" DESC",
                    table.quoted()
                ),
            )
            .await;
            prop_assert_eq!(latest, scratch);
            // The daily summary's volume is the last cumulative volume of the day, and the
            // minute bars' volumes of a day add up to it.
            let daily = as_text(
                client,
                &format!(
                    "SELECT symbol, day, volume, range FROM {} ORDER BY 1, 2",
                    rollup::daily(&table)
                ),
            )
            .await;
            let scratch = as_text(
                client,
                &format!(
                    "SELECT DISTINCT ON (symbol, d) symbol, d, volume, \
                     (max(price) OVER w - min(price) OVER w) FROM (SELECT *, \
                     date_bin('1 day', \"timestamp\", {}) AS d FROM {}) r \
                     WINDOW w AS (PARTITION BY symbol, d) ORDER BY symbol, d, \"timestamp\" DESC",
                    rollup::ORIGIN,
                    table.quoted()
                ),
            )
            .await;
            prop_assert_eq!(daily, scratch);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every row of `sql` as text (floats in PostgreSQL's shortest exact form), sorted.
async fn as_text(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut rows: Vec<String> = client
        .query(&format!("SELECT t::text FROM ({sql}) t"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

/// A store upgraded from the row queue (migrations 10/11) to the partials queue (12) and on to
/// one queued row per write (13) keeps what the old store had queued: migration 12 folds it
/// into partials, 13 folds those into a row, and the merged bars equal the from-scratch ones.
#[test]
fn rows_queued_by_an_older_store_are_merged_after_the_upgrade() {
    let pg = PostgresServer::start().unwrap();
    let (table, config, rt) = rollup_database(&pg, "upgrade");
    rt.block_on(async {
        let mut session = connect_and_migrate(&config).await.unwrap();
        assert!(session.migrations().applied.contains(&12));
        assert!(session.migrations().applied.contains(&13));
        // Back to what a store before migration 12 left: quotes stored, their rows queued.
        let batch: Vec<Q> = (0..600)
            .map(|i| Q {
                symbol: i % SYMBOLS.len(),
                ms: T0 + i as i64 * 7_001,
                price: 100.0 + (i % 13) as f64,
                volume: i as i64 * 10,
            })
            .collect();
        let client = session.client();
        client
            .batch_execute(&format!(
                "DROP TABLE {batches}; \
                 DELETE FROM quotes.quotestream_migrations WHERE version IN (12, 13); \
                 CREATE TABLE {queue} (symbol text NOT NULL, \"timestamp\" timestamptz NOT NULL, \
                 price double precision NOT NULL, volume bigint NOT NULL, source text NOT NULL)",
                batches = rollup::batches(&table),
                queue = rollup::queue(&table),
            ))
            .await
            .unwrap();
        let mut old =
            PostgresConfig::new(Some(config.dsn().to_owned()), "quotes.real_time").unwrap();
        old.rollups = false;
        let mut writer = connect_and_migrate(&old).await.unwrap();
        assert_eq!(writer.write(&rows(&batch)).await.unwrap(), 600);
        session
            .client()
            .batch_execute(&format!(
                "INSERT INTO {} SELECT symbol, \"timestamp\", price, volume, source FROM {}",
                rollup::queue(&table),
                table.quoted()
            ))
            .await
            .unwrap();

        let mut upgraded = connect_and_migrate(&config).await.unwrap();
        assert_eq!(upgraded.migrations().applied, [12, 13]);
        let mut merged = 0;
        loop {
            let n = upgraded.merge_rollups().await.unwrap();
            if n == 0 {
                break;
            }
            merged += n;
        }
        assert_eq!(merged, 600, "every queued quote is merged once");
        let client = upgraded.client();
        for (grain, _, _) in rollup::GRAINS {
            let kept = format!(
                "SELECT {} FROM {} ORDER BY 1, 2",
                rollup::BAR_COLUMNS,
                rollup::bars(&table, grain)
            );
            let scratch = format!(
                "{} ORDER BY 1, 2",
                rollup::from_scratch(&table, grain).unwrap()
            );
            assert_eq!(
                as_text(client, &kept).await,
                as_text(client, &scratch).await,
                "grain {grain}"
            );
        }
    });
}
