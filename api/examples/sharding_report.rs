//! Measures the shard assignment and prints docs/sharding.md (`make sharding-report`).
//!
//! For 300, 503, 10k and 100k tickers and N = 1..64 it reports balance (largest shard over
//! T/N), reshard movement over the minimum (N→N+1 and N→N−1), list-edit churn (how many *other*
//! tickers change shard when one ticker is added or removed) for the stateless balanced split
//! and for the stored-state rebalance the operator uses, and the time to compute. `--quick`: only
//! the 300 and 503 rows.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::time::Instant;

use quotestream_api::sharding::{Assignment, balanced_split, hash, rebalance};
use quotestream_api::{Ticker, TickerSet};

const MAX_N: usize = 64;
const SHOWN_N: [usize; 11] = [1, 2, 3, 4, 5, 8, 10, 16, 24, 32, 64];

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// Jump consistent hash (Lamping & Veach), for comparison only.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// Distinct synthetic symbols: 4 letters from a stride over 26^4 (coprime, so no repeats).
fn synthetic(count: usize) -> TickerSet {
    const SPACE: usize = 26 * 26 * 26 * 26;
    (0..count)
        .map(|i| {
            let mut x = (i * 7919 + 13) % SPACE;
            let mut s = [b'A'; 4];
            for c in s.iter_mut().rev() {
                *c = b'A' + (x % 26) as u8;
                x /= 26;
            }
            Ticker::parse(std::str::from_utf8(&s).unwrap_or("A")).unwrap_or_else(|_| unreachable!())
        })
        .collect()
}

