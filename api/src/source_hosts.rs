//! Which hosts a source may connect to — and so send its credentials to.
//!
//! A QuoteStream's author chooses the source URL (`spec.source.yahoo.baseUrl`,
//! `spec.source.{yahooStream,alpaca,polygon}.url`), but the credentials the worker sends there
//! (the Alpaca key pair, the Massive/Polygon key) and the network position it fetches from are
//! the cluster's. The cluster admin therefore fixes, per source type, the hosts a source may
//! reach: the operator refuses a stream whose URL names another host (Degraded), and passes the
//! list to the worker ([`crate::contract::env::SOURCE_HOSTS`]), which checks it again before it
//! connects and on every redirect (defence in depth: a worker never sends a key to, or logs a
//! reply from, a host outside the list it was given).
//!
//! A list is comma-separated patterns: a host name (`socket.massive.com`), `*.suffix` (any
//! host below `suffix`, not `suffix` itself), an IP address (`10.0.0.7`, `::1`), `loopback`
//! (`localhost`, `127.0.0.0/8`, `::1`: the pod itself; the tests' vendor servers) or `*` (any
//! host: the check is off). Host names compare case-insensitively, without a trailing dot.

use std::fmt;
use std::net::IpAddr;

use crate::crd::{Source, SourceType};

/// One allowed host (or family of hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Every host.
    Any,
    /// `localhost`, 127.0.0.0/8 and ::1.
    Loopback,
    /// Exactly this host name (lower case, no trailing dot).
    Host(String),
    /// Any host name ending in `.suffix` (stored without the `*.`).
    Below(String),
    /// Exactly this address.
    Ip(IpAddr),
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, HostListError> {
        let text = text.trim();
        let bad = |why: &str| HostListError {
            pattern: text.to_owned(),
            why: why.to_owned(),
        };
        if text == "*" {
            return Ok(Self::Any);
        }
        if text.eq_ignore_ascii_case("loopback") {
            return Ok(Self::Loopback);
        }
        let unbracketed = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let (below, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let name = normalise(name);
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(bad(
                "write a host name (socket.massive.com), *.domain, an IP address, loopback or *",
            ));
        }
        Ok(if below {
            Self::Below(name)
        } else {
            Self::Host(name)
        })
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Self::Any, _) => true,
            (Self::Loopback, Host::Name(n)) => n == "localhost",
            (Self::Loopback, Host::Ip(ip)) => ip.is_loopback(),
            (Self::Host(p), Host::Name(n)) => p == n,
            (Self::Below(p), Host::Name(n)) => n
                .strip_suffix(p.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (Self::Ip(p), Host::Ip(ip)) => p == ip,
            _ => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Loopback => f.write_str("loopback"),
            Self::Host(h) => f.write_str(h),
            Self::Below(h) => write!(f, "*.{h}"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The host of a URL, as the patterns compare it.
#[derive(Debug)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A pattern of an allow-list that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?} is not a host pattern: {why}")]
pub struct HostListError {
    pub pattern: String,
    pub why: String,
}

/// Why a URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefused {
    #[error("{url:?} is not a URL with a host: {why}")]
    NotAUrl { url: String, why: String },
    #[error("its host {host} is not among the hosts allowed for this source type ({allowed})")]
    NotAllowed { host: String, allowed: String },
}

/// The hosts one source type may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAllowList {
    patterns: Vec<Pattern>,
}

