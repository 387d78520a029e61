//! Time partitions on a real PostgreSQL: a table the worker's sink created and filled becomes
//! partitioned when the store migrates it (rows kept), monthly partitions take their rows from
//! the default partition, and retention drops whole expired partitions and expired rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use jiff::{Timestamp, ToSpan};
use quotestream_db::{PostgresConfig, Row, TableName, connect_and_migrate, partitions};
use quotestream_testkit::PostgresServer;

fn row(ms: i64) -> Row<'static> {
    Row {
        symbol: "AAPL",
        timestamp: Timestamp::from_millisecond(ms).unwrap(),
        price: 1.0,
        volume: 1,
        bid: None,
        ask: None,
        open: None,
        high: None,
        low: None,
        source: "synthetic",
    }
}

#[tokio::test]
async fn partitions_are_made_filled_and_expired() {
    let pg = PostgresServer::start().unwrap();
    let dsn = pg.create_database("parts").unwrap();
    let table = TableName::parse("quotes.real_time").unwrap();
    let now = Timestamp::now();
    let day = 86_400_000;
    let recent = now.as_millisecond() - day;
    let old = now.as_millisecond() - 1100 * day; // ~3 years

    // The worker's sink first: a plain table.
    let worker = PostgresConfig::new(Some(dsn.clone()), "quotes.real_time").unwrap();
    let mut w = connect_and_migrate(&worker).await.unwrap();
    assert_eq!(w.migrations().applied, [1]);
    w.write(&[row(recent), row(old)]).await.unwrap();
    let relkind = |pg: &PostgresServer| {
        pg.psql(
            "parts",
            "SELECT relkind FROM pg_class WHERE oid = 'quotes.real_time'::regclass",
        )
        .unwrap()
    };
    assert_eq!(relkind(&pg), "r");

    // Then the store: partitioned, rows kept (in the default partition).
    let mut store = worker.clone();
    store.rollups = true;
    let mut s = connect_and_migrate(&store).await.unwrap();
    assert_eq!(s.migrations().applied, [3, 10, 12, 13, 30, 20]);
    assert_eq!(relkind(&pg), "p");
    let count = |pg: &PostgresServer, t: &str| -> u64 {
        pg.psql("parts", &format!("SELECT count(*) FROM quotes.{t}"))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(count(&pg, "real_time"), 2);
    assert_eq!(count(&pg, "real_time_default"), 2);
    // The worker keeps writing into it, idempotently.
    let mut w = connect_and_migrate(&worker).await.unwrap();
    assert_eq!(w.write(&[row(recent), row(recent + 1)]).await.unwrap(), 1);

    // Maintenance as of 30 months ago makes that month's partitions; a row lands there.
    let past = now.checked_sub((30 * 30 * 24).hours()).unwrap();
    let m = partitions::maintain(s.client(), &table, past)
        .await
        .unwrap();
    assert_eq!(m.created.len(), 2, "{m:?}");
    let ancient = past.as_millisecond();
    s.write(&[row(ancient)]).await.unwrap();
    let ancient_partition = &m.created[0];
    assert_eq!(count(&pg, ancient_partition), 1);

    // Maintenance now: this and next month made (the recent rows move out of the default
    // partition), the 30-month-old partitions dropped, the 3-year-old row deleted.
    let m = partitions::maintain(s.client(), &table, now).await.unwrap();
    let this_month = partitions::partition_name(
        &table,
        now.to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .first_of_month(),
    );
    assert!(m.created.contains(&this_month), "{m:?}");
    assert_eq!(m.dropped.len(), 2, "{m:?}");
    assert_eq!(m.expired_default_rows, 1, "{m:?}");
    let recent_month = partitions::partition_name(
        &table,
        Timestamp::from_millisecond(recent)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .first_of_month(),
    );
    if recent_month == this_month {
        assert_eq!(count(&pg, &this_month), 2);
        assert_eq!(count(&pg, "real_time_default"), 0);
    }
    assert_eq!(count(&pg, "real_time"), 2);
    // Idempotent.
    let again = partitions::maintain(s.client(), &table, now).await.unwrap();
    assert_eq!(again, partitions::Maintenance::default());
}
