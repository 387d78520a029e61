//! The book under each vendor's rules: every behaviour the vendors' docs promise
//! (docs/streaming.md), one module per vendor.

mod alpaca {
    use proptest::prelude::*;

    use super::super::*;
    use crate::sources::alpaca::BOOK as ALPACA;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn trade(price: f64, size: u64, time: &str) -> Trade {
        Trade {
            price,
            size: size as f64,
            time: at(time),
        }
    }

    /// A quote update as the decoder reads it: Alpaca sends 0 for an empty side.
    fn nbbo(bid: f64, ask: f64, time: Timestamp) -> Top {
        let side = |v: f64| (v != 0.0).then_some(v);
        Top {
            bid: side(bid),
            ask: side(ask),
            time,
        }
    }

    fn quote_of(outcome: Outcome) -> RawQuote {
        match outcome {
            Outcome::Quote(q) => q,
            other => panic!("expected a quote, got {other:?}"),
        }
    }

    #[test]
    fn trades_set_the_price_and_sum_the_day_volume() {
        let mut book = Book::new(ALPACA);
        let q = quote_of(book.trade("AAPL", trade(189.5, 100, "2026-01-20T14:30:00.000000001Z")));
        assert_eq!(
            (q.price, q.volume, q.bid, q.open),
            (189.5, 100.0, None, Some(189.5))
        );
        let q = quote_of(book.trade("AAPL", trade(190.0, 50, "2026-01-20T14:30:01Z")));
        assert_eq!(
            (q.volume, q.high, q.low, q.open),
            (150.0, Some(190.0), Some(189.5), Some(189.5))
        );
        assert_eq!(q.source, "alpaca");
        assert_eq!(q.timestamp, at("2026-01-20T14:30:01Z"));
    }

    #[test]
    fn a_quote_update_needs_a_real_trade_first() {
        let mut book = Book::new(ALPACA);
        assert_eq!(
            book.top("AAPL", nbbo(189.4, 189.6, at("2026-01-20T14:30:00Z"))),
            Outcome::Held
        );
        let q = quote_of(book.trade("AAPL", trade(189.5, 10, "2026-01-20T14:30:01Z")));
        assert_eq!(
            (q.bid, q.ask),
            (Some(189.4), Some(189.6)),
            "the trade carries the book"
        );
        let q = quote_of(book.top("AAPL", nbbo(189.45, 0.0, at("2026-01-20T14:30:02Z"))));
        assert_eq!(
            (q.price, q.bid, q.ask),
            (189.5, Some(189.45), None),
            "0 is an empty side"
        );
        assert_eq!(q.timestamp, at("2026-01-20T14:30:02Z"));
    }

    #[test]
    fn the_day_rolls_over_at_midnight_in_new_york() {
        let mut book = Book::new(ALPACA);
        // 23:59 New York time (EST, UTC-5) on the 20th, then 00:01 on the 21st.
        quote_of(book.trade("AAPL", trade(100.0, 500, "2026-01-21T04:59:00Z")));
        let q = quote_of(book.trade("AAPL", trade(101.0, 7, "2026-01-21T05:01:00Z")));
        assert_eq!((q.volume, q.open), (7.0, Some(101.0)));
        // Summer time (EDT, UTC-4): 03:30 UTC is still the previous day.
        let mut book = Book::new(ALPACA);
        quote_of(book.trade("MSFT", trade(400.0, 1, "2026-07-01T03:30:00Z")));
        let q = quote_of(book.trade("MSFT", trade(400.0, 1, "2026-07-01T03:59:59Z")));
        assert_eq!(q.volume, 2.0);
        let q = quote_of(book.trade("MSFT", trade(400.0, 1, "2026-07-01T04:00:00Z")));
        assert_eq!(q.volume, 1.0);
    }

