//! History: bars fetched from a vendor (the `backfill` command), kept beside the live rollups,
//! and the checkpoints that let a killed backfill resume (migration 30).
//!
//! - `<table>_vendor_bars`: one row per (symbol, timeframe, bucket). `symbol` is the canonical
//!   instrument id (`AAPL`, `BRK.B`, `^GSPC`, `BTC-USD`), `timeframe` the vendor interval as
//!   the command names it (`1m`, `1h`, `1d`, …), `bucket` the UTC-aligned bucket that holds the
//!   bar's start (`date_bin` from [`ORIGIN`](crate::rollup::ORIGIN), like the rollups'), so a
//!   vendor bar and a live rollup bar of the same minute, hour or UTC day share a key.
//! - `<table>_backfill_checkpoints`: one row per (symbol, source, timeframe, window) fetched
//!   and stored, written in the transaction that stores the window's bars.
//!
//! The rule when both cover a bucket (docs/history.md): **the vendor's bar wins**. It is the
//! vendor's official, consolidated figure, where the live rollup only saw the quotes the worker
//! polled or was streamed; the store's `/v1/bars` serves it in place of the rollup's
//! (`store/src/query/sql.rs`). Writes are idempotent on the key: a bar stored unchanged is left
//! alone, a changed one (a vendor correction) replaces the stored one.

use jiff::Timestamp;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::config::{PostgresConfig, TableName};
use crate::error::PostgresError;
use crate::rollup::object;

/// The vendor bars table.
pub fn vendor_bars(t: &TableName) -> String {
    object(t, "vendor_bars")
}

/// The checkpoints table.
pub fn checkpoints(t: &TableName) -> String {
    object(t, "backfill_checkpoints")
}

/// The timeframes of [`vendor_bars`] that the read API serves, with the live rollup grain
/// each one competes with: `(vendor timeframe, rollup grain)`.
pub const SERVED: [(&str, &str); 3] = [("1m", "1m"), ("1h", "1h"), ("1d", "1d")];

/// Migration 30.
pub(crate) fn migration(t: &TableName) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             symbol text NOT NULL, \
             timeframe text NOT NULL, \
             bucket timestamptz NOT NULL, \
             open double precision NOT NULL, \
             high double precision NOT NULL, \
             low double precision NOT NULL, \
             close double precision NOT NULL, \
             volume bigint NOT NULL, \
             trades bigint, \
             vwap double precision, \
             source text NOT NULL, \
             fetched_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (symbol, timeframe, bucket))",
            vendor_bars(t)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             symbol text NOT NULL, \
             source text NOT NULL, \
             timeframe text NOT NULL, \
             window_start timestamptz NOT NULL, \
             window_end timestamptz NOT NULL, \
             bars integer NOT NULL, \
             done_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (symbol, source, timeframe, window_start, window_end))",
            checkpoints(t)
        ),
    ]
}

/// Upserts the bars given as parallel arrays ($1 symbol … $10 source); returns one row per bar
/// inserted or changed, `true` for inserted.
pub fn upsert(t: &TableName) -> String {
    format!(
        "INSERT INTO {vb} AS b (symbol, timeframe, bucket, open, high, low, close, volume, trades, vwap, source) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::float8[], \
         $6::float8[], $7::float8[], $8::int8[], $9::int8[], $10::float8[], $11::text[]) \
         ON CONFLICT (symbol, timeframe, bucket) DO UPDATE SET open = EXCLUDED.open, \
         high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, \
         volume = EXCLUDED.volume, trades = EXCLUDED.trades, vwap = EXCLUDED.vwap, \
         source = EXCLUDED.source, fetched_at = now() \
         WHERE (b.open, b.high, b.low, b.close, b.volume, b.trades, b.vwap, b.source) \
         IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, \
         EXCLUDED.volume, EXCLUDED.trades, EXCLUDED.vwap, EXCLUDED.source) \
         RETURNING (xmax = 0)",
        vb = vendor_bars(t)
    )
}

/// Records a window as done.
pub fn checkpoint(t: &TableName) -> String {
    format!(
        "INSERT INTO {} (symbol, source, timeframe, window_start, window_end, bars) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        checkpoints(t)
    )
}

/// The windows already done for ($1 source, $2 timeframe, $3 symbols).
pub fn done(t: &TableName) -> String {
    format!(
        "SELECT symbol, window_start, window_end FROM {} \
         WHERE source = $1 AND timeframe = $2 AND symbol = ANY($3::text[])",
        checkpoints(t)
    )
}

/// One vendor bar, keyed by (symbol, timeframe, bucket).
#[derive(Debug, Clone, PartialEq)]
pub struct VendorBar {
    pub symbol: String,
    pub timeframe: String,
    pub bucket: Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub trades: Option<i64>,
    pub vwap: Option<f64>,
}

