//! Yahoo's session: the `A3` cookie from the cookie page, then the crumb that every quote
//! request must carry. One session is shared by all requests of the source; when Yahoo says
//! the crumb is invalid, the first request to notice starts a new session and the others use it.

use std::sync::Arc;

use reqwest::{StatusCode, Url};
use tokio::sync::Mutex;

use super::client::{FetchError, excerpt};
use crate::sources::SourceContext;

/// A crumb and the number of the session it belongs to.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub crumb: Arc<str>,
    pub generation: u64,
}

#[derive(Debug, Default)]
pub(super) struct Sessions {
    // A tokio mutex held while a session starts: concurrent requests wait for that one
    // cookie + crumb exchange instead of each starting their own.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    session: Option<Session>,
    started: u64,
}

/// Where a session comes from.
#[derive(Debug)]
pub(super) struct Endpoints<'a> {
    pub http: &'a reqwest::Client,
    pub cookie_url: &'a Url,
    pub crumb_url: &'a Url,
}

impl Sessions {
    /// The current session, starting one if there is none.
    pub async fn current(
        &self,
        at: &Endpoints<'_>,
        ctx: &SourceContext,
    ) -> Result<Session, FetchError> {
        let mut state = self.state.lock().await;
        if let Some(session) = &state.session {
            return Ok(session.clone());
        }
        state.start(at, ctx).await
    }

    /// A session newer than `stale` (whose crumb Yahoo refused): the one another request
    /// already started, or a new one.
    pub async fn renew(
        &self,
        stale: &Session,
        at: &Endpoints<'_>,
        ctx: &SourceContext,
    ) -> Result<Session, FetchError> {
        let mut state = self.state.lock().await;
        if let Some(session) = &state.session
            && session.generation != stale.generation
        {
            return Ok(session.clone());
        }
        tracing::info!("yahoo: crumb refused (HTTP 401 Invalid Crumb); starting a new session");
        state.start(at, ctx).await
    }
}

impl State {
    async fn start(
        &mut self,
        at: &Endpoints<'_>,
        ctx: &SourceContext,
    ) -> Result<Session, FetchError> {
        self.session = None;
        let crumb = new_crumb(at, ctx).await?;
        self.started += 1;
        let session = Session {
            crumb,
            generation: self.started,
        };
        self.session = Some(session.clone());
        Ok(session)
    }
}

/// Cookie page, then getcrumb (which spends a request of the budget: it goes to the quote API).
async fn new_crumb(at: &Endpoints<'_>, ctx: &SourceContext) -> Result<Arc<str>, FetchError> {
    // fc.yahoo.com answers 404 and sets the cookie anyway: the status says nothing here; the
    // crumb request below fails clearly if no cookie came.
    let page = at
        .http
        .get(at.cookie_url.clone())
        .send()
        .await
        .map_err(|e| FetchError::Transport("the cookie page", e))?;
    drop(page);
    ctx.rate_limit.acquire(&ctx.metrics).await;
    let response = at
        .http
        .get(at.crumb_url.clone())
        .send()
        .await
        .map_err(|e| FetchError::Transport("getcrumb", e))?;
    let status = response.status();
    let body = super::client::read_body(response, "getcrumb").await?;
    match status {
        StatusCode::OK => parse_crumb(&body),
        StatusCode::TOO_MANY_REQUESTS => {
            ctx.metrics.rate_limit_hits.inc();
            Err(FetchError::RateLimited("getcrumb"))
        }
        s if s.is_server_error() => Err(FetchError::Unavailable {
            what: "getcrumb",
            status: s.as_u16(),
            excerpt: excerpt(&body),
        }),
        s => Err(FetchError::Crumb(format!(
            "getcrumb answered HTTP {} ({}) after the cookie page {}: Yahoo gave no session cookie; check cookie_url and that the client sends a browser User-Agent",
            s.as_u16(),
            excerpt(&body),
            at.cookie_url
        ))),
    }
}

/// A crumb is a short token (`haT3oykhHqZ`); anything else (an HTML page, an error text with
/// status 200) must not be sent as one.
fn parse_crumb(body: &[u8]) -> Result<Arc<str>, FetchError> {
    let text = String::from_utf8_lossy(body);
    let crumb = text.trim();
    let plausible = !crumb.is_empty()
        && crumb.len() <= 64
        && !crumb
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '{');
    if plausible {
        Ok(Arc::from(crumb))
    } else {
        Err(FetchError::Crumb(format!(
            "getcrumb answered 200 without a crumb: {}",
            excerpt(body)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_crumb_is_accepted_and_pages_are_not() {
        let path = format!(
            "{}/tests/fixtures/yahoo/getCrumb-getcrumb.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let capture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let body = capture["response"]["bodyText"].as_str().unwrap();
        assert_eq!(&*parse_crumb(body.as_bytes()).unwrap(), "haT3oykhHqZ");
        assert!(parse_crumb(b"").is_err());
        assert!(parse_crumb(b"Too Many Requests").is_err());
        assert!(parse_crumb(b"<html><body>Will be right back</body></html>").is_err());
    }
}