impl HostAllowList {
    /// Parses comma-separated patterns (see the module documentation). An empty list allows no
    /// host at all (the operator refuses to start with one: it would read as "default" in the
    /// worker's environment).
    pub fn parse(text: &str) -> Result<Self, HostListError> {
        let patterns = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Pattern::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// The vendor's official hosts plus loopback (a pod's own address: the tests' local vendor
    /// servers). Sources that reach no host (synthetic, replay) get loopback only.
    pub fn default_for(kind: SourceType) -> Self {
        let hosts: &[&str] = match kind {
            // The quote API (query1/query2.finance), the cookie page (fc) and the consent pages
            // it may redirect through (guce, consent) are all Yahoo's own.
            SourceType::Yahoo => &["*.yahoo.com"],
            SourceType::YahooStream => &["streamer.finance.yahoo.com"],
            // The streams, and the bars API the history backfill reads.
            SourceType::Alpaca => &[
                "stream.data.alpaca.markets",
                "stream.data.sandbox.alpaca.markets",
                "data.alpaca.markets",
                "data.sandbox.alpaca.markets",
            ],
            // Massive, and the hosts from before Polygon.io's rename; api.* serve the
            // aggregates (bars) the history backfill reads.
            SourceType::Polygon => &[
                "socket.massive.com",
                "delayed.massive.com",
                "socket.polygon.io",
                "delayed.polygon.io",
                "api.massive.com",
                "api.polygon.io",
            ],
            SourceType::Synthetic | SourceType::Replay => &[],
        };
        let mut patterns: Vec<Pattern> = hosts
            .iter()
            .map(|h| Pattern::parse(h))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        patterns.push(Pattern::Loopback);
        Self { patterns }
    }

    /// Whether `url`'s host is allowed; the error says why not.
    pub fn check(&self, url: &str) -> Result<(), HostRefused> {
        let host = host_of(url)?;
        if self.patterns.iter().any(|p| p.matches(&host)) {
            return Ok(());
        }
        Err(HostRefused::NotAllowed {
            host: match host {
                Host::Name(n) => n,
                Host::Ip(ip) => ip.to_string(),
            },
            allowed: if self.is_empty() {
                "none".to_owned()
            } else {
                self.to_string()
            },
        })
    }

    /// Whether no host at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl fmt::Display for HostAllowList {
    /// The list as [`HostAllowList::parse`] reads it (what the operator passes to the worker).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.patterns.iter().map(Pattern::to_string).collect();
        f.write_str(&texts.join(","))
    }
}