fn sp500() -> Vec<String> {
    include_str!("../testdata/sp500.txt")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn max_over_ideal(a: &Assignment) -> f64 {
    let max = a.sizes().into_iter().max().unwrap_or(0) as f64;
    max / (a.ticker_count() as f64 / a.shard_count() as f64)
}

/// Symbols not in the set, for "add one ticker" edits.
fn outsiders(set: &TickerSet, count: usize) -> Vec<Ticker> {
    let mut out = Vec::new();
    for word in [
        "ZZZZA", "ZZZZB", "ZZZZC", "ZZZZD", "ZZZZE", "ZZZZF", "ZZZZG", "ZZZZH", "QQQQA", "QQQQB",
    ] {
        if let Ok(t) = Ticker::parse(word)
            && !set.contains(&t)
            && out.len() < count
        {
            out.push(t);
        }
    }
    out
}

#[derive(Default)]
struct Churn {
    total: usize,
    max: usize,
    edits: usize,
}

impl Churn {
    fn add(&mut self, moved: usize) {
        self.total += moved;
        self.max = self.max.max(moved);
        self.edits += 1;
    }
    fn show(&self) -> String {
        format!(
            "{:.1} ({})",
            self.total as f64 / self.edits.max(1) as f64,
            self.max
        )
    }
}

/// Others moved by adding and removing single tickers: (stateless, stored state).
fn churn(set: &TickerSet, n: usize, edits: usize) -> (Churn, Churn) {
    let (mut pure, mut stored) = (Churn::default(), Churn::default());
    let base = balanced_split(set, nz(n));
    let step = (set.len() / edits.max(1)).max(1);
    let removals = set.iter().step_by(step).take(edits);
    for gone in removals {
        let smaller: TickerSet = set.iter().filter(|t| *t != gone).cloned().collect();
        pure.add(base.moved_to(&balanced_split(&smaller, nz(n))));
        stored.add(base.moved_to(&rebalance(&base, &smaller, nz(n))));
    }
    for extra in outsiders(set, edits) {
        let bigger: TickerSet = set.iter().cloned().chain([extra]).collect();
        pure.add(base.moved_to(&balanced_split(&bigger, nz(n))));
        stored.add(base.moved_to(&rebalance(&base, &bigger, nz(n))));
    }
    (pure, stored)
}

struct Row {
    n: usize,
    balance: f64,
    spread: usize,
    jump_balance: f64,
    grow_pure: f64,
    grow_stored: f64,
    shrink_pure: f64,
    shrink_stored: f64,
    split_ms: f64,
    rebalance_ms: f64,
}

fn measure(set: &TickerSet) -> Vec<Row> {
    let keys: Vec<u64> = set.iter().map(|t| hash::key(t.as_str())).collect();
    let mut rows = Vec::new();
    let mut prev: Option<Assignment> = None;
    for n in 1..=MAX_N + 1 {
        let started = Instant::now();
        let a = balanced_split(set, nz(n));
        let split_ms = started.elapsed().as_secs_f64() * 1e3;
        if let Some(p) = prev.take() {
            let small_n = n - 1;
            let minimum_grow = set.len() / n;
            let started = Instant::now();
            let grown = rebalance(&p, set, nz(n));
            let rebalance_ms = started.elapsed().as_secs_f64() * 1e3;
            let shrunk = rebalance(&a, set, nz(small_n));
            let last = a.sizes()[small_n].max(1) as f64;
            let ratio = |moved: usize, min: usize| {
                if min == 0 {
                    1.0
                } else {
                    moved as f64 / min as f64
                }
            };
            let mut jump_sizes = vec![0usize; small_n];
            for &k in &keys {
                jump_sizes[jump(k, small_n)] += 1;
            }
            let ideal = set.len() as f64 / small_n as f64;
            rows.push(Row {
                n: small_n,
                balance: max_over_ideal(&p),
                spread: p.sizes().iter().max().unwrap_or(&0) - p.sizes().iter().min().unwrap_or(&0),
                jump_balance: *jump_sizes.iter().max().unwrap_or(&0) as f64 / ideal,
                grow_pure: ratio(p.moved_to(&a), minimum_grow),
                grow_stored: ratio(p.moved_to(&grown), minimum_grow),
                shrink_pure: a.moved_to(&p) as f64 / last,
                shrink_stored: a.moved_to(&shrunk) as f64 / last,
                split_ms,
                rebalance_ms,
            });
        }
        prev = Some(a);
    }
    rows
}

fn worst(rows: &[Row], f: impl Fn(&Row) -> f64) -> f64 {
    rows.iter().map(f).fold(0.0, f64::max)
}

fn main() {
    let golden = jump(hash::key("AAPL"), 64);
    assert_eq!(golden, 58, "jump hash disagrees with the reference vectors");

    let sp = sp500();
    // `--quick` (make bench-quick): only the S&P 500 sizes, so a debug build finishes in seconds.
    let quick = std::env::args().any(|a| a == "--quick");
    let mut datasets: Vec<(String, TickerSet, usize)> = vec![
        (
            "300 (first 300 S&P 500 symbols)".into(),
            TickerSet::from_symbols(&sp[..300]).unwrap_or_default(),
            20,
        ),
        (
            "503 (S&P 500)".into(),
            TickerSet::from_symbols(&sp).unwrap_or_default(),
            20,
        ),
        ("10,000 (synthetic)".into(), synthetic(10_000), 6),
        ("100,000 (synthetic)".into(), synthetic(100_000), 2),
    ];
    if quick {
        datasets.truncate(2);
    }

    let mut doc = String::new();
    let _ = writeln!(doc, "{}", include_str!("sharding_intro.md").trim_end());
    let mut summary = String::from(
        "\n## Summary over N = 1..64\n\n| tickers | worst max−min | worst max/ideal | worst jump-hash max/ideal | worst moved÷min, grow (stateless / stored) | worst moved÷min, shrink (stateless / stored) | others moved per ±1 ticker at N=10, stateless | same, stored state |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut details = String::new();
    for (name, set, edits) in &datasets {
        eprintln!("measuring {name} ...");
        let rows = measure(set);
        let (pure10, stored10) = churn(set, 10, *edits);
        let _ = writeln!(
            summary,
            "| {name} | {} | {:.3} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {} |",
            rows.iter().map(|r| r.spread).max().unwrap_or(0),
            worst(&rows, |r| r.balance),
            worst(&rows, |r| r.jump_balance),
            worst(&rows, |r| r.grow_pure),
            worst(&rows, |r| r.grow_stored),
            worst(&rows, |r| r.shrink_pure),
            worst(&rows, |r| r.shrink_stored),
            pure10.show(),
            stored10.show(),
        );
        let _ = writeln!(
            details,
            "\n### {name}\n\n| N | max−min | max/ideal | jump hash max/ideal | moved÷min N→N+1 (stateless / stored) | moved÷min N+1→N (stateless / stored) | others moved per ±1 ticker (stateless / stored), mean (max) | balanced split ms | rebalance ms |\n|---|---|---|---|---|---|---|---|---|"
        );
        for r in rows.iter().filter(|r| SHOWN_N.contains(&r.n)) {
            let (pure, stored) = if r.n == 10 {
                (pure10.show(), stored10.show())
            } else {
                churn(set, r.n, *edits).map_pair(|c| c.show())
            };
            let _ = writeln!(
                details,
                "| {} | {} | {:.3} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} | {:.2} | {:.2} |",
                r.n,
                r.spread,
                r.balance,
                r.jump_balance,
                r.grow_pure,
                r.grow_stored,
                r.shrink_pure,
                r.shrink_stored,
                pure,
                stored,
                r.split_ms,
                r.rebalance_ms
            );
        }
    }
    doc.push_str(&summary);
    doc.push_str("\n## Per shard count\n\nTimes are wall-clock of one call in a release build on the machine that ran the report; `rebalance` is the N→N+1 step.\n");
    doc.push_str(&details);
    print!("{doc}");
}

trait MapPair<T> {
    fn map_pair<U>(self, f: impl Fn(T) -> U) -> (U, U);
}

impl<T> MapPair<T> for (T, T) {
    fn map_pair<U>(self, f: impl Fn(T) -> U) -> (U, U) {
        (f(self.0), f(self.1))
    }
}
