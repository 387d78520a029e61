//! `{"ev":"status"}` messages: the login flow, subscription acknowledgements and the errors
//! Massive reports, each with what the connection should do about it.

use crate::sources::websocket::{Action, Event, VendorError};

/// What one status message means. `key_source` names the Secret the API key comes from, for
/// the message that asks the user to fix it.
pub fn event(status: &str, message: &str, key_source: &str) -> Event {
    let error = |code: &str, action| {
        Event::Error(VendorError {
            code: code.to_owned(),
            message: message.to_owned(),
            action,
        })
    };
    match status {
        "connected" => Event::Greeted,
        "auth_success" => Event::Authenticated,
        // Acknowledges one channel of a subscribe or unsubscribe ("subscribed to: T.AAPL").
        "success" => Event::Subscribed(message.to_owned()),
        "auth_failed" => error(
            "auth_failed",
            Action::Fatal(format!(
                "the API key was refused: put a valid Massive (Polygon) API key in the {key_source}"
            )),
        ),
        // The server waited too long for the auth frame (a stalled connection): a new one logs
        // in again.
        "auth_timeout" => error("auth_timeout", Action::Reconnect),
        "max_connections" => error(
            "max_connections",
            Action::Fatal(
                "the account's connection limit is reached (Massive allows one connection per cluster unless the plan says otherwise): another client uses this API key, or the stream runs more shards than the plan allows; stop the other client, or set spec.source.polygon.maxConnections to what the plan allows (the operator then refuses more shards than that)".to_owned(),
            ),
        ),
        // A status this client does not know: worth a log line, never the connection. The
        // metric label stays bounded; the status itself goes to the log.
        other => Event::Error(VendorError {
            code: "unknown_status".to_owned(),
            message: format!("{other}: {message}"),
            action: Action::Log,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "key \"apiKey\" of Secret \"massive\" (spec.source.polygon.apiKeySecretRef)";

    /// What a status should turn into: the event, or the error's code, action and the
    /// settings its fix names.
    #[derive(Debug)]
    enum Want {
        Event(Event),
        Reconnect(&'static str),
        Fatal(&'static str, &'static [&'static str]),
        Log(&'static str),
    }

    /// Every status Massive sends, and what the connection does with it.
    #[test]
    fn every_status_is_mapped() {
        let cases = [
            ("connected", Want::Event(Event::Greeted)),
            ("auth_success", Want::Event(Event::Authenticated)),
            (
                "success",
                Want::Event(Event::Subscribed("the message".into())),
            ),
            (
                "auth_failed",
                Want::Fatal(
                    "auth_failed",
                    &[
                        "spec.source.polygon.apiKeySecretRef",
                        "\"massive\"",
                        "\"apiKey\"",
                    ],
                ),
            ),
            ("auth_timeout", Want::Reconnect("auth_timeout")),
            (
                "max_connections",
                Want::Fatal("max_connections", &["spec.source.polygon.maxConnections"]),
            ),
            ("error", Want::Log("error: the message")),
            ("", Want::Log(": the message")),
        ];
        for (status, want) in cases {
            let got = event(status, "the message", KEY);
            let ok = match (&want, &got) {
                (Want::Event(w), g) => w == g,
                (Want::Reconnect(code), Event::Error(v)) => {
                    v.code == *code && v.action == Action::Reconnect
                }
                (Want::Fatal(code, names), Event::Error(v)) => {
                    v.code == *code
                        && matches!(&v.action, Action::Fatal(fix) if names.iter().all(|n| fix.contains(n)))
                }
                (Want::Log(message), Event::Error(v)) => {
                    v.code == "unknown_status" && v.action == Action::Log && v.message == *message
                }
                _ => false,
            };
            assert!(ok, "status {status:?}: wanted {want:?}, got {got:?}");
        }
    }
}
