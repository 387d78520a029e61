//! The command line of `backfill`. The interface is fixed (the operator's Jobs and outside
//! checks run it): `--tickers`, `--from`, `--to`, `--interval`, `--source`, `--base-url`,
//! `DATABASE_URL`; exit 0 when every ticker is done, 1 naming the tickers that failed and why,
//! 2 when the arguments or the database refuse the run.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use quotestream_api::crd::SourceType;
use quotestream_api::source_hosts::HostAllowList;
use quotestream_api::{Instrument, Vendor, contract, instrument};
use quotestream_db::PostgresConfig;

use super::http::{HistoryHttp, RetryPolicy};
use super::interval::Interval;
use super::plan::Range;
use super::progress::ProgressMode;
use super::run::{Plan, Report, RunError, run};
use super::sources::HistorySource;
use super::sources::rest_base::rest_base;
use super::sources::yahoo::YahooChart;
use super::sources::{alpaca, polygon};
use crate::sources::hosts::{allowed_hosts, check_host};

/// The vendor to fetch history from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceArg {
    Yahoo,
    Alpaca,
    Polygon,
}

impl SourceArg {
    /// The live source type whose host list the run obeys (`QUOTESTREAM_SOURCE_HOSTS`).
    pub fn source_type(self) -> SourceType {
        match self {
            Self::Yahoo => SourceType::Yahoo,
            Self::Alpaca => SourceType::Alpaca,
            Self::Polygon => SourceType::Polygon,
        }
    }

    pub fn vendor(self) -> Vendor {
        match self {
            Self::Yahoo => Vendor::Yahoo,
            Self::Alpaca => Vendor::Alpaca,
            Self::Polygon => Vendor::Polygon,
        }
    }

    /// The request budget when none is given: Yahoo's as the live source's default
    /// (`spec.source.rateLimit.requestsPerHour`, 2000), Alpaca's and Polygon's free plans
    /// (200 and 5 requests a minute).
    pub fn default_requests_per_hour(self) -> f64 {
        match self {
            Self::Yahoo => 2000.0,
            Self::Alpaca => 12_000.0,
            Self::Polygon => 300.0,
        }
    }
}

/// Canonical instrument ids, comma separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruments(pub Vec<Instrument>);

fn parse_instruments(s: &str) -> Result<Instruments, String> {
    instrument::parse_list(s).map(Instruments)
}

fn parse_date(s: &str) -> Result<Date, String> {
    s.parse::<Date>()
        .map_err(|e| format!("{s:?} is not a date: {e}; write YYYY-MM-DD, e.g. 2024-01-01"))
}

fn parse_now(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

fn parse_per_hour(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (1.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: give requests per hour between 1 and 1e9, e.g. 2000"
        )),
    }
}

/// Fetch bars from a vendor into the store's database (resumable; see docs/history.md).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    DATABASE_URL=postgres://quotes:…@db/market quotestream-worker backfill --tickers AAPL,^GSPC,BTC-USD --from 2024-01-01 --to 2025-12-31 --interval 1d --source yahoo\n  \
    quotestream-worker backfill --tickers AAPL,MSFT --from 2026-11-10 --to 2026-12-05 --interval 1m\n\n\
    Exit status: 0 every ticker done; 1 some failed (each named with the reason); 2 the arguments or the database refused the run.")]
pub struct BackfillArgs {
    /// Instruments, comma separated canonical ids: stocks AAPL, BRK.B; indices ^GSPC; crypto BTC-USD.
    #[arg(long, value_parser = parse_instruments)]
    pub tickers: Instruments,
    /// First day (UTC), inclusive: YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub from: Date,
    /// Last day (UTC), inclusive: YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub to: Date,
    /// Bar interval: 1m 2m 5m 15m 30m 60m|1h 90m 1d 5d 1wk 1mo 3mo.
    #[arg(long, default_value = "1d", value_parser = Interval::parse)]
    pub interval: Interval,
    /// The vendor.
    #[arg(long, value_enum, default_value = "yahoo")]
    pub source: SourceArg,
    /// The vendor's address, the live source's setting (`baseUrl` for yahoo, `url` for alpaca
    /// and polygon); default the vendor's own.
    #[arg(long)]
    pub base_url: Option<String>,
    /// PostgreSQL, as for the store.
    #[arg(long, env = contract::env::DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// The quotes table whose rollups the store serves (`schema.table`).
    #[arg(long, default_value = "quotes.real_time")]
    pub table: String,
    /// The request budget (default: yahoo 2000, alpaca 12000, polygon 300).
    #[arg(long, env = contract::env::BACKFILL_REQUESTS_PER_HOUR, value_parser = parse_per_hour)]
    pub requests_per_hour: Option<f64>,
    /// Requests the budget lets out at once.
    #[arg(long, default_value_t = 4)]
    pub burst: u32,
    /// Windows fetched at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Database sessions writing at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub writers: u16,
    /// Retries of a failed request (429, 5xx, network) before its window fails.
    #[arg(long, default_value_t = 6)]
    pub max_retries: usize,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Pretend the time is this (RFC 3339): for reproducible runs against a recorded or local
    /// vendor.
    #[arg(long, hide = true, value_parser = parse_now)]
    pub now: Option<Timestamp>,
}

