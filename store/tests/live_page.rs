//! The live page at `/` in a real headless browser: Debian's chromium driven through
//! chromedriver by fantoccini (WebDriver), against the real store and PostgreSQL. The page
//! loads, lists the stored symbols with their latest quotes, draws one candle per minute bar
//! of the chosen symbol, and follows new quotes as they are ingested.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use quotestream_testkit::{PostgresServer, free_port, wait_until};
use support::{Store, WAIT, batch, client, database, post, quote};

/// 2026-01-20T14:30:00Z, a minute boundary.
const M0: i64 = 1_768_919_400_000;
const MINUTE: i64 = 60_000;

/// chromedriver on a free loopback port; dropping it ends the browser it started (by the
/// process id the session reported) and itself.
struct Chromedriver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
    browser_pid: std::sync::Mutex<Option<u64>>,
}

impl Chromedriver {
    fn start() -> Self {
        let port = free_port().unwrap();
        let child = {
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver not found: run `make deps` (scripts/ensure-deps.sh installs chromium and chromium-driver)")
        };
        let driver = Self {
            child,
            port,
            profile: tempfile::tempdir().unwrap(),
            browser_pid: std::sync::Mutex::new(None),
        };
        // It listens once it is ready (its /status keeps the connection open, so a plain
        // connect is the check).
        assert!(
            wait_until(WAIT, || std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok()),
            "chromedriver did not listen on port {port}"
        );
        driver
    }

    async fn browser(&self) -> Client {
        let args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("--user-data-dir={}", self.profile.path().display())])
        .collect();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let browser = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session through chromedriver");
        let pid = browser
            .capabilities()
            .and_then(|c| c.get("goog:processID"))
            .and_then(serde_json::Value::as_u64);
        *self.browser_pid.lock().unwrap() = pid;
        browser
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // After a failed test the session is still open: end the browser by its own pid
        // (never by name), then chromedriver.
        if let Some(pid) = self.browser_pid.lock().ok().and_then(|p| *p) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ingest(http: &reqwest::Client, store: &Store, quotes: Vec<serde_json::Value>) {
    let (code, _, a) = post(http, store, batch(quotes), &[]).await;
    assert_eq!(code, 200, "{a}");
    let inserted = store.metric("quotestore_ingest_rows_total{result=\"inserted\"}");
    assert!(wait_until(WAIT, || store
        .metric("quotestore_rollup_merged_rows_total")
        >= inserted));
}

/// Waits (bounded) for an element matching `css`; the failure names it and shows the page's
/// status and error lines.
async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let status = browser
                .find(Locator::Id("status"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let error = browser
                .find(Locator::Id("error"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let chart = browser
                .find(Locator::Id("chart"))
                .await
                .unwrap()
                .attr("data-candles")
                .await
                .unwrap();
            panic!(
                "no {css} within 30 s ({e}); status {status:?}, error {error:?}, candles {chart:?}"
            );
        }
    }
}

/// The text of the first element matching `css`, read in one script: the table is rebuilt at
/// every refresh, so an element handle can go stale between finding and reading it.
async fn text(browser: &Client, css: &str) -> String {
    browser
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// How many elements match `css` right now.
async fn count(browser: &Client, css: &str) -> u64 {
    browser
        .execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_symbols_draws_one_candle_per_bar_and_follows_new_quotes() {
    let pg = PostgresServer::start().unwrap();
    let store = Store::start(&database(&pg, "page"), &[]);
    let http = client();
    // AAPL: quotes in 12 distinct minutes (gaps between), two quotes in some; MSFT and NVDA one
    // each.
    let minutes = [0, 2, 3, 5, 6, 8, 11, 12, 14, 17, 19, 20];
    let mut quotes = Vec::new();
    for (i, m) in minutes.iter().enumerate() {
        quotes.push(quote(
            "AAPL",
            M0 + m * MINUTE + 5_000,
            180.0 + i as f64,
            100 * i as u64,
        ));
        if i % 3 == 0 {
            quotes.push(quote(
                "AAPL",
                M0 + m * MINUTE + 40_000,
                179.5 + i as f64,
                100 * i as u64 + 50,
            ));
        }
    }
    quotes.push(quote("MSFT", M0, 400.0, 10));
    quotes.push(quote("NVDA", M0, 900.0, 10));
    ingest(&http, &store, quotes).await;

    let driver = Chromedriver::start();
    let browser = driver.browser().await;
    browser
        .goto(&format!(
            "{}/?symbol=AAPL&timeframe=1Min&bars=30&poll=200",
            store.url()
        ))
        .await
        .unwrap();
    assert_eq!(browser.title().await.unwrap(), "quotestream");
    // The symbols and their latest quotes.
    wait_for(&browser, "#latest[data-rows='3']").await;
    for s in ["AAPL", "MSFT", "NVDA"] {
        let css = format!("#latest tr[data-symbol='{s}']");
        wait_for(&browser, &css).await;
        assert!(text(&browser, &css).await.starts_with(s));
    }
    assert_eq!(count(&browser, "#symbol option").await, 3);
    // One candle per minute bar: 12 (the 30-bar window ends at AAPL's last quote).
    wait_for(&browser, "#chart[data-symbol='AAPL'][data-candles='12']").await;
    assert_eq!(count(&browser, "#chart g.candle").await, 12);
    let first = browser
        .execute(
            "return document.querySelector('#chart g.candle').getAttribute('data-t')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(first, "2026-01-20T14:30:00Z");
    assert_eq!(
        count(&browser, "#chart g.candle.down").await,
        4,
        "the minutes with a second, lower quote close down"
    );

    // A new quote in a new minute: the table and the chart follow without a reload.
    let t_new = M0 + 22 * MINUTE + 1_000;
    ingest(&http, &store, vec![quote("AAPL", t_new, 250.0, 5_000)]).await;
    let css = "#latest tr[data-symbol='AAPL'][data-t='2026-01-20T14:52:01Z']";
    wait_for(&browser, css).await;
    let row = text(&browser, css).await;
    assert!(row.contains("250.00"), "{row}");
    wait_for(
        &browser,
        "#chart[data-candles='13'][data-end='2026-01-20T14:52:01Z']",
    )
    .await;
    assert_eq!(
        browser
            .find(Locator::Id("error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "",
        "the page reported an error"
    );
    browser.close().await.unwrap();
}
