//! What of a URL may appear in a log line, an error, a metric or a status: everything but its
//! credentials. Connection URLs come from Secrets (`REDIS_URL`, `STORAGE_URL`, `DATABASE_URL`),
//! so every URL the binaries log or put in an error goes through [`redact_url`] first.

/// Shown instead of a value that does not look like a URL: it may be a secret put in the wrong
/// variable (a password, an API key), so not even a part of it is echoed.
pub const NOT_A_URL: &str = "(a value that is not a URL; not shown, it may be a secret)";

/// `raw` with its userinfo (`user:password@`) replaced by `***@` and its query and fragment
/// (which may carry a token) by `?***`; [`NOT_A_URL`] when `raw` does not start with
/// `scheme://`. Works on any text, parsed or not, so it is safe on the value that failed to
/// parse too.
pub fn redact_url(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return NOT_A_URL.to_owned();
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return NOT_A_URL.to_owned();
    }
    let (before_query, hidden) = match rest.find(['?', '#']) {
        Some(q) => (&rest[..q], "?***"),
        None => (rest, ""),
    };
    // The last '@' before the query ends the userinfo, even when a password holds a '/'
    // (redacting a path with an '@' in it costs nothing).
    let visible = match before_query.rfind('@') {
        Some(at) => format!("***@{}", &before_query[at + 1..]),
        None => before_query.to_owned(),
    };
    if visible.chars().any(char::is_whitespace) {
        return NOT_A_URL.to_owned();
    }
    format!("{scheme}://{visible}{hidden}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_survive() {
        let cases = [
            ("redis://:pw@host:6379/0", "redis://***@host:6379/0"),
            ("redis://user:pw@host", "redis://***@host"),
            ("http://u:p/w@host/x", "http://***@host/x"),
            ("http://host:8000/base/", "http://host:8000/base/"),
            ("http://host/?token=t#f", "http://host/?***"),
            (
                "postgres://u:p@h:5432/db?password=x",
                "postgres://***@h:5432/db?***",
            ),
            ("hunter2", NOT_A_URL),
            ("host=h password=p", NOT_A_URL),
            ("://p@h", NOT_A_URL),
            ("1x://h", NOT_A_URL),
            ("a://h password=p", NOT_A_URL),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_url(raw), shown, "{raw}");
        }
    }
}
