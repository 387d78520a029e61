//! Command line: `quotestream-store [serve]` (the default) and `quotestream-store migrate`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The quotestream storage service: POST /quotes/batch into PostgreSQL / TimescaleDB.
#[derive(Debug, Parser)]
#[command(
    name = "quotestream-store",
    version,
    about,
    after_help = "Examples:\n  \
        DATABASE_URL=postgres://quotes@127.0.0.1:5432/market quotestream-store            # serve on 0.0.0.0:8080\n  \
        quotestream-store serve --listen 127.0.0.1:9090 --database-url postgres://quotes@db/market\n  \
        quotestream-store migrate --database-url postgres://quotes@db/market              # apply the migrations and exit\n  \
        quotestream-store openapi > openapi.json                                          # the API description, no database needed\n  \
        curl -s localhost:8080/health | jq .checks"
)]
pub struct Cli {
    /// Log as JSON (default: JSON inside Kubernetes, human-readable elsewhere).
    #[arg(long, global = true)]
    pub log_json: Option<bool>,
    /// Async worker threads (default: the CPUs available, at most 4).
    #[arg(long, global = true, env = "QUOTESTREAM_STORE_THREADS")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses `args` (program name first); without a subcommand, `serve` is meant.
    pub fn parse_with_default<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        use clap::Parser as _;
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let named = args.iter().skip(1).any(|a| {
            ["serve", "migrate", "openapi", "help"]
                .iter()
                .any(|s| a == s)
        });
        let top_level = args.len() == 2
            && ["-h", "--help", "-V", "--version"]
                .iter()
                .any(|s| args[1] == *s);
        if !named && !top_level {
            args.insert(1.min(args.len()), "serve".into());
        }
        Self::try_parse_from(args)
    }

    pub fn log_json(&self) -> Option<bool> {
        self.log_json
    }

    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(1)
                    .min(4)
            })
            .max(1)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default): migrations are applied first.
    Serve(ServeArgs),
    /// Apply the migrations and exit.
    Migrate(DbArgs),
    /// Print the OpenAPI document of every route (what GET /openapi.json serves) and exit.
    Openapi,
}

/// Where the quotes live.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL connection string (postgres://user:password@host:5432/db).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The quotes table, schema.table in lower case.
    #[arg(
        long,
        env = "QUOTESTREAM_STORE_TABLE",
        default_value = "quotes.real_time"
    )]
    pub table: String,
}

/// `serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on (the API, /health, /ready and /metrics).
    #[arg(long, env = "QUOTESTREAM_STORE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (a full batch of 1000 quotes is about 150 kB).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Database connections (each writes one batch at a time).
    #[arg(long, env = "QUOTESTREAM_STORE_CONNECTIONS", default_value_t = 4)]
    pub connections: usize,
    /// Database connections of the read API (/v1), apart from the ingest ones.
    #[arg(long, env = "QUOTESTREAM_STORE_READ_CONNECTIONS", default_value_t = 4)]
    pub read_connections: usize,
    /// Bearer token the read API (/v1) requires (at least 16 characters); unset: the read API
    /// is open (the default). In a cluster, set the variable from a Secret.
    #[arg(long, env = "QUOTESTREAM_STORE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Least time between two merges of the rollup queue into the bars, the latest quotes and
    /// the daily summaries: how far they may lag the stored rows. A merge costs the database
    /// about the same whatever it folds (the current bar of every symbol it saw), so under
    /// heavy ingest a longer interval costs less CPU per quote (docs/store.md#rollups).
    #[arg(long, env = "QUOTESTREAM_STORE_ROLLUP_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub rollup_interval: Duration,
    /// Longest wait for in-flight requests after SIGTERM.
    #[arg(long, default_value = "25s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Seconds a client is told to wait (Retry-After) while the database is unavailable.
    #[arg(long, default_value_t = 2)]
    pub retry_after_secs: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    quotestream_api::duration::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent_and_serve_is_the_default() {
        Cli::command().debug_assert();
        let cli = Cli::parse_with_default(["quotestream-store"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve is the default");
        };
        assert_eq!(args.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(args.db.table, "quotes.real_time");
        assert_eq!(args.rollup_interval, Duration::from_millis(250));
        for argv in [
            &["quotestream-store", "serve", "--listen", "127.0.0.1:1"][..],
            &["quotestream-store", "--listen", "127.0.0.1:1"][..],
        ] {
            let cli = Cli::parse_with_default(argv).unwrap();
            assert!(matches!(cli.command, Command::Serve(a) if a.listen.port() == 1));
        }
        let cli =
            Cli::parse_with_default(["quotestream-store", "migrate", "--table", "a.b"]).unwrap();
        assert!(matches!(cli.command, Command::Migrate(a) if a.table == "a.b"));
    }
}