fn host_of(url: &str) -> Result<Host, HostRefused> {
    let refused = |why: String| HostRefused::NotAUrl {
        url: url.to_owned(),
        why,
    };
    let parsed = url::Url::parse(url.trim()).map_err(|e| refused(e.to_string()))?;
    match parsed.host() {
        Some(url::Host::Domain(d)) => Ok(Host::Name(normalise(d))),
        Some(url::Host::Ipv4(ip)) => Ok(Host::Ip(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => Ok(Host::Ip(IpAddr::V6(ip))),
        None => Err(refused("it names no host".to_owned())),
    }
}

/// The URLs a stream's author set for its source, each with the field that holds it. Unset
/// fields are not listed: the worker's defaults are the vendors' official hosts.
pub fn source_urls(source: &Source) -> Vec<(&'static str, &str)> {
    [
        (
            "spec.source.yahoo.baseUrl",
            source.yahoo.as_ref().and_then(|s| s.base_url.as_deref()),
        ),
        (
            "spec.source.yahooStream.url",
            source.yahoo_stream.as_ref().and_then(|s| s.url.as_deref()),
        ),
        (
            "spec.source.alpaca.url",
            source.alpaca.as_ref().and_then(|s| s.url.as_deref()),
        ),
        (
            "spec.source.polygon.url",
            source.polygon.as_ref().and_then(|s| s.url.as_deref()),
        ),
    ]
    .into_iter()
    .filter_map(|(field, url)| Some((field, url?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn list(text: &str) -> HostAllowList {
        HostAllowList::parse(text).unwrap()
    }

    #[test]
    fn defaults_are_the_vendors_hosts_and_loopback() {
        let polygon = HostAllowList::default_for(SourceType::Polygon);
        assert!(polygon.check("wss://socket.massive.com/stocks").is_ok());
        assert!(polygon.check("wss://delayed.polygon.io/stocks").is_ok());
        assert!(polygon.check("ws://127.0.0.1:9811/stocks").is_ok());
        assert!(polygon.check("ws://[::1]:9811/stocks").is_ok());
        assert!(polygon.check("ws://localhost:9811/stocks").is_ok());
        let e = polygon.check("ws://attacker.example/").unwrap_err();
        assert!(
            e.to_string().contains("attacker.example") && e.to_string().contains("loopback"),
            "{e}"
        );
        let yahoo = HostAllowList::default_for(SourceType::Yahoo);
        assert!(yahoo.check("https://query1.finance.yahoo.com").is_ok());
        assert!(yahoo.check("https://fc.yahoo.com/").is_ok());
        assert!(yahoo.check("http://metadata.google.internal/").is_err());
        assert!(yahoo.check("http://169.254.169.254/latest").is_err());
        let alpaca = HostAllowList::default_for(SourceType::Alpaca);
        assert!(
            alpaca
                .check("wss://stream.data.alpaca.markets/v2/iex")
                .is_ok()
        );
        assert!(alpaca.check("wss://socket.massive.com/stocks").is_err());
        // The bars APIs of the history backfill.
        assert!(
            alpaca
                .check("https://data.alpaca.markets/v2/stocks/bars")
                .is_ok()
        );
        assert!(polygon.check("https://api.massive.com/v2/aggs").is_ok());
        assert!(polygon.check("https://api.polygon.io/v2/aggs").is_ok());
    }

    #[test]
    fn tricks_in_the_url_do_not_pass() {
        let l = list("socket.massive.com");
        // The user-info part is not the host.
        assert!(
            l.check("wss://socket.massive.com@attacker.example/")
                .is_err()
        );
        // A suffix is not the host.
        assert!(
            l.check("wss://socket.massive.com.attacker.example/")
                .is_err()
        );
        assert!(l.check("wss://evilsocket.massive.com/").is_err());
        // Case and a trailing dot do not matter.
        assert!(l.check("wss://SOCKET.Massive.COM./stocks").is_ok());
        // 127.1 and 2130706433 are 127.0.0.1: loopback, not a name.
        let lo = list("loopback");
        assert!(lo.check("http://2130706433/").is_ok());
        assert!(lo.check("http://127.1/").is_ok());
        assert!(lo.check("http://localhost.attacker.example/").is_err());
        assert!(lo.check("not a url").is_err());
        assert!(lo.check("unix:/run/socket").is_err());
    }

    #[test]
    fn wildcards_cover_only_what_they_say() {
        let l = list("*.yahoo.com, 10.0.0.7");
        assert!(l.check("https://query2.finance.yahoo.com").is_ok());
        assert!(l.check("https://yahoo.com").is_err(), "*.x is below x only");
        assert!(l.check("https://notyahoo.com").is_err());
        assert!(l.check("http://10.0.0.7:8080/").is_ok());
        assert!(l.check("http://10.0.0.8:8080/").is_err());
        assert!(list("*").check("ws://anything.example/").is_ok());
        assert!(list("").check("ws://127.0.0.1/").is_err());
    }

    #[test]
    fn bad_patterns_are_named() {
        let e = HostAllowList::parse("socket.massive.com, ws://x/").unwrap_err();
        assert_eq!(e.pattern, "ws://x/");
        assert!(HostAllowList::parse("a..b").is_err());
        assert!(HostAllowList::parse("*").is_ok());
    }

    #[test]
    fn the_url_fields_are_named() {
        let mut s = Source::of(SourceType::Polygon);
        assert!(source_urls(&s).is_empty());
        s.polygon = Some(crate::crd::PolygonSource {
            api_key_secret_ref: crate::crd::SecretKeyRef {
                name: "k".into(),
                key: "k".into(),
            },
            url: Some("ws://x/".into()),
            max_connections: None,
        });
        assert_eq!(source_urls(&s), [("spec.source.polygon.url", "ws://x/")]);
    }

    proptest! {
        /// What the operator passes to the worker reads back as the same list.
        #[test]
        fn display_round_trips(hosts in proptest::collection::vec("[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){1,3}", 0..5), below in any::<bool>()) {
            let text: Vec<String> = hosts.iter().map(|h| if below { format!("*.{h}") } else { h.clone() }).collect();
            let l = list(&format!("{},loopback", text.join(",")));
            prop_assert_eq!(HostAllowList::parse(&l.to_string()).unwrap(), l);
        }
    }
}
