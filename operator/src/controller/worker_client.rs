//! The operator's HTTP client for its workers' own endpoints, at the pod IP and `http` port
//! (the worker has no API rights): the hand-over's `/assignment` (`super::acks`) and the
//! `/ready` of a worker that runs but is not ready ([`WorkerClient::failed_sinks`]). Plain
//! HTTP inside the cluster network, never through a proxy, each request bounded.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use quotestream_api::contract::READY_PATH;
use quotestream_api::readiness::ReadyReport;
use serde::de::DeserializeOwned;

use crate::resources::worker_failures::{WorkerFailure, unready_workers};

/// Bound of one request: a pod that does not answer in time is asked again at the next
/// reconcile.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests in flight at once per reconcile: hundreds of shards, or pods that do not answer
/// (each costs up to [`REQUEST_TIMEOUT`]), must not hold a reconcile for minutes.
pub const CONCURRENT_REQUESTS: usize = 32;

#[derive(Debug, Clone)]
pub struct WorkerClient {
    /// `Err`: the client could not be built (no TLS provider); every request then fails
    /// with this reason.
    http: Result<reqwest::Client, String>,
}

impl WorkerClient {
    pub fn new() -> Self {
        quotestream_runtime::install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client for the workers' endpoints: {e}"));
        Self { http }
    }

    /// `GET url` as JSON. `also` is a non-2xx status whose body is the same document (a worker
    /// that is not ready answers `/ready` with 503 and its report).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        also: Option<reqwest::StatusCode>,
    ) -> Result<T, String> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let answer = http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = answer.status();
        if !status.is_success() && Some(status) != also {
            return Err(format!("{url} answered {status}"));
        }
        answer.json::<T>().await.map_err(|e| e.to_string())
    }

    /// The sinks that failed while their worker runs: a permanent failure makes the worker
    /// drop that sink's quotes and answer `/ready` with 503 naming the sink and the setting,
    /// without exiting (Redis keeps publishing), so no termination message says it. Asks each
    /// running worker that is not ready, at most [`CONCURRENT_REQUESTS`] at once; a worker
    /// that does not answer, or is not ready for another reason (starting, draining), is
    /// none.
    pub async fn failed_sinks(&self, pods: &[Pod]) -> Vec<WorkerFailure> {
        let asked = unready_workers(pods, READY_PATH);
        let answers: Vec<Vec<WorkerFailure>> = futures_util::stream::iter(asked)
            .map(|worker| async move {
                match self
                    .get_json::<ReadyReport>(&worker.url, Some(reqwest::StatusCode::SERVICE_UNAVAILABLE))
                    .await
                {
                    Ok(report) => report
                        .failures()
                        .into_iter()
                        .map(|failure| worker.failed(failure))
                        .collect(),
                    Err(error) => {
                        tracing::debug!(pod = %worker.pod, url = %worker.url, %error, "a worker that is not ready did not say why");
                        Vec::new()
                    }
                }
            })
            .buffer_unordered(CONCURRENT_REQUESTS)
            .collect()
            .await;
        let mut failures: Vec<WorkerFailure> = answers.into_iter().flatten().collect();
        failures.sort_by(|a, b| a.pod.cmp(&b.pod));
        failures
    }
}

impl Default for WorkerClient {
    fn default() -> Self {
        Self::new()
    }
}
