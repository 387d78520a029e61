//! The live summary of `make run`: per shard tickers, quotes/s, totals, quote age and the latest
//! prices; redrawn in place on a terminal, printed as plain blocks otherwise (CI logs, pipes).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use quotestream_api::WorkerConfig;

use crate::assembly::Summary;
use crate::metrics::Metrics;
use crate::process_stats::{CpuSampler, cpu_seconds, rss_mb};
use crate::sinks::console::ConsoleView;

/// Tickers shown per shard.
const SHOWN: usize = 4;

#[derive(Debug)]
pub struct Display {
    shards: Vec<(WorkerConfig, ConsoleView, Metrics)>,
    sinks: Vec<&'static str>,
    started: Instant,
    last: Option<(Instant, Vec<u64>)>,
    terminal: bool,
    frames: u64,
    cpu: CpuSampler,
}

impl Display {
    pub fn new(
        shards: Vec<(WorkerConfig, ConsoleView, Metrics)>,
        sinks: Vec<&'static str>,
    ) -> Self {
        Self {
            shards,
            sinks,
            started: Instant::now(),
            last: None,
            terminal: std::io::stdout().is_terminal(),
            frames: 0,
            cpu: CpuSampler::default(),
        }
    }

    /// Draws one frame.
    pub fn render(&mut self) {
        self.frames += 1;
        // Off a terminal, print every fifth frame so logs stay readable.
        if !self.terminal && self.frames % 5 != 1 {
            return;
        }
        let frame = self.frame();
        // print! (not a raw stdout handle) so test harnesses capture it.
        if self.terminal {
            print!("\x1b[2J\x1b[H");
        }
        println!("{frame}");
        let _ = std::io::stdout().flush();
    }

    fn frame(&mut self) -> String {
        let now = Instant::now();
        let snaps: Vec<_> = self.shards.iter().map(|(_, v, _)| v.snapshot()).collect();
        let totals: Vec<u64> = snaps.iter().map(|s| s.quotes).collect();
        let rates: Vec<f64> = match &self.last {
            Some((at, prev)) => {
                let dt = now.duration_since(*at).as_secs_f64().max(1e-3);
                totals
                    .iter()
                    .zip(prev)
                    .map(|(t, p)| (t - p) as f64 / dt)
                    .collect()
            }
            None => vec![0.0; totals.len()],
        };
        self.last = Some((now, totals.clone()));
        let first = &self.shards[0].0;
        let all_tickers: usize = self.shards.iter().map(|(c, _, _)| c.tickers.len()).sum();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "quotestream local: stream {} - {} tickers over {} shards, source {} - up {}s - process RSS {:.1} MB, CPU {:.0}%",
            first.stream,
            all_tickers,
            self.shards.len(),
            if first.source.kind.is_streaming() {
                format!("{} (streaming)", first.source.kind.name())
            } else {
                format!("{}, tick {}", first.source.kind.name(), first.interval)
            },
            self.started.elapsed().as_secs(),
            rss_mb().unwrap_or(0.0),
            self.cpu.percent()
        );
        let _ = writeln!(
            s,
            "{:>5} {:>7} {:>10} {:>12} {:>8}  latest prices (change since start)",
            "shard", "tickers", "quotes/s", "published", "age ms"
        );
        for (i, ((config, _, _), snap)) in self.shards.iter().zip(&snaps).enumerate() {
            let latest: Vec<String> = snap
                .prices
                .iter()
                .take(SHOWN)
                .map(|(t, (last, first))| {
                    format!("{t} {last:.2} ({:+.2}%)", (last / first - 1.0) * 100.0)
                })
                .collect();
            let _ = writeln!(
                s,
                "{:>5} {:>7} {:>10.0} {:>12} {:>8.1}  {}",
                i,
                config.tickers.len(),
                rates[i],
                snap.quotes,
                snap.age_ms,
                latest.join("  ")
            );
        }
        let _ = writeln!(
            s,
            "{:>5} {:>7} {:>10.0} {:>12}",
            "all",
            all_tickers,
            rates.iter().sum::<f64>(),
            totals.iter().sum::<u64>()
        );
        let invalid: u64 = self
            .shards
            .iter()
            .map(|(_, _, m)| m.errors.with_label_values(&["validation"]).get())
            .sum();
        let mut sinks = String::from("sinks: console");
        for name in &self.sinks {
            let published: u64 = self
                .shards
                .iter()
                .map(|(_, _, m)| m.quotes_published.with_label_values(&["redis"]).get())
                .sum();
            let errors: u64 = self
                .shards
                .iter()
                .map(|(_, _, m)| m.errors.with_label_values(&["publish"]).get())
                .sum();
            let _ = write!(
                sinks,
                ", redis via {name} ({published} published, {errors} failed writes)"
            );
        }
        let _ = writeln!(s, "{sinks}; invalid quotes dropped: {invalid}");
        let _ = write!(
            s,
            "Ctrl-C stops (sinks drain first). Set REDIS_URL to publish to Redis as well."
        );
        s
    }

    /// The closing summary.
    pub fn finish(&mut self, summaries: &[Summary]) {
        let fetched: u64 = summaries.iter().map(|s| s.fetched).sum();
        let dropped: u64 = summaries.iter().map(|s| s.dropped).sum();
        let secs = self.started.elapsed().as_secs_f64();
        println!(
            "stopped after {secs:.1}s: {fetched} quotes generated by {} shards ({:.0}/s), {dropped} dropped; process RSS {:.1} MB, CPU {:.2} s",
            summaries.len(),
            fetched as f64 / secs.max(1e-3),
            rss_mb().unwrap_or(0.0),
            cpu_seconds().unwrap_or(0.0)
        );
        for (i, s) in summaries.iter().enumerate() {
            let published: Vec<String> = s
                .published
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "  shard {i}: fetched {}, published {}",
                s.fetched,
                published.join(", ")
            );
        }
    }
}
