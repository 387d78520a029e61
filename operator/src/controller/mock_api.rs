//! A scripted Kubernetes API server for reconcile tests. The reconciler runs unchanged against a
//! real `kube::Client` whose transport is a `tower_test` mock; the test takes each request in
//! turn, checks it, and answers it as the API server would. A scenario therefore states the
//! exact calls a reconcile makes, in order, and runs in milliseconds without a server (the
//! pattern of kube-rs/controller-rs's fixtures).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde::Serialize;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

/// Longest wait for the reconciler's next request: far above what a reconcile against a mock
/// needs, so hitting it means the reconciler stopped calling, not that it was slow.
const PATIENCE: Duration = Duration::from_secs(5);

/// The test's side of the mock transport.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A client whose every request arrives at the returned [`ApiServer`].
pub fn client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

impl ApiServer {
    /// The next request, or `None` once every client is gone. Panics after [`PATIENCE`].
    pub async fn next(&mut self) -> Option<Call> {
        let (request, reply) = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no API request within {PATIENCE:?}"))?;
        Some(Call::read(request, reply).await)
    }
}

/// One request, waiting for its answer.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// What the client asked to get back (a metadata-only request says `as=PartialObjectMetadata`).
    pub accept: Option<String>,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    reply: SendResponse<Response<Body>>,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.query.is_empty() {
            write!(f, " {:?}", self.query)?;
        }
        Ok(())
    }
}

impl Call {
    async fn read(request: Request<Body>, reply: SendResponse<Response<Body>>) -> Self {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        let query = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Self {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            accept: parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
            reply,
        }
    }

    /// Answers with `status` and `body` as JSON.
    pub fn respond(self, status: StatusCode, body: &impl Serialize) {
        let bytes = serde_json::to_vec(body).expect("response serialises");
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("response builds");
        self.reply.send_response(response);
    }

    /// 200 with `body`.
    pub fn ok(self, body: &impl Serialize) {
        self.respond(StatusCode::OK, body);
    }

    /// 200 with the request's own body: what an apply, a create or an Event returns, close
    /// enough for a reconciler that ignores the answer.
    pub fn echo(self) {
        let body = self.body.clone();
        self.ok(&body);
    }

    /// The API server's `Status` for a missing object.
    pub fn not_found(self) {
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
            "code": 404, "message": format!("{} not found", self.path),
        });
        self.respond(StatusCode::NOT_FOUND, &status);
    }

    /// The API server's `Status` for a failure of its own.
    pub fn internal_error(self) {
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "reason": "InternalError", "code": 500, "message": "etcdserver: request timed out",
        });
        self.respond(StatusCode::INTERNAL_SERVER_ERROR, &status);
    }

    /// Whether this is a server-side apply by `manager` that takes over conflicting fields.
    pub fn is_forced_apply_by(&self, manager: &str) -> bool {
        self.method == Method::PATCH
            && self.content_type.as_deref() == Some("application/apply-patch+yaml")
            && self.query.get("fieldManager").map(String::as_str) == Some(manager)
            && self.query.get("force").map(String::as_str) == Some("true")
    }
}

/// A list response of `kind` (`ConfigMapList`, …) holding `items`.
pub fn list<T: Serialize>(api_version: &str, kind: &str, items: &[T]) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": "1"},
        "items": items,
    })
}
