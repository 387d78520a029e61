//! Page tokens: opaque to clients, they carry where the last page ended (symbol and time of
//! its last row) and a fingerprint of the request's other parameters, so a token is refused
//! with a 400 when it is replayed against another symbol, timeframe, range or sort instead of
//! silently paging through something else. Pagination is by key (the next page starts after
//! the last row), so rows inserted meanwhile never shift a page and none is skipped or
//! repeated.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use super::error::QueryError;
use super::params::Params;

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub symbol: String,
    pub t: Timestamp,
}

/// A fingerprint of the parameters that define a listing (`names`, in order), taken from the
/// request as given.
pub fn fingerprint(kind: &str, path_symbol: &str, params: &Params, names: &[&str]) -> u64 {
    let mut text = format!("{kind}\u{0}{path_symbol}");
    for n in names {
        text.push('\u{0}');
        text.push_str(params.get(n).unwrap_or(""));
    }
    xxhash_rust::xxh64::xxh64(text.as_bytes(), 0)
}

pub fn encode(fingerprint: u64, c: &Cursor) -> String {
    let text = format!("1.{fingerprint:016x}.{}.{}", c.t.as_microsecond(), c.symbol);
    URL_SAFE_NO_PAD.encode(text)
}

pub fn decode(token: &str, fingerprint: u64) -> Result<Cursor, QueryError> {
    let bad = |why: &str| {
        QueryError::invalid(
            "page_token",
            token,
            format!(
                "the next_page_token of the previous page of this same request ({why}); leave it out to start from the first page"
            ),
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad("this is not a page token"))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("this is not a page token"))?;
    let mut parts = text.splitn(4, '.');
    let (Some("1"), Some(fp), Some(us), Some(symbol)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("this is not a page token"));
    };
    if u64::from_str_radix(fp, 16).ok() != Some(fingerprint) {
        return Err(bad(
            "this token belongs to a request with other parameters (symbol, timeframe, start, end or sort)",
        ));
    }
    let t = us
        .parse::<i64>()
        .ok()
        .and_then(|us| Timestamp::from_microsecond(us).ok())
        .ok_or_else(|| bad("this is not a page token"))?;
    Ok(Cursor {
        symbol: symbol.to_owned(),
        t,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_round_trips_and_only_for_its_own_request() {
        let p = Params::parse(Some("timeframe=1Day"), &["timeframe"]).unwrap();
        let fp = fingerprint("bars", "AAPL", &p, &["timeframe"]);
        let c = Cursor {
            symbol: "BRK.B".into(),
            t: "2026-01-20T14:30:15.123456Z".parse().unwrap(),
        };
        let token = encode(fp, &c);
        assert_eq!(decode(&token, fp).unwrap(), c);
        let other = Params::parse(Some("timeframe=1Min"), &["timeframe"]).unwrap();
        let e = decode(&token, fingerprint("bars", "AAPL", &other, &["timeframe"])).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("page_token"));
        assert!(e.message.contains("other parameters"), "{}", e.message);
        for junk in ["", "abc", "!!!", &URL_SAFE_NO_PAD.encode("2.x.y.z")] {
            assert_eq!(decode(junk, fp).unwrap_err().status, 400, "{junk}");
        }
    }
}