    #[test]
    fn a_daily_bar_replaces_volume_and_range() {
        let mut book = Book::new(ALPACA);
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:00Z")));
        for stamp in ["2026-01-20T05:00:00Z", "2026-01-20T00:00:00Z"] {
            let bar = DailyBar {
                open: 187.0,
                high: 191.0,
                low: 186.5,
                volume: 42_000_000.0,
                time: at(stamp),
            };
            assert_eq!(book.daily_bar("AAPL", bar), Outcome::Held, "{stamp}");
        }
        let q = quote_of(book.trade("AAPL", trade(190.5, 100, "2026-01-20T15:01:00Z")));
        assert_eq!(
            (q.volume, q.open, q.high, q.low),
            (42_000_100.0, Some(187.0), Some(191.0), Some(186.5))
        );
        let old = DailyBar {
            open: 1.0,
            high: 1.0,
            low: 1.0,
            volume: 1.0,
            time: at("2026-01-19T05:00:00Z"),
        };
        assert!(matches!(
            book.daily_bar("AAPL", old),
            Outcome::Dropped("out_of_order", _)
        ));
        let bad = DailyBar {
            open: 1.0,
            high: 0.5,
            low: 1.0,
            volume: 1.0,
            time: at("2026-01-20T05:00:00Z"),
        };
        assert!(matches!(
            book.daily_bar("AAPL", bad),
            Outcome::Dropped("bad_bar", _)
        ));
    }

    #[test]
    fn late_reports_count_in_the_volume_but_do_not_move_the_price() {
        let mut book = Book::new(ALPACA);
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:01Z")));
        assert!(matches!(
            book.trade("AAPL", trade(150.0, 30, "2026-01-20T15:00:00Z")),
            Outcome::Dropped("out_of_order", _)
        ));
        let q = quote_of(book.trade("AAPL", trade(190.1, 1, "2026-01-20T15:00:02Z")));
        assert_eq!((q.volume, q.low), (131.0, Some(190.0)));
    }

    #[test]
    fn bad_prices_pass_to_validation_and_change_nothing() {
        let mut book = Book::new(ALPACA);
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:01Z")));
        let q = quote_of(book.trade("AAPL", trade(-1.0, 100, "2026-01-20T15:00:02Z")));
        assert_eq!(q.price, -1.0);
        let q = quote_of(book.top("AAPL", nbbo(-3.0, 190.2, at("2026-01-20T15:00:03Z"))));
        assert_eq!((q.price, q.volume, q.bid), (190.0, 100.0, Some(-3.0)));
        let q = quote_of(book.trade("AAPL", trade(190.1, 1, "2026-01-20T15:00:04Z")));
        assert_eq!(
            (q.bid, q.ask, q.low),
            (None, Some(190.2), Some(190.0)),
            "the bad bid is not kept"
        );
    }

    #[test]
    fn a_new_connection_forgets_the_book_but_not_the_day() {
        let mut book = Book::new(ALPACA);
        book.top("AAPL", nbbo(189.9, 190.1, at("2026-01-20T15:00:00Z")));
        quote_of(book.trade("AAPL", trade(190.0, 100, "2026-01-20T15:00:01Z")));
        book.reset_connection();
        let q = quote_of(book.trade("AAPL", trade(190.2, 5, "2026-01-20T15:05:00Z")));
        assert_eq!(
            (q.volume, q.bid, q.ask, q.open),
            (105.0, None, None, Some(190.0))
        );
        // The new connection's first quote update may be older than the old connection's last.
        let q = quote_of(book.top("AAPL", nbbo(190.0, 190.3, at("2026-01-20T14:59:00Z"))));
        assert_eq!(q.bid, Some(190.0));
    }

    proptest! {
        /// Within one day and in order, the volume is the sum of the sizes and the range holds
        /// every price.
        #[test]
        fn volume_sums_sizes_and_the_range_holds_every_price(
            trades in proptest::collection::vec((1u32..100_000, 0u64..10_000, 0i64..3_600_000_000), 1..50)
        ) {
            let mut book = Book::new(ALPACA);
            let start = at("2026-01-20T15:00:00Z");
            let mut times: Vec<i64> = trades.iter().map(|t| t.2).collect();
            times.sort_unstable();
            let mut sum = 0;
            for ((cents, size, _), micros) in trades.iter().zip(times) {
                let price = f64::from(*cents) / 100.0;
                sum += size;
                let time = start.saturating_add(SignedDuration::from_micros(micros)).unwrap();
                let q = quote_of(book.trade("AAPL", Trade { price, size: *size as f64, time }));
                prop_assert_eq!(q.volume, sum as f64);
                prop_assert!(q.low.unwrap() <= price && price <= q.high.unwrap());
            }
        }
    }
}

