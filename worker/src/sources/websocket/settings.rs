//! The timing knobs every streaming source shares, from `spec.source`.

use std::time::Duration;

use quotestream_api::crd::Source;

use crate::sources::ConfigError;

/// Reconnect when nothing arrived for this long, unless `spec.source.idleTimeout` says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct WebsocketSettings {
    /// Deliver at most one quote per ticker per window; `None` delivers every tick.
    pub coalesce: Option<Duration>,
    /// No frame (not even a pong) for this long means the connection is dead.
    pub idle_timeout: Duration,
    /// How often to ping: a third of the idle timeout, so two lost pongs are tolerated.
    pub ping_every: Duration,
    /// Time allowed for the TCP + TLS + WebSocket handshake.
    pub connect_timeout: Duration,
    /// Time allowed from the open socket to an accepted login.
    pub login_timeout: Duration,
    /// First and longest wait between reconnects (exponential, with jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A connection that stayed up this long resets the backoff to its minimum.
    pub healthy_after: Duration,
}

impl Default for WebsocketSettings {
    fn default() -> Self {
        Self::with_idle_timeout(None, DEFAULT_IDLE_TIMEOUT)
    }
}

impl WebsocketSettings {
    fn with_idle_timeout(coalesce: Option<Duration>, idle_timeout: Duration) -> Self {
        Self {
            coalesce,
            idle_timeout,
            ping_every: idle_timeout / 3,
            connect_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
        }
    }

    /// Reads `spec.source.coalesce` and `spec.source.idleTimeout`.
    pub fn from_spec(source: &Source) -> Result<Self, ConfigError> {
        let coalesce = match source.coalesce.as_deref() {
            None => None,
            Some(text) => {
                let window =
                    crate::bounds::COALESCE
                        .parse(text)
                        .map_err(|e| ConfigError::Invalid {
                            field: "spec.source.coalesce",
                            value: format!("{text:?}"),
                            fix: format!("{e} (e.g. 250ms)"),
                        })?;
                // A zero window would coalesce nothing: it means "every tick", like unset.
                (!window.is_zero()).then_some(window)
            }
        };
        let idle_timeout = match source.idle_timeout.as_deref() {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(text) => {
                let invalid = |fix: String| ConfigError::Invalid {
                    field: "spec.source.idleTimeout",
                    value: format!("{text:?}"),
                    fix,
                };
                let timeout = quotestream_api::duration::parse(text)
                    .map_err(|e| invalid(format!("{e} (e.g. 30s)")))?;
                if timeout < crate::bounds::IDLE_TIMEOUT.min {
                    return Err(invalid(
                        "too short to tell a quiet market from a dead connection; use at least 1s (default 30s)".into(),
                    ));
                }
                crate::bounds::IDLE_TIMEOUT
                    .parse(text)
                    .map_err(|e| invalid(format!("{e} (default 30s)")))?
            }
        };
        Ok(Self::with_idle_timeout(coalesce, idle_timeout))
    }
}

/// Checks that `url` (the setting `field`) is one a WebSocket client connects to; `fix` says
/// what to write instead.
pub fn check_url(field: &'static str, url: &str, fix: &str) -> Result<(), ConfigError> {
    if url.starts_with("wss://") || url.starts_with("ws://") {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        field,
        value: format!("{url:?}"),
        fix: format!("not a WebSocket URL; {fix}"),
    })
}

#[cfg(test)]
mod tests {
    use quotestream_api::crd::SourceType;

    use super::*;

    #[test]
    fn defaults_deliver_every_tick_and_ping_three_times_per_idle_timeout() {
        let s = WebsocketSettings::from_spec(&Source::of(SourceType::Alpaca)).unwrap();
        assert_eq!(s.coalesce, None);
        assert_eq!(s.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(s.ping_every, Duration::from_secs(10));
    }

    #[test]
    fn reads_the_windows_from_the_spec() {
        let mut source = Source::of(SourceType::Polygon);
        source.coalesce = Some("250ms".into());
        source.idle_timeout = Some("6s".into());
        let s = WebsocketSettings::from_spec(&source).unwrap();
        assert_eq!(s.coalesce, Some(Duration::from_millis(250)));
        assert_eq!(s.ping_every, Duration::from_secs(2));
        source.coalesce = Some("0s".into());
        assert_eq!(
            WebsocketSettings::from_spec(&source).unwrap().coalesce,
            None
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut source = Source::of(SourceType::YahooStream);
        source.coalesce = Some("soon".into());
        let e = WebsocketSettings::from_spec(&source)
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.coalesce"), "{e}");
        source.coalesce = None;
        source.idle_timeout = Some("100ms".into());
        let e = WebsocketSettings::from_spec(&source)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source.idleTimeout") && e.contains("at least 1s"),
            "{e}"
        );
    }

    #[test]
    fn only_websocket_urls_pass() {
        for url in ["wss://stream.example/v2", "ws://127.0.0.1:9000/"] {
            assert_eq!(check_url("spec.source.x.url", url, "use wss://"), Ok(()));
        }
        let e = check_url("spec.source.x.url", "https://example", "use wss://host")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"spec.source.x.url is "https://example": not a WebSocket URL; use wss://host"#
        );
    }
}
