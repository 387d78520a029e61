//! The read API's SQL: pure functions of the validated table name, so the exact text is
//! unit-tested and prepared once per connection. Bars come from the rollups
//! (`quotestream_db::rollup`): 1Min, 1Hour and 1Day as stored, 5Min and 15Min regrouped from the
//! 1-minute rollup with the same exact merge rule the rollups use (open of the earliest, close
//! of the latest, max, min, sum), never from raw quotes. Volume is the change of the
//! cumulative day volume since the previous bar of the same UTC day, as the `_ohlcv_*` views
//! compute it, but over the requested range only (the views' window spans a symbol's whole
//! history). Bars a vendor supplied (`backfill`, docs/history.md) are served in place of the
//! rollup's bar of the same bucket: the vendor's bar wins.

use quotestream_db::TableName;
use quotestream_db::history;
use quotestream_db::rollup::{self, ORIGIN};

use super::params::{Sort, Timeframe};

/// Raw quotes of one symbol in [$2, $3], `sort`ed by time, at most $4 rows. Paging moves $2
/// (ascending) or $3 (descending) past the previous page's last row.
pub fn quotes(t: &TableName, sort: Sort) -> String {
    format!(
        "SELECT \"timestamp\", price, volume, bid, ask, open, high, low, source FROM {} \
         WHERE symbol = $1 AND \"timestamp\" >= $2 AND \"timestamp\" <= $3 \
         ORDER BY \"timestamp\" {} LIMIT $4",
        t.quoted(),
        sort.sql()
    )
}

/// How many raw quotes of $1 lie in [$2, $3].
pub fn count(t: &TableName) -> String {
    format!(
        "SELECT count(*) FROM {} WHERE symbol = $1 AND \"timestamp\" >= $2 AND \"timestamp\" <= $3",
        t.quoted()
    )
}

/// Every symbol with its first and last quote time and how many quotes it has, from the daily
/// rollup (exact, current within the merger's lag).
pub fn symbols(t: &TableName) -> String {
    format!(
        "SELECT symbol, min(open_time), max(close_time), sum(quotes)::bigint FROM {} \
         GROUP BY symbol ORDER BY symbol",
        rollup::bars(t, "1d")
    )
}

/// The latest quote of every symbol (`all`) or of the symbols in $1.
pub fn latest(t: &TableName, all: bool) -> String {
    format!(
        "SELECT symbol, \"timestamp\", price, volume, source FROM {}{} ORDER BY symbol",
        rollup::latest(t),
        if all { "" } else { " WHERE symbol = ANY($1)" }
    )
}

/// Which of the symbols in $1 have no quote stored.
pub fn unknown(t: &TableName) -> String {
    format!(
        "SELECT s FROM unnest($1::text[]) AS s WHERE NOT EXISTS \
         (SELECT 1 FROM {} AS l WHERE l.symbol = s) ORDER BY s",
        rollup::latest(t)
    )
}

