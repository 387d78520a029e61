//! Reconcile errors. Each variant's [`Error::reason`] is a metric label and an Event reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("QuoteStream has no {0}")]
    Metadata(&'static str),
    #[error("serialising a desired object: {0}")]
    Serialize(#[source] serde_json::Error),
}

impl Error {
    /// A 404 from the API server: during a reconcile, the stream (or its namespace) was deleted
    /// under it. Not a failure: the next event, if any, is the stream's deletion.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Kube(kube::Error::Api(e)) if e.code == 404)
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "ApiError",
            Self::Metadata(_) => "InvalidMetadata",
            Self::Serialize(_) => "InternalError",
        }
    }
}