/// Why the run did not start: the message names the flag or setting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl BackfillArgs {
    /// The hosts the run may reach, as the live sources': the cluster admin's list that the
    /// operator passes the Job in `QUOTESTREAM_SOURCE_HOSTS`, else the vendor's own and
    /// loopback. The operator refuses a `spec.history.baseUrl` outside it already; this is the
    /// second line, and the only one for a run by hand.
    fn hosts(&self, env: &HashMap<String, String>) -> Result<HostAllowList, StartError> {
        allowed_hosts(self.source.source_type(), env).map_err(|e| StartError::Usage(e.to_string()))
    }

    /// The vendor's client, once the address it will reach (for alpaca and polygon the bars
    /// API that a stream URL names) is one of `hosts`.
    fn source(&self, hosts: &HostAllowList) -> Result<HistorySource, StartError> {
        let allowed = |url: &str| {
            check_host(hosts, "--base-url", url).map_err(|e| {
                StartError::Usage(format!(
                    "{e} (a run by hand allows hosts with {}=HOST,…)",
                    contract::env::SOURCE_HOSTS
                ))
            })
        };
        match self.source {
            SourceArg::Yahoo => {
                let base = self
                    .base_url
                    .as_deref()
                    .unwrap_or(crate::sources::yahoo::DEFAULT_BASE_URL);
                allowed(base)?;
                Ok(HistorySource::Yahoo(
                    YahooChart::new(base).map_err(StartError::Usage)?,
                ))
            }
            SourceArg::Alpaca => {
                let base = rest_base(self.base_url.as_deref().unwrap_or(alpaca::DEFAULT_BASE_URL))
                    .map_err(StartError::Usage)?;
                allowed(base.as_str())?;
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
                Ok(HistorySource::Alpaca(
                    alpaca::AlpacaBars::new(
                        base,
                        env(contract::env::ALPACA_KEY_ID),
                        env(contract::env::ALPACA_SECRET_KEY),
                    )
                    .map_err(StartError::Usage)?,
                ))
            }
            SourceArg::Polygon => {
                let base = rest_base(
                    self.base_url
                        .as_deref()
                        .unwrap_or(polygon::DEFAULT_BASE_URL),
                )
                .map_err(StartError::Usage)?;
                allowed(base.as_str())?;
                let key = std::env::var(contract::env::POLYGON_API_KEY)
                    .ok()
                    .filter(|v| !v.trim().is_empty());
                Ok(HistorySource::Polygon(
                    polygon::PolygonAggs::new(base, key).map_err(StartError::Usage)?,
                ))
            }
        }
    }

    /// Runs the backfill the arguments describe.
    pub async fn execute(self) -> Result<Report, StartError> {
        let range = Range::new(self.from, self.to).map_err(|e| StartError::Usage(e.to_string()))?;
        let env: HashMap<String, String> = std::env::vars().collect();
        let hosts = self.hosts(&env)?;
        let source = self.source(&hosts)?;
        let now = self.now.unwrap_or_else(Timestamp::now);
        range
            .check_age(
                source.limits(self.interval),
                self.interval,
                source.vendor().name(),
                now,
            )
            .map_err(|e| StartError::Usage(e.to_string()))?;
        let per_hour = self
            .requests_per_hour
            .unwrap_or_else(|| self.source.default_requests_per_hour());
        let retry = RetryPolicy {
            max_retries: self.max_retries,
            ..RetryPolicy::default()
        };
        let http = HistoryHttp::new(per_hour, self.burst, retry, Duration::from_secs(30), hosts)
            .map_err(StartError::Usage)?;
        let db = PostgresConfig::new(Some(self.database_url.clone()), &self.table)
            .map_err(|e| StartError::Usage(format!("DATABASE_URL / --table: {e}")))?
            .with_application_name("quotestream-backfill");
        let plan = Plan {
            instruments: self.tickers.0,
            range,
            interval: self.interval,
            source,
            http,
            concurrency: usize::from(self.concurrency),
            writers: usize::from(self.writers),
            now: self.now,
        };
        run(plan, &db, self.progress)
            .await
            .map_err(StartError::from)
    }
}
