//! Following a vendor's pages of bars (Alpaca's `next_page_token`, Polygon's `next_url`): one
//! loop for both, so the bound and its message are the same everywhere.

use std::future::Future;

use super::RawBar;
use crate::backfill::http::FetchError;

/// Most pages followed for one window: far more than any real window needs (Alpaca pages hold
/// 10 000 bars, Polygon's 50 000), so reaching it means a server that never stops paging.
pub const MAX_PAGES: usize = 10_000;

/// One page: its bars, and where the next one is (None: this was the last).
pub type Page<C> = (Vec<RawBar>, Option<C>);

/// Fetches `page(None)`, then `page(Some(next))` while a page names a next one, and returns
/// every bar in order; after [`MAX_PAGES`] pages, a decode error for `what`.
pub async fn collect<C, F, Fut>(what: &'static str, mut page: F) -> Result<Vec<RawBar>, FetchError>
where
    F: FnMut(Option<C>) -> Fut,
    Fut: Future<Output = Result<Page<C>, FetchError>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let (bars, next) = page(cursor.take()).await?;
        out.extend(bars);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
    Err(FetchError::Decode(
        format!("more than {MAX_PAGES} pages for one window"),
        what,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(second: i64) -> RawBar {
        RawBar {
            start: jiff::Timestamp::from_second(second).unwrap(),
            open: None,
            high: None,
            low: None,
            close: Some(1.0),
            volume: None,
            trades: None,
            vwap: None,
        }
    }

    #[tokio::test]
    async fn pages_are_followed_in_order_until_one_names_no_next() {
        let mut asked = Vec::new();
        let bars = collect("test", |cursor: Option<u32>| {
            asked.push(cursor);
            let n = cursor.unwrap_or(0);
            let next = (n < 2).then_some(n + 1);
            std::future::ready(Ok((vec![bar(i64::from(n))], next)))
        })
        .await
        .unwrap();
        assert_eq!(asked, [None, Some(1), Some(2)]);
        assert_eq!(bars, [bar(0), bar(1), bar(2)]);
    }

    #[tokio::test]
    async fn a_server_that_never_stops_paging_is_an_error_that_says_so() {
        let err = collect("test", |_: Option<()>| {
            std::future::ready(Ok((Vec::new(), Some(()))))
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("more than 10000 pages"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_page_ends_the_window_with_its_error() {
        let err = collect("test", |cursor: Option<u32>| {
            std::future::ready(match cursor {
                None => Ok((vec![bar(0)], Some(1))),
                Some(_) => Err(FetchError::Decode("bad page".into(), "test")),
            })
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("bad page"), "{err}");
    }
}
