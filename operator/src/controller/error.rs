//! Reconcile errors. Each variant's [`Error::reason`] is a metric label and an Event reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("QuoteStream has no {0}")]
    Metadata(&'static str),
    #[error("serialising {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "ApiError",
            Self::Metadata(_) => "InvalidMetadata",
            Self::Serialize { .. } => "InternalError",
        }
    }
}
