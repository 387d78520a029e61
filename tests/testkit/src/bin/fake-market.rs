//! Local servers that speak the market-data vendors' streaming protocols, for watching the
//! streaming sources work on one machine (`SOURCE=yahoo-stream make run`) and for benchmarks.
//! Prices are synthetic; the wire format is the vendor's.

use clap::{Parser, Subcommand};
use quotestream_testkit::stream::Script;
use quotestream_testkit::stream::alpaca::{self, AlpacaOptions, AlpacaServer};
use quotestream_testkit::stream::polygon::{Account, PolygonServer};
use quotestream_testkit::stream::yahoo::YahooStreamServer;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Serve a market-data vendor's streaming protocol on localhost",
    after_help = "Examples:\n  fake-market yahoo-stream --port 9801 --rate 2000\n  fake-market yahoo-stream --rate 50000    # a high-rate feed for benchmarks\n  fake-market polygon --rate 50000         # Massive/Polygon: any non-empty API key logs in\n  fake-market alpaca --port 9802 --symbol-limit 30"
)]
struct Cli {
    #[command(subcommand)]
    vendor: Vendor,
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
    #[arg(long, global = true, default_value_t = 0)]
    port: u16,
    /// Ticks per second across all subscribed symbols.
    #[arg(long, global = true, default_value_t = 1000.0)]
    rate: f64,
}

#[derive(Subcommand, Debug)]
enum Vendor {
    /// Yahoo Finance's live stream (base64 protobuf PricingData over WebSocket).
    YahooStream,
    /// Massive's (formerly Polygon.io) stocks stream (JSON arrays of T/Q/AM events; any
    /// non-empty API key is accepted).
    Polygon {
        /// Logged-in connections at once (`max_connections` beyond; Massive allows one).
        #[arg(long, default_value_t = 1)]
        max_connections: usize,
    },
    /// Alpaca market data v2 (JSON arrays of trades, quotes and daily bars after a login). The
    /// URL printed is the iex feed; /v2/sip and /v2/test (symbol FAKEPACA) work too.
    Alpaca {
        /// Symbols a connection may subscribe (405 beyond; Alpaca's free IEX plan allows 30).
        #[arg(long)]
        symbol_limit: Option<usize>,
        /// Logged-in connections at once (406 beyond; Alpaca allows one).
        #[arg(long, default_value_t = 1)]
        max_connections: usize,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let script = Script::at_rate(cli.rate);
    let url = match cli.vendor {
        Vendor::YahooStream => {
            let server = YahooStreamServer::start(script, cli.port).await?;
            let url = server.url();
            serve_until_interrupted(server, url).await?
        }
        Vendor::Polygon { max_connections } => {
            let account = Account {
                max_connections,
                ..Account::default()
            };
            let server = PolygonServer::start_with(script, account, cli.port).await?;
            let url = server.url();
            serve_until_interrupted(server, url).await?
        }
        Vendor::Alpaca {
            symbol_limit,
            max_connections,
        } => {
            let options = AlpacaOptions {
                symbol_limit,
                max_connections,
                ..AlpacaOptions::new(script)
            };
            let server = AlpacaServer::start(options, cli.port).await?;
            let url = server.url("iex");
            eprintln!(
                "fake-market: log in with APCA_API_KEY_ID={} APCA_API_SECRET_KEY={}",
                alpaca::KEY_ID,
                alpaca::SECRET_KEY
            );
            serve_until_interrupted(server, url).await?
        }
    };
    eprintln!("fake-market: stopped serving {url}");
    Ok(())
}

/// Prints the URL, then serves until Ctrl-C (a server stops when dropped).
async fn serve_until_interrupted<S>(server: S, url: String) -> std::io::Result<String> {
    println!("{url}");
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(url)
}