/// Bars of timeframe `tf` for the symbols in $1 (`single`: exactly one, which lets the
/// planner walk the rollup's (symbol, bucket) key in order), ordered by symbol then time
/// (`sort`), at most $8.
///
/// Parameters: $1 text[] symbols; $2, $3 the rollup rows read, `bucket >= $2 AND bucket < $3`
/// ($2 the UTC day start of the range, so that the first bar's volume has its predecessor;
/// $3 the end of the last bar); $4, $5 the bar times returned, inclusive; $6, $7 the
/// previous page's last (symbol, time), `''` and any time on the first page.
pub fn bars(t: &TableName, tf: Timeframe, single: bool, sort: Sort) -> String {
    let source = rollup::bars(t, tf.source_grain());
    let symbol = if single {
        "symbol = ($1::text[])[1]"
    } else {
        "symbol = ANY($1::text[])"
    };
    // Rows of the rollup the page needs: past the previous page (ascending: from the day of
    // its last bar, for the volume; descending: before its last bar).
    let (after_source, after_row) = match sort {
        Sort::Asc => (
            format!("bucket >= date_bin('1 day', $7::timestamptz, {ORIGIN})"),
            "t > $7",
        ),
        Sort::Desc => ("bucket < $7::timestamptz".to_owned(), "t < $7"),
    };
    let filter = format!(
        "{symbol} AND bucket >= $2 AND bucket < $3 AND symbol >= $6::text \
         AND (symbol > $6::text OR {after_source})"
    );
    let grouped = if tf.stored() {
        format!(
            "SELECT symbol, bucket AS t, open AS o, high AS h, low AS l, close AS c, \
             day_volume AS dv, quotes AS n FROM {source} WHERE {filter}"
        )
    } else {
        format!(
            "SELECT symbol, date_bin('{width}', bucket, {ORIGIN}) AS t, \
             (array_agg(open ORDER BY open_time))[1] AS o, max(high) AS h, min(low) AS l, \
             (array_agg(close ORDER BY close_time DESC))[1] AS c, \
             (array_agg(day_volume ORDER BY close_time DESC))[1] AS dv, \
             sum(quotes)::bigint AS n FROM {source} WHERE {filter} GROUP BY 1, 2",
            width = tf.interval()
        )
    };
    let volume = if tf == Timeframe::Day1 {
        "dv".to_owned()
    } else {
        format!(
            "GREATEST(dv - COALESCE(lag(dv) OVER (PARTITION BY symbol, \
             date_bin('1 day', t, {ORIGIN}) ORDER BY t), 0), 0)"
        )
    };
    // Vendor bars (the `backfill` command's, `quotestream_db::history`) of the same grain,
    // regrouped like the rollup's; a bucket a vendor bar covers is served from it alone.
    let vendor_bars = history::vendor_bars(t);
    let vendor = if tf.stored() {
        format!(
            "SELECT symbol, bucket AS t, open AS o, high AS h, low AS l, close AS c, volume AS v, \
             0::bigint AS n FROM {vendor_bars} WHERE timeframe = '{grain}' AND {filter}",
            grain = tf.source_grain()
        )
    } else {
        format!(
            "SELECT symbol, date_bin('{width}', bucket, {ORIGIN}) AS t, \
             (array_agg(open ORDER BY bucket))[1] AS o, max(high) AS h, min(low) AS l, \
             (array_agg(close ORDER BY bucket DESC))[1] AS c, sum(volume)::bigint AS v, \
             0::bigint AS n FROM {vendor_bars} WHERE timeframe = '{grain}' AND {filter} \
             GROUP BY 1, 2",
            width = tf.interval(),
            grain = tf.source_grain()
        )
    };
    format!(
        "WITH g AS ({grouped}), v AS (SELECT symbol, t, o, h, l, c, {volume} AS v, n FROM g), \
         vb AS ({vendor}), \
         u AS (SELECT symbol, t, o, h, l, c, v, n FROM v WHERE NOT EXISTS \
         (SELECT 1 FROM vb WHERE vb.symbol = v.symbol AND vb.t = v.t) \
         UNION ALL SELECT symbol, t, o, h, l, c, v, n FROM vb) \
         SELECT symbol, t, o, h, l, c, v, n FROM u \
         WHERE t >= $4 AND t <= $5 AND (symbol > $6::text OR {after_row}) \
         ORDER BY symbol, t {} LIMIT $8",
        sort.sql()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn table() -> TableName {
        TableName::parse("quotes.real_time").unwrap()
    }

    #[test]
    fn stored_timeframes_read_their_rollup_and_the_others_regroup_the_minute_one() {
        let one_day = bars(&table(), Timeframe::Day1, true, Sort::Asc);
        assert!(
            one_day.contains(r#"FROM "quotes"."real_time_bars_1d" WHERE symbol = ($1::text[])[1]"#)
        );
        assert!(
            one_day.contains("dv AS v"),
            "daily volume is the day's: {one_day}"
        );
        let hour = bars(&table(), Timeframe::Hour1, false, Sort::Desc);
        assert!(
            hour.contains(r#"FROM "quotes"."real_time_bars_1h" WHERE symbol = ANY($1::text[])"#)
        );
        assert!(hour.ends_with("ORDER BY symbol, t DESC LIMIT $8"));
        for tf in [Timeframe::Min5, Timeframe::Min15] {
            let sql = bars(&table(), tf, true, Sort::Asc);
            assert!(
                sql.contains(r#"FROM "quotes"."real_time_bars_1m""#),
                "{sql}"
            );
            assert!(sql.contains(&format!("date_bin('{}', bucket", tf.interval())));
            assert!(
                !sql.contains(r#""quotes"."real_time" "#),
                "never the raw table: {sql}"
            );
        }
    }

    #[test]
    fn quotes_page_by_time() {
        assert_eq!(
            quotes(&table(), Sort::Desc),
            r#"SELECT "timestamp", price, volume, bid, ask, open, high, low, source FROM "quotes"."real_time" WHERE symbol = $1 AND "timestamp" >= $2 AND "timestamp" <= $3 ORDER BY "timestamp" DESC LIMIT $4"#
        );
    }
}