mod polygon {
    use proptest::prelude::*;

    use super::super::*;
    use crate::sources::polygon::BOOK as POLYGON;

    /// 2026-01-20 14:30:00 UTC (09:30 Eastern).
    const OPEN_MS: i64 = 1_768_919_400_000;
    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 24 * HOUR_MS;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    /// A book update's sides, sent at a time given apart.
    #[derive(Clone, Copy)]
    struct Sides {
        bid: Option<f64>,
        ask: Option<f64>,
    }

    fn top(book: &mut Book, ticker: &str, sides: Sides, time: Timestamp) -> Outcome {
        let Sides { bid, ask } = sides;
        book.top(ticker, Top { bid, ask, time })
    }

    fn trade(book: &mut Book, ticker: &str, price: f64, size: f64, time: Timestamp) -> Outcome {
        book.trade(ticker, Trade { price, size, time })
    }

    fn quote(outcome: Outcome) -> RawQuote {
        match outcome {
            Outcome::Quote(q) => q,
            other => panic!("expected a quote, got {other:?}"),
        }
    }

    fn minute(end_ms: i64, day_volume: f64) -> Aggregate {
        Aggregate {
            day_volume,
            day_open: Some(187.5),
            high: Some(190.0),
            low: Some(188.0),
            end: at(end_ms),
        }
    }

    #[test]
    fn a_trade_carries_the_book_and_the_day() {
        let mut book = Book::new(POLYGON);
        let sides = Sides {
            bid: Some(189.4),
            ask: Some(189.45),
        };
        assert_eq!(
            top(&mut book, "AAPL", sides, at(OPEN_MS)),
            Outcome::Held,
            "no trade yet"
        );
        assert_eq!(
            book.aggregate("AAPL", minute(OPEN_MS + 60_000, 1_000_000.0)),
            Outcome::Held
        );
        let q = quote(trade(
            &mut book,
            "AAPL",
            189.42,
            100.0,
            at(OPEN_MS + 61_000),
        ));
        assert_eq!(q.price, 189.42);
        assert_eq!((q.bid, q.ask), (Some(189.4), Some(189.45)));
        assert_eq!(q.volume, 1_000_100.0, "av plus the trade after the window");
        assert_eq!(q.open, Some(187.5));
        assert_eq!((q.high, q.low), (Some(190.0), Some(188.0)));
        assert_eq!(q.source, "polygon");
        // A book update now carries the last trade price.
        let q = quote(top(
            &mut book,
            "AAPL",
            Sides {
                bid: Some(189.41),
                ask: None,
            },
            at(OPEN_MS + 62_000),
        ));
        assert_eq!((q.price, q.bid, q.ask), (189.42, Some(189.41), None));
        assert_eq!(q.timestamp, at(OPEN_MS + 62_000));
    }

    #[test]
    fn the_next_aggregate_replaces_the_running_volume_without_double_counting() {
        let mut book = Book::new(POLYGON);
        book.aggregate("AAPL", minute(OPEN_MS + 60_000, 1_000.0));
        // Inside the next window: counted on top of av...
        quote(trade(&mut book, "AAPL", 10.0, 50.0, at(OPEN_MS + 70_000)));
        // ...until that window's aggregate arrives with the exact figure.
        book.aggregate("AAPL", minute(OPEN_MS + 120_000, 1_060.0));
        // A trade from inside the aggregated window arriving late is already in av.
        let q = quote(trade(&mut book, "AAPL", 10.0, 10.0, at(OPEN_MS + 110_000)));
        assert_eq!(q.volume, 1_060.0);
        // A stale aggregate does not move the volume back.
        book.aggregate("AAPL", minute(OPEN_MS + 60_000, 1_000.0));
        let q = quote(trade(&mut book, "AAPL", 10.0, 5.0, at(OPEN_MS + 121_000)));
        assert_eq!(q.volume, 1_065.0);
    }