/// A window of one symbol's history: [start, end).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub symbol: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub inserted: u64,
    /// Stored before with other values (a vendor correction): replaced.
    pub updated: u64,
    /// Stored before with the same values: left alone.
    pub unchanged: u64,
}

/// A connection for the backfill: connected, schema migrated (the store's migrations too, so
/// the rollups the store serves exist), statements prepared.
pub struct HistoryStore {
    client: Client,
    table: TableName,
    server: String,
    upsert: tokio_postgres::Statement,
    checkpoint: tokio_postgres::Statement,
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryStore")
            .field("server", &self.server)
            .field("table", &self.table)
            .finish()
    }
}

impl HistoryStore {
    pub async fn open(config: &PostgresConfig) -> Result<Self, PostgresError> {
        let mut config = config.clone();
        config.rollups = true;
        let (client, _) = crate::session::connect_migrated(&config).await?;
        let server = config.server();
        let prepare_err = PostgresError::query(&server, "preparing the history statements");
        let upsert = client
            .prepare(&upsert(&config.table))
            .await
            .map_err(&prepare_err)?;
        let checkpoint = client
            .prepare(&checkpoint(&config.table))
            .await
            .map_err(&prepare_err)?;
        Ok(Self {
            client,
            table: config.table.clone(),
            server,
            upsert,
            checkpoint,
        })
    }

    /// The windows of `symbols` already stored for (`source`, `timeframe`).
    pub async fn done_windows(
        &self,
        source: &str,
        timeframe: &str,
        symbols: &[String],
    ) -> Result<Vec<Window>, PostgresError> {
        let rows = self
            .client
            .query(&done(&self.table), &[&source, &timeframe, &symbols])
            .await
            .map_err(PostgresError::query(
                &self.server,
                "reading the checkpoints",
            ))?;
        Ok(rows
            .iter()
            .map(|r| Window {
                symbol: r.get(0),
                start: r.get(1),
                end: r.get(2),
            })
            .collect())
    }

    /// Stores a window's bars and, when `complete`, its checkpoint, in one transaction: a run
    /// killed at any point has either both or neither.
    pub async fn write(
        &mut self,
        source: &str,
        window: &Window,
        timeframe: &str,
        bars: &[VendorBar],
        complete: bool,
    ) -> Result<WriteCounts, PostgresError> {
        let col = |f: fn(&VendorBar) -> String| bars.iter().map(f).collect::<Vec<_>>();
        let symbols = col(|b| b.symbol.clone());
        let timeframes = col(|b| b.timeframe.clone());
        let buckets: Vec<Timestamp> = bars.iter().map(|b| b.bucket).collect();
        let f = |g: fn(&VendorBar) -> f64| bars.iter().map(g).collect::<Vec<f64>>();
        let (open, high, low, close) = (f(|b| b.open), f(|b| b.high), f(|b| b.low), f(|b| b.close));
        let volume: Vec<i64> = bars.iter().map(|b| b.volume).collect();
        let trades: Vec<Option<i64>> = bars.iter().map(|b| b.trades).collect();
        let vwap: Vec<Option<f64>> = bars.iter().map(|b| b.vwap).collect();
        let sources = vec![source.to_owned(); bars.len()];
        let params: [&(dyn ToSql + Sync); 11] = [
            &symbols,
            &timeframes,
            &buckets,
            &open,
            &high,
            &low,
            &close,
            &volume,
            &trades,
            &vwap,
            &sources,
        ];
        let err = PostgresError::query(&self.server, "storing a window of vendor bars");
        let tx = self.client.transaction().await.map_err(&err)?;
        let changed = match bars.is_empty() {
            true => Vec::new(),
            false => tx.query(&self.upsert, &params).await.map_err(&err)?,
        };
        if complete {
            let n = i32::try_from(bars.len()).unwrap_or(i32::MAX);
            tx.execute(
                &self.checkpoint,
                &[
                    &window.symbol,
                    &source,
                    &timeframe,
                    &window.start,
                    &window.end,
                    &n,
                ],
            )
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)?;
        let inserted = changed.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
        let updated = changed.len() as u64 - inserted;
        Ok(WriteCounts {
            inserted,
            updated,
            unchanged: bars.len() as u64 - inserted - updated,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tables_sit_beside_the_rollups_and_writes_are_keyed() {
        let t = TableName::parse("quotes.real_time").unwrap();
        assert_eq!(vendor_bars(&t), r#""quotes"."real_time_vendor_bars""#);
        assert_eq!(
            checkpoints(&t),
            r#""quotes"."real_time_backfill_checkpoints""#
        );
        let m = migration(&t).join(";");
        assert!(m.contains("PRIMARY KEY (symbol, timeframe, bucket)"));
        let up = upsert(&t);
        assert!(up.contains("ON CONFLICT (symbol, timeframe, bucket) DO UPDATE"));
        assert!(
            up.contains("IS DISTINCT FROM"),
            "unchanged bars are not rewritten"
        );
    }
}
