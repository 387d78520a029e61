//! The REST address of a streaming vendor, from the live source's setting: `--base-url` is
//! `spec.source.{alpaca,polygon}.url` (the WebSocket), so the history API is found from it —
//! `ws(s)://` becomes `http(s)://`, the vendor's stream host becomes its data host
//! (`stream.data.alpaca.markets` → `data.alpaca.markets`, `socket.massive.com` /
//! `delayed.massive.com` → `api.massive.com`, the same for polygon.io), and the path is
//! dropped. An `http(s)://` URL is taken as the REST address itself; any other host (a local
//! server, a proxy) keeps its host and port.

use reqwest::Url;

/// The REST base URL for `setting`.
pub fn rest_base(setting: &str) -> Result<Url, String> {
    let bad = |why: &str| format!("--base-url {setting:?}: {why}");
    let url = Url::parse(setting).map_err(|e| bad(&format!("not a URL: {e}")))?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => {
            return Err(bad(
                "use the stream's ws:// or wss:// URL, or an http(s):// URL",
            ));
        }
    };
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    let rest_host = if let Some(rest) = host.strip_prefix("stream.data.") {
        format!("data.{rest}")
    } else if let Some(rest) = host
        .strip_prefix("socket.")
        .or_else(|| host.strip_prefix("delayed."))
        .filter(|rest| *rest == "massive.com" || *rest == "polygon.io")
    {
        format!("api.{rest}")
    } else {
        host.to_owned()
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let base = if matches!(url.scheme(), "http" | "https") {
        format!(
            "{scheme}://{rest_host}{port}{}",
            url.path().trim_end_matches('/')
        )
    } else {
        format!("{scheme}://{rest_host}{port}")
    };
    Url::parse(&base).map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_lead_to_the_data_api() {
        for (setting, rest) in [
            (
                "wss://stream.data.alpaca.markets/v2/iex",
                "https://data.alpaca.markets/",
            ),
            (
                "wss://stream.data.sandbox.alpaca.markets/v2/sip",
                "https://data.sandbox.alpaca.markets/",
            ),
            (
                "wss://socket.massive.com/stocks",
                "https://api.massive.com/",
            ),
            ("wss://delayed.polygon.io/stocks", "https://api.polygon.io/"),
            ("ws://127.0.0.1:9802/v2/iex", "http://127.0.0.1:9802/"),
            ("http://127.0.0.1:9802", "http://127.0.0.1:9802/"),
        ] {
            assert_eq!(rest_base(setting).unwrap().as_str(), rest, "{setting}");
        }
        assert!(rest_base("ftp://x").unwrap_err().contains("--base-url"));
    }
}