    #[test]
    fn a_new_trading_day_starts_from_scratch_but_keeps_the_last_price() {
        let mut book = Book::new(POLYGON);
        book.aggregate("AAPL", minute(OPEN_MS + 60_000, 5_000_000.0));
        top(
            &mut book,
            "AAPL",
            Sides {
                bid: Some(189.0),
                ask: Some(189.1),
            },
            at(OPEN_MS),
        );
        quote(trade(&mut book, "AAPL", 189.0, 100.0, at(OPEN_MS + 61_000)));
        // 04:00 Eastern the next morning.
        let premarket = OPEN_MS + DAY_MS - 5 * HOUR_MS - 30 * 60_000;
        let q = quote(top(
            &mut book,
            "AAPL",
            Sides {
                bid: Some(188.0),
                ask: Some(188.2),
            },
            at(premarket),
        ));
        assert_eq!(q.price, 189.0, "the previous close");
        assert_eq!(q.volume, 0.0);
        assert_eq!((q.open, q.high, q.low), (None, None, None));
        assert_eq!(q.bid, Some(188.0));
    }

    #[test]
    fn stale_events_are_out_of_order_and_change_nothing() {
        let mut book = Book::new(POLYGON);
        quote(trade(&mut book, "AAPL", 189.0, 100.0, at(OPEN_MS + 1_000)));
        let late = trade(&mut book, "AAPL", 150.0, 100.0, at(OPEN_MS));
        assert!(
            matches!(late, Outcome::Dropped("out_of_order", _)),
            "{late:?}"
        );
        let sides = Sides {
            bid: Some(188.0),
            ask: Some(189.0),
        };
        quote(top(&mut book, "AAPL", sides, at(OPEN_MS + 2_000)));
        let late = top(&mut book, "AAPL", sides, at(OPEN_MS + 1_500));
        assert!(
            matches!(late, Outcome::Dropped("out_of_order", _)),
            "{late:?}"
        );
        let q = quote(trade(&mut book, "AAPL", 189.5, 1.0, at(OPEN_MS + 3_000)));
        assert_eq!((q.low, q.high), (Some(189.0), Some(189.5)));
    }

    #[test]
    fn insane_prices_reach_validation_once_and_are_not_kept() {
        let mut book = Book::new(POLYGON);
        let bad = quote(trade(&mut book, "AAPL", -1.0, 100.0, at(OPEN_MS)));
        assert_eq!(bad.price, -1.0);
        let crossed = Sides {
            bid: Some(-5.0),
            ask: Some(10.0),
        };
        assert!(matches!(
            top(&mut book, "AAPL", crossed, at(OPEN_MS)),
            Outcome::Dropped("bad_price", _)
        ));
        quote(trade(&mut book, "AAPL", 10.0, 100.0, at(OPEN_MS + 1)));
        let q = quote(top(&mut book, "AAPL", crossed, at(OPEN_MS + 2)));
        assert_eq!(q.bid, Some(-5.0), "delivered so validation counts it");
        let q = quote(trade(&mut book, "AAPL", 10.0, 100.0, at(OPEN_MS + 3)));
        assert_eq!((q.bid, q.ask, q.low), (None, None, Some(10.0)), "not kept");
        assert_eq!(q.volume, 200.0, "the bad trade's size is not counted");
        let agg = Aggregate {
            day_volume: -1.0,
            ..minute(OPEN_MS, 0.0)
        };
        assert!(matches!(
            book.aggregate("AAPL", agg),
            Outcome::Dropped("bad_aggregate", _)
        ));
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = Book::new(POLYGON);
        for i in 0..POLYGON.max_tickers + 10 {
            let q = quote(trade(&mut book, &format!("T{i}"), 1.0, 1.0, at(OPEN_MS)));
            assert_eq!(q.volume, 1.0);
        }
        assert_eq!(book.tickers.len(), POLYGON.max_tickers);
    }

