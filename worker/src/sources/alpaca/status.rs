//! Alpaca's error codes (`[{"T":"error","code":N,"msg":".."}]`) and what each means for the
//! connection. Codes that a new connection cannot fix stop the source with the setting to change.

use std::time::Duration;

use quotestream_api::crd::AlpacaFeed;

use super::config::{SecretNames, feed_name};
use crate::sources::websocket::Action;

/// How long Alpaca may keep counting a connection of ours that the network lost: reconnecting
/// during this time meets 406 "connection limit exceeded" (reported at about 90 s, alpacahq/
/// alpaca-trade-api-csharp#558), which is then our own ghost, not another client.
pub const GHOST_CONNECTION_GRACE: Duration = Duration::from_secs(180);

/// What the fixes name.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorContext {
    pub feed: AlpacaFeed,
    pub secret: SecretNames,
}

/// The codes reconnecting cannot fix, with the fix the source stops with. `{credentials}` is
/// replaced by the Secret and its keys, `{feed}` by the configured feed (docs/streaming.md's
/// table of Alpaca's codes).
const FATAL: &[(i64, &str)] = &[
    (
        401,
        "Alpaca did not accept the login before the subscription: check the credentials in {credentials}",
    ),
    (
        402,
        "check the Secret's key id/secret: {credentials} must hold a valid Alpaca API key id and secret key",
    ),
    (
        403,
        "the connection was already logged in: another login was sent with the credentials of {credentials}; if nothing else shares this connection, report it as a bug",
    ),
    (
        404,
        "Alpaca did not receive the login in time: check that spec.source.alpaca.url ({feed} feed) reaches Alpaca without a proxy holding frames back",
    ),
    (
        405,
        "the free IEX plan allows 30 symbols: use fewer tickers per stream or feed: sip (spec.source.alpaca.feed, now {feed}; needs a paid plan)",
    ),
    (
        406,
        "another client uses these credentials: Alpaca allows one connection per endpoint and account; stop the other client, or raise spec.source.alpaca.maxConnections only if the plan allows more (each shard holds one connection), or use other credentials in {credentials}",
    ),
    (
        408,
        "market data v2 is not enabled for this account: enable it in the Alpaca dashboard or put other credentials in {credentials}",
    ),
    (
        409,
        "the plan does not include the {feed} feed: set spec.source.alpaca.feed: iex (free) or upgrade the Alpaca plan",
    ),
    (
        410,
        "the {feed} feed does not serve trades, quotes and daily bars: set spec.source.alpaca.feed to iex or sip",
    ),
    (
        411,
        "the API key lacks the market-data scope: create a key with data access and put it in {credentials}",
    ),
];

/// The action for an error `code`. `ghost_possible`: an earlier connection of this worker was
/// logged in and lost less than [`GHOST_CONNECTION_GRACE`] ago, so Alpaca may still count it.
pub fn action(code: i64, ctx: &ErrorContext, ghost_possible: bool) -> Action {
    match code {
        // Our frame did not parse: a bug on our side, not worth the connection.
        400 => Action::Log,
        // Most likely our own lost connection, still counted: it goes away.
        406 if ghost_possible => Action::Reconnect,
        // 407: Alpaca dropped us for reading too slowly (a new connection starts with an empty
        // buffer); 500: its internal error.
        407 | 500 => Action::Reconnect,
        _ => match FATAL.iter().find(|(fatal, _)| *fatal == code) {
            Some((_, fix)) => Action::Fatal(
                fix.replace("{credentials}", &ctx.secret.describe())
                    .replace("{feed}", feed_name(ctx.feed)),
            ),
            // A code this connector does not know: a fresh connection is the safe answer, and
            // the backoff bounds how often it is tried.
            None => Action::Reconnect,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ErrorContext {
        ErrorContext {
            feed: AlpacaFeed::Iex,
            secret: SecretNames {
                name: "alpaca".into(),
                key_id_key: "APCA_API_KEY_ID".into(),
                secret_key_key: "APCA_API_SECRET_KEY".into(),
            },
        }
    }

    /// Every code of Alpaca's list, with the action and, for fatal ones, what the fix must name.
    #[test]
    fn every_documented_code_has_an_action() {
        let table: &[(i64, &str, &[&str])] = &[
            (400, "log", &[]),
            (401, "fatal", &["credentialsSecretRef", "Secret alpaca"]),
            (
                402,
                "fatal",
                &["check the Secret's key id/secret", "APCA_API_KEY_ID"],
            ),
            (403, "fatal", &["credentialsSecretRef"]),
            (404, "fatal", &["spec.source.alpaca.url"]),
            (
                405,
                "fatal",
                &["30 symbols", "feed: sip", "spec.source.alpaca.feed"],
            ),
            (
                406,
                "fatal",
                &["another client uses these credentials", "maxConnections"],
            ),
            (407, "reconnect", &[]),
            (408, "fatal", &["credentialsSecretRef"]),
            (409, "fatal", &["spec.source.alpaca.feed", "iex"]),
            (410, "fatal", &["spec.source.alpaca.feed"]),
            (411, "fatal", &["credentialsSecretRef", "scope"]),
            (500, "reconnect", &[]),
            (599, "reconnect", &[]),
        ];
        for (code, kind, names) in table {
            match (action(*code, &ctx(), false), *kind) {
                (Action::Log, "log") | (Action::Reconnect, "reconnect") => {}
                (Action::Fatal(fix), "fatal") => {
                    assert!(!fix.contains('{'), "{code}: a placeholder is left: {fix}");
                    for name in *names {
                        assert!(fix.contains(name), "{code}: {fix:?} should name {name:?}");
                    }
                }
                (other, _) => panic!("{code}: expected {kind}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_connection_limit_right_after_losing_a_connection_is_our_own_ghost() {
        assert_eq!(action(406, &ctx(), true), Action::Reconnect);
        // Other fatal codes stay fatal.
        assert!(matches!(action(402, &ctx(), true), Action::Fatal(_)));
    }

    #[test]
    fn fixes_name_the_configured_feed() {
        let mut c = ctx();
        c.feed = AlpacaFeed::Sip;
        let Action::Fatal(fix) = action(409, &c, false) else {
            panic!("409 is fatal")
        };
        assert!(fix.contains("the sip feed"), "{fix}");
    }
}
