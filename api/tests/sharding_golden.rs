//! Golden vectors: the hash functions and the balanced split must give the same answers on
//! every platform and in every process as the reference prototype (testdata/sharding-vectors.json,
//! computed independently in Python).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use quotestream_api::sharding::{balanced_split, hash};
use quotestream_api::{Ticker, TickerSet};
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("../testdata/sharding-vectors.json");
    serde_json::from_str(text).expect("valid JSON")
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().expect("hex string");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// The 501 S&P 500 symbols the prototype used: it skipped the two share classes.
fn sp500_plain() -> TickerSet {
    let text = include_str!("../testdata/sp500.txt");
    TickerSet::from_symbols(text.lines().filter(|s| !s.contains('.'))).expect("valid list")
}

#[test]
fn hash_functions_match_the_reference() {
    let v = vectors();
    assert_eq!(hash::key(""), hex(&v["xxh64('',0)"]));
    for (ticker, want) in v["key"].as_object().unwrap() {
        assert_eq!(hash::key(ticker), hex(want), "key({ticker})");
    }
    for (input, want) in v["mix64"].as_object().unwrap() {
        assert_eq!(
            hash::mix64(input.parse().unwrap()),
            hex(want),
            "mix64({input})"
        );
    }
    let aapl = hash::key("AAPL");
    for (shard, want) in v["score(AAPL,s)"].as_object().unwrap() {
        assert_eq!(
            hash::score(aapl, shard.parse().unwrap()),
            hex(want),
            "score(AAPL,{shard})"
        );
    }
}

#[test]
fn balanced_split_matches_the_reference_assignment() {
    let v = vectors();
    let tickers = sp500_plain();
    assert_eq!(tickers.len() as u64, v["T"].as_u64().unwrap());
    for (n, expected) in v["bal_split"].as_object().unwrap() {
        let n: usize = n.parse().unwrap();
        let got = balanced_split(&tickers, NonZeroUsize::new(n).unwrap());
        let owners: BTreeMap<&str, usize> = got
            .owners()
            .into_iter()
            .map(|(t, s)| (t.as_str(), s))
            .collect();
        for (ticker, shard) in expected.as_object().unwrap() {
            assert_eq!(
                owners.get(ticker.as_str()).copied(),
                Some(shard.as_u64().unwrap() as usize),
                "N={n}: shard of {ticker}"
            );
        }
    }
    for (n, sizes) in v["bal_split_sizes"].as_object().unwrap() {
        let got = balanced_split(&tickers, NonZeroUsize::new(n.parse().unwrap()).unwrap());
        let want: Vec<usize> = sizes
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got.sizes(), want, "sizes at N={n}");
    }
    let aapl = Ticker::parse("AAPL").unwrap();
    let at4 = balanced_split(&tickers, NonZeroUsize::new(4).unwrap());
    assert_eq!(at4.owners()[&aapl], 2, "AAPL is on shard 2 at N=4");
}