    proptest! {
        /// Whatever order trades arrive in, the quotes delivered have non-decreasing times,
        /// low ≤ price ≤ high, and a volume that never shrinks within a day.
        #[test]
        fn delivered_quotes_are_consistent(
            events in proptest::collection::vec((0i64..600_000, 1u32..100_000, 0u32..1000), 1..200)
        ) {
            let mut book = Book::new(POLYGON);
            let mut last: Option<RawQuote> = None;
            for (offset, cents, size) in events {
                let price = f64::from(cents) / 100.0;
                if let Outcome::Quote(q) = trade(&mut book, "AAPL", price, f64::from(size), at(OPEN_MS + offset)) {
                    prop_assert!(q.low.unwrap() <= q.price && q.price <= q.high.unwrap());
                    if let Some(prev) = &last {
                        prop_assert!(q.timestamp >= prev.timestamp);
                        prop_assert!(q.volume >= prev.volume);
                    }
                    last = Some(q);
                }
            }
        }
    }
}

/// What both vendors' books do alike.
mod both {
    use super::super::*;
    use crate::sources::{alpaca, polygon};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn trade(price: f64, time: &str) -> Trade {
        Trade {
            price,
            size: 10.0,
            time: at(time),
        }
    }

    #[test]
    fn an_event_of_an_older_day_than_the_ticker_is_in_is_out_of_order() {
        for rules in [alpaca::BOOK, polygon::BOOK] {
            let mut book = Book::new(rules);
            // A book update just after midnight New York, then a trade from just before it
            // (newer than any trade seen, older than the day the ticker is in).
            let top = Top {
                bid: Some(10.0),
                ask: Some(10.1),
                time: at("2026-01-21T05:00:01Z"),
            };
            assert_eq!(book.top("AAPL", top), Outcome::Held, "{}", rules.source);
            let late = book.trade("AAPL", trade(10.0, "2026-01-21T04:59:59Z"));
            assert!(
                matches!(late, Outcome::Dropped("out_of_order", _)),
                "{}: {late:?}",
                rules.source
            );
            let Outcome::Quote(q) = book.trade("AAPL", trade(10.0, "2026-01-21T05:00:02Z")) else {
                panic!("{}: the day's trade is a quote", rules.source)
            };
            assert_eq!(
                q.volume, 10.0,
                "{}: yesterday's trade is not in today's volume",
                rules.source
            );
        }
    }

    #[test]
    fn an_unusable_trade_price_reaches_validation_even_late_and_changes_nothing() {
        for rules in [alpaca::BOOK, polygon::BOOK] {
            let mut book = Book::new(rules);
            let Outcome::Quote(_) = book.trade("AAPL", trade(10.0, "2026-01-20T15:00:01Z")) else {
                panic!("{}", rules.source)
            };
            let Outcome::Quote(bad) = book.trade("AAPL", trade(-1.0, "2026-01-20T15:00:00Z"))
            else {
                panic!(
                    "{}: a bad price is passed on for validation to count",
                    rules.source
                )
            };
            assert_eq!((bad.price, bad.volume), (-1.0, 10.0), "{}", rules.source);
            // Nor does one of a new day start that day.
            let Outcome::Quote(bad) = book.trade("AAPL", trade(0.0, "2026-01-21T15:00:00Z")) else {
                panic!("{}", rules.source)
            };
            assert_eq!(bad.volume, 10.0, "{}", rules.source);
            let Outcome::Quote(q) = book.trade("AAPL", trade(11.0, "2026-01-20T15:00:02Z")) else {
                panic!("{}: still the same day", rules.source)
            };
            assert_eq!(
                (q.volume, q.high, q.low),
                (20.0, Some(11.0), Some(10.0)),
                "{}",
                rules.source
            );
        }
    }

    #[test]
    fn the_debug_print_does_not_list_the_tickers() {
        let mut book = Book::new(polygon::BOOK);
        book.trade("AAPL", trade(10.0, "2026-01-20T15:00:01Z"));
        let shown = format!("{book:?}");
        assert!(
            shown.contains("tickers: 1") && !shown.contains("AAPL"),
            "{shown}"
        );
    }
}
