//! Progress: a bar (indicatif) on a terminal, plain lines otherwise (a Job's log, CI).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise.
    Auto,
    Bar,
    Lines,
    /// Only the final report.
    None,
}

#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl Progress {
    pub fn new(mode: ProgressMode, windows: u64) -> Self {
        let bar = match mode {
            ProgressMode::Bar => true,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Lines | ProgressMode::None => false,
        };
        if bar {
            let b = ProgressBar::with_draw_target(Some(windows), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} windows ({per_sec}, eta {eta}) {msg}",
            ) {
                b.set_style(style);
            }
            return Self {
                bar: Some(b),
                lines: false,
            };
        }
        Self {
            bar: None,
            lines: mode != ProgressMode::None,
        }
    }

    /// One window fetched and stored (or failed).
    pub fn window_done(&self, symbol: &str) {
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(symbol.to_owned());
        }
    }

    /// A line about a finished ticker: above the bar, or on its own.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None if self.lines => eprintln!("{text}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
